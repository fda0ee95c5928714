package store_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/podid/podid/internal/store"
	"github.com/podid/podid/internal/store/pgtest"
	"github.com/podid/podid/internal/store/storetest"
)

// openPostgres returns a store on a new database for each test, and the same
// database when the same test opens it again.
func postgresOpener(t *testing.T) func(t *testing.T) store.Store {
	dsns := map[string]string{}
	return func(t *testing.T) store.Store {
		dsn, ok := dsns[t.Name()]
		if !ok {
			dsn = pgtest.Start(t)
			dsns[t.Name()] = dsn
		}
		s, err := store.OpenPostgres(t.Context(), dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
}

func TestPostgresContract(t *testing.T) {
	pgtest.Start(t) // holds the private server across the subtests
	storetest.Run(t, postgresOpener(t))
}

func TestOpenPostgresDSN(t *testing.T) {
	dsn := pgtest.Start(t)
	for _, d := range []string{dsn, "postgresql" + strings.TrimPrefix(dsn, "postgres")} {
		s, err := store.Open(d)
		if err != nil {
			t.Fatalf("Open(%q): %v", d, err)
		}
		if _, ok := s.(*store.Postgres); !ok {
			t.Errorf("Open(%q) = %T, want *store.Postgres", d, s)
		}
		s.Close()
	}
	// A server that is not there: an error naming the target, not a hang.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := store.OpenContext(ctx, "postgres://podid:secret@127.0.0.1:1/podid?connect_timeout=2")
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:1/podid") || strings.Contains(err.Error(), "secret") {
		t.Errorf("Open(unreachable) = %v, want an error naming the server without the password", err)
	}
}
