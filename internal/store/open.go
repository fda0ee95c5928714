package store

import (
	"context"
	"strings"
)

// Open opens the store named by dsn:
//
//	sqlite:PATH, file:PATH or PATH   the embedded SQLite database at PATH
//	postgres://… or postgresql://…   PostgreSQL, shared by several replicas
func Open(dsn string) (Store, error) {
	return OpenContext(context.Background(), dsn)
}

// OpenContext is Open with a context for connecting to and migrating a
// PostgreSQL database.
func OpenContext(ctx context.Context, dsn string) (Store, error) {
	switch {
	case IsPostgresDSN(dsn):
		return openPostgresStore(ctx, dsn)
	case strings.HasPrefix(dsn, "sqlite:"):
		return openSQLiteStore(strings.TrimPrefix(dsn, "sqlite:"))
	case strings.HasPrefix(dsn, "file:"):
		return openSQLiteStore(strings.TrimPrefix(dsn, "file:"))
	}
	return openSQLiteStore(dsn)
}

// IsPostgresDSN reports whether dsn names a PostgreSQL store.
func IsPostgresDSN(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// openSQLiteStore and openPostgresStore keep a nil pointer from becoming a
// non-nil Store.
func openSQLiteStore(path string) (Store, error) {
	s, err := OpenSQLite(path)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func openPostgresStore(ctx context.Context, dsn string) (Store, error) {
	s, err := OpenPostgres(ctx, dsn)
	if err != nil {
		return nil, err
	}
	return s, nil
}
