package store_test

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/podid/podid/internal/store"
	"github.com/podid/podid/internal/store/storetest"
)

func TestSQLiteContract(t *testing.T) {
	var mu sync.Mutex
	dirs := map[string]string{} // test name → its database directory
	storetest.Run(t, func(t *testing.T) store.Store {
		mu.Lock()
		dir, ok := dirs[t.Name()]
		if !ok {
			dir = t.TempDir()
			dirs[t.Name()] = dir
		}
		mu.Unlock()
		s, err := store.OpenSQLite(filepath.Join(dir, "podid.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	})
}

func TestOpenDSN(t *testing.T) {
	dir := t.TempDir()
	for _, dsn := range []string{
		filepath.Join(dir, "plain.db"),
		"sqlite:" + filepath.Join(dir, "sqlite.db"),
		"file:" + filepath.Join(dir, "file.db"),
		"sqlite:" + filepath.Join(dir, "sub", "dir", "nested.db"),
	} {
		s, err := store.Open(dsn)
		if err != nil {
			t.Fatalf("Open(%q): %v", dsn, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"plain.db", "sqlite.db", "file.db", "sub/dir/nested.db"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("Open did not create %s: %v", name, err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v, want owner-only", name, fi.Mode().Perm())
		}
	}

	if _, err := store.Open(""); err == nil {
		t.Error("Open(\"\") succeeded")
	}
}

func TestReopenAppliesNoMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "podid.db")
	s, err := store.OpenSQLite(path)
	if err != nil {
		t.Fatal(err)
	}
	first, err := store.AppliedMigrations(s)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != store.MigrationCount {
		t.Fatalf("new database has %d migrations applied, want %d", len(first), store.MigrationCount)
	}
	s.Close()

	s2, err := store.Open("sqlite:" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	second, err := store.AppliedMigrations(s2.(*store.SQLite))
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(first, second) {
		t.Errorf("reopening changed schema_migrations: %v, then %v", first, second)
	}
}

func TestMemory(t *testing.T) {
	s, err := store.OpenSQLite(":memory:")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.GetMeta(t.Context(), "x"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetMeta = %v", err)
	}
}
