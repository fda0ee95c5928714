package store

import (
	"errors"
	"strings"
)

// Open opens the store named by dsn:
//
//	sqlite:PATH, file:PATH or PATH   the embedded SQLite database at PATH
//	postgres://… or postgresql://…   PostgreSQL (not built yet)
func Open(dsn string) (Store, error) {
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		// The PostgreSQL backend plugs in here.
		return nil, errors.New("store: postgres store not built yet")
	case strings.HasPrefix(dsn, "sqlite:"):
		return openSQLiteStore(strings.TrimPrefix(dsn, "sqlite:"))
	case strings.HasPrefix(dsn, "file:"):
		return openSQLiteStore(strings.TrimPrefix(dsn, "file:"))
	}
	return openSQLiteStore(dsn)
}

// openSQLiteStore keeps a nil *SQLite from becoming a non-nil Store.
func openSQLiteStore(path string) (Store, error) {
	s, err := OpenSQLite(path)
	if err != nil {
		return nil, err
	}
	return s, nil
}
