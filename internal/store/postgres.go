package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

// Postgres is the Store that several server replicas share.
//
// It goes through database/sql with pgx's stdlib driver rather than pgxpool
// so that it is the same code as SQLite above the driver: one set of
// queries, scanners and transaction helpers (sqlDB), with only the dialect
// differing. pgx still does the wire protocol, statement caching and error
// codes; database/sql's pool is all a store of small transactions needs.
//
// Write transactions run at READ COMMITTED; the rows they read and rewrite
// are locked with SELECT … FOR UPDATE and the parent rows an insert depends
// on with FOR KEY SHARE, so concurrent read-modify-writes queue rather than
// lose updates. Transactions the server aborts (deadlock, serialization
// failure) are run again. Read transactions that span several queries run
// at REPEATABLE READ so they see one snapshot.
type Postgres struct {
	sqlDB
	listen listener // LISTEN for other processes' changes; see pglisten.go
}

var _ Store = (*Postgres)(nil)

// migrateLockKey is the pg_advisory_lock key that serialises migrations of
// one database between replicas starting at once ("podid" in ASCII).
const migrateLockKey = 0x706f646964

// Pool limits per process: three replicas stay well under PostgreSQL's
// default max_connections (100). Every open connection may stay idle: a new
// PostgreSQL connection costs ~40-50 ms of server CPU against ~40 µs for a
// query, and a pool that closed its surplus after each burst spent more
// time connecting than answering (docs/BENCHMARKS.md, replicas).
const (
	pgMaxOpenConns = 16
	pgMaxIdleConns = pgMaxOpenConns
)

// OpenPostgres connects to the database named by dsn (a postgres:// URL or
// a libpq key=value string) and applies the pending migrations.
func OpenPostgres(ctx context.Context, dsn string) (*Postgres, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		// pgx's parse errors redact the password.
		return nil, fmt.Errorf("store: open postgres: %w", err)
	}
	where := fmt.Sprintf("%s@%s:%d/%s", cfg.User, cfg.Host, cfg.Port, cfg.Database)
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(pgMaxOpenConns)
	db.SetMaxIdleConns(pgMaxIdleConns)
	db.SetConnMaxIdleTime(5 * time.Minute)
	s := &Postgres{sqlDB: sqlDB{db: db, d: &postgresDialect}}
	s.listen.cfg = cfg.Copy()
	if err := s.Ping(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open postgres %s: %w", where, err)
	}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("store: open postgres %s: %w", where, err)
	}
	return s, nil
}

// migrate applies the shared migrations while holding a session advisory
// lock, on one connection: replicas starting together take turns, and the
// later ones find every step applied.
func (s *Postgres) migrate(ctx context.Context) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("store: migrate: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SELECT pg_advisory_lock($1)", migrateLockKey); err != nil {
		return fmt.Errorf("store: migrate: take advisory lock: %w", err)
	}
	defer func() {
		_, err := conn.ExecContext(context.Background(), "SELECT pg_advisory_unlock($1)", migrateLockKey)
		if err != nil {
			// Never hand a connection that may still hold the lock back to
			// the pool: ErrBadConn makes database/sql discard it.
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	return migrate(ctx, conn, s.d, func(ctx context.Context) (*sql.Tx, error) {
		return conn.BeginTx(ctx, nil)
	})
}

// postgresDialect: $n placeholders, BYTEA, byte-order sorting whatever the
// database's collation, row locks in write transactions and table locks for
// a restore.
var postgresDialect = dialect{
	name:      "postgres",
	bytes:     "BYTEA",
	bind:      func(n int) string { return "$" + strconv.Itoa(n) },
	collate:   ` COLLATE "C"`,
	forUpdate: " FOR UPDATE",
	forShare:  " FOR KEY SHARE",
	readTx:    &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead},
	lockTables: func(tables []string) string {
		// EXCLUSIVE lets readers in but keeps every other writer out.
		return "LOCK TABLE " + strings.Join(tables, ", ") + " IN EXCLUSIVE MODE"
	},
	isUnique:     func(err error) bool { return pgCode(err) == "23505" }, // unique_violation
	isForeignKey: func(err error) bool { return pgCode(err) == "23503" }, // foreign_key_violation
	isRetryable: func(err error) bool {
		c := pgCode(err)
		return c == "40001" || c == "40P01" // serialization_failure, deadlock_detected
	},
	notify: "SELECT pg_notify($1, $2)",
}

func pgCode(err error) string {
	var e *pgconn.PgError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
