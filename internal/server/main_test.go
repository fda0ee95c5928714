package server_test

import (
	"os"
	"testing"

	"github.com/podid/podid/internal/store/pgtest"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
