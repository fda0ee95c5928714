package store_test

import (
	"os"
	"testing"

	"github.com/podid/podid/internal/store/pgtest"
)

// TestMain keeps one private PostgreSQL server for all the tests here.
func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
