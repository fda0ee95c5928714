package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// SQLite is the embedded Store: one database file, shared by the
// connections of a single server process.
//
// Write transactions start with BEGIN IMMEDIATE (the _txlock DSN parameter),
// so two read-modify-write calls never both read the old row: the second
// waits, up to the busy timeout, until the first commits.
type SQLite struct {
	sqlDB
}

var _ Store = (*SQLite)(nil)

// busyTimeout is how long a connection waits for another one's write lock.
const busyTimeout = 5 * time.Second

// sqliteMaxConns bounds the connection pool of a file database.
const sqliteMaxConns = 8

// OpenSQLite opens the database at path, creating it (owner-only, since it
// holds sealed secrets) and its directory when missing, and applies the
// pending migrations. ":memory:" gives a private in-memory database.
func OpenSQLite(path string) (*SQLite, error) {
	if path == "" {
		return nil, errors.New("store: open sqlite: empty path")
	}
	// The driver reads connection parameters from after the first '?'.
	if strings.ContainsRune(path, '?') {
		return nil, fmt.Errorf("store: open sqlite %q: path must not contain '?'", path)
	}
	memory := path == ":memory:"
	if !memory {
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("store: open sqlite: %w", err)
		}
		// Create the file before SQLite does, which would use the umask.
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("store: open sqlite: %w", err)
		}
		f.Close()
	}
	dsn := path + fmt.Sprintf("?_pragma=busy_timeout(%d)", busyTimeout.Milliseconds()) +
		"&_pragma=journal_mode(WAL)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)" +
		"&_txlock=immediate"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("store: open sqlite %q: %w", path, err)
	}
	if memory {
		// Every connection to ":memory:" is a database of its own.
		db.SetMaxOpenConns(1)
	} else {
		// A bounded pool that stays open: under load, opening a connection
		// per request (and its pragmas) cost more than the queries did.
		// WAL lets the readers run side by side; writers queue on the lock.
		db.SetMaxOpenConns(sqliteMaxConns)
		db.SetMaxIdleConns(sqliteMaxConns)
	}
	s := &SQLite{sqlDB{db: db, d: &sqliteDialect}}
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open sqlite %q: %w", path, err)
	}
	if err := migrate(ctx, db, &sqliteDialect, s.beginWrite); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the database; the last connection checkpoints the WAL.
func (s *SQLite) Close() error { return s.sqlDB.Close() }

func (s *SQLite) beginWrite(ctx context.Context) (*sql.Tx, error) {
	return s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE through _txlock
}

// sqliteDialect: writers are serialised by BEGIN IMMEDIATE, so no row locks
// and no table locks; the BINARY collation already sorts bytewise.
var sqliteDialect = dialect{
	name:         "sqlite",
	bytes:        "BLOB",
	bind:         func(int) string { return "?" },
	readTx:       &sql.TxOptions{ReadOnly: true},
	lockTables:   func([]string) string { return "" },
	isUnique:     isSQLiteUniqueViolation,
	isForeignKey: isSQLiteForeignKeyViolation,
	isRetryable:  func(error) bool { return false }, // busy_timeout already waits
}

func isSQLiteUniqueViolation(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() {
	case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
		return true
	case sqlite3.SQLITE_CONSTRAINT:
		// Only the primary code: fall back on the message.
		return strings.Contains(e.Error(), "UNIQUE constraint failed")
	}
	return false
}

func isSQLiteForeignKeyViolation(err error) bool {
	var e *sqlite.Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.Code() {
	case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
		return true
	case sqlite3.SQLITE_CONSTRAINT:
		return strings.Contains(e.Error(), "FOREIGN KEY constraint failed")
	}
	return false
}
