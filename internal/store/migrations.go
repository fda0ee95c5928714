package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// A migration is one schema step. Steps are applied in order, each in its
// own transaction together with its row in schema_migrations, so a crash
// leaves the schema at a whole step. Never edit a released step: add one.
//
// The SQL is written to run on SQLite and PostgreSQL alike:
//   - timestamps are BIGINT unix nanoseconds (0 for the zero time.Time);
//   - booleans are INTEGER 0/1;
//   - list-valued fields (tags, client IDs, thumbprints) are JSON in TEXT;
//   - byte strings use the {{bytes}} placeholder, BLOB on SQLite and BYTEA
//     on PostgreSQL (see dialect).
type migration struct {
	version int
	name    string
	stmts   []string
}

func (m migration) sql(d *dialect) []string {
	out := make([]string, len(m.stmts))
	for i, s := range m.stmts {
		out[i] = strings.ReplaceAll(s, "{{bytes}}", d.bytes)
	}
	return out
}

var migrations = []migration{
	{
		version: 1,
		name:    "initial schema",
		stmts: []string{
			`CREATE TABLE meta (
				key   TEXT PRIMARY KEY,
				value TEXT NOT NULL
			)`,
			`CREATE TABLE sealing_keys (
				id         TEXT PRIMARY KEY,
				sealed     {{bytes}} NOT NULL,
				created_at BIGINT NOT NULL
			)`,
			`CREATE TABLE access_keys (
				access_key_id TEXT PRIMARY KEY,
				secret_sealed {{bytes}} NOT NULL,
				principal_arn TEXT NOT NULL,
				status        TEXT NOT NULL,
				created_at    BIGINT NOT NULL
			)`,
			`CREATE INDEX access_keys_principal ON access_keys (principal_arn)`,
			`CREATE TABLE roles (
				name                 TEXT PRIMARY KEY,
				role_id              TEXT NOT NULL UNIQUE,
				path                 TEXT NOT NULL,
				arn                  TEXT NOT NULL UNIQUE,
				assume_role_policy   TEXT NOT NULL,
				description          TEXT NOT NULL,
				max_session_duration INTEGER NOT NULL,
				tags                 TEXT NOT NULL,
				created_at           BIGINT NOT NULL
			)`,
			// IAM role names are unique regardless of case.
			`CREATE UNIQUE INDEX roles_name_fold ON roles (lower(name))`,
			`CREATE TABLE role_policies (
				role_name   TEXT NOT NULL REFERENCES roles (name) ON DELETE RESTRICT,
				policy_name TEXT NOT NULL,
				document    TEXT NOT NULL,
				PRIMARY KEY (role_name, policy_name)
			)`,
			`CREATE TABLE managed_policies (
				arn             TEXT PRIMARY KEY,
				policy_id       TEXT NOT NULL UNIQUE,
				name            TEXT NOT NULL,
				path            TEXT NOT NULL,
				description     TEXT NOT NULL,
				document        TEXT NOT NULL,
				default_version TEXT NOT NULL,
				tags            TEXT NOT NULL,
				created_at      BIGINT NOT NULL,
				updated_at      BIGINT NOT NULL,
				UNIQUE (path, name)
			)`,
			`CREATE INDEX managed_policies_name ON managed_policies (name, arn)`,
			`CREATE TABLE role_policy_attachments (
				role_name  TEXT NOT NULL REFERENCES roles (name) ON DELETE RESTRICT,
				policy_arn TEXT NOT NULL REFERENCES managed_policies (arn) ON DELETE RESTRICT,
				PRIMARY KEY (role_name, policy_arn)
			)`,
			`CREATE INDEX role_policy_attachments_policy ON role_policy_attachments (policy_arn)`,
			`CREATE TABLE oidc_providers (
				arn         TEXT PRIMARY KEY,
				url         TEXT NOT NULL UNIQUE,
				client_ids  TEXT NOT NULL,
				thumbprints TEXT NOT NULL,
				tags        TEXT NOT NULL,
				created_at  BIGINT NOT NULL
			)`,
			`CREATE TABLE clusters (
				name           TEXT PRIMARY KEY,
				arn            TEXT NOT NULL UNIQUE,
				issuer         TEXT NOT NULL,
				key_source     TEXT NOT NULL,
				key_source_arg TEXT NOT NULL,
				jwks           {{bytes}},
				token_review   INTEGER NOT NULL,
				tags           TEXT NOT NULL,
				created_at     BIGINT NOT NULL
			)`,
			`CREATE TABLE associations (
				cluster_name         TEXT NOT NULL REFERENCES clusters (name) ON DELETE CASCADE,
				id                   TEXT NOT NULL,
				arn                  TEXT NOT NULL UNIQUE,
				namespace            TEXT NOT NULL,
				service_account      TEXT NOT NULL,
				role_arn             TEXT NOT NULL,
				target_role_arn      TEXT NOT NULL,
				external_id          TEXT NOT NULL,
				disable_session_tags INTEGER NOT NULL,
				policy               TEXT NOT NULL,
				tags                 TEXT NOT NULL,
				owner_arn            TEXT NOT NULL,
				client_request_token TEXT NOT NULL,
				request_hash         TEXT NOT NULL,
				created_at           BIGINT NOT NULL,
				modified_at          BIGINT NOT NULL,
				PRIMARY KEY (cluster_name, id),
				UNIQUE (cluster_name, namespace, service_account)
			)`,
			`CREATE INDEX associations_request_token ON associations (cluster_name, client_request_token)`,
		},
	},
	{
		version: 2,
		name:    "cluster kubeconfig, separate from the key source",
		stmts: []string{
			`ALTER TABLE clusters ADD COLUMN kubeconfig TEXT NOT NULL DEFAULT ''`,
		},
	},
}

// execer runs a statement outside a transaction (*sql.DB, *sql.Conn).
type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// migrate brings the schema up to the last step. On SQLite it is safe
// against another process migrating the same database: the version check
// runs inside the step's write transaction (BEGIN IMMEDIATE), so a step
// applied meanwhile is skipped. PostgreSQL runs it under an advisory lock
// (see OpenPostgres), since there concurrent DDL would fail rather than wait.
func migrate(ctx context.Context, db execer, d *dialect, beginWrite func(context.Context) (*sql.Tx, error)) error {
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER PRIMARY KEY,
		applied_at BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("store: migrate: create schema_migrations: %w", err)
	}
	for _, m := range migrations {
		if err := applyMigration(ctx, m, d, beginWrite); err != nil {
			return fmt.Errorf("store: migrate to version %d (%s): %w", m.version, m.name, err)
		}
	}
	return nil
}

func applyMigration(ctx context.Context, m migration, d *dialect, beginWrite func(context.Context) (*sql.Tx, error)) error {
	tx, err := beginWrite(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var n int
	q := "SELECT COUNT(*) FROM schema_migrations WHERE version = " + d.bind(1)
	if err := tx.QueryRowContext(ctx, q, m.version).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	for _, s := range m.sql(d) {
		if _, err := tx.ExecContext(ctx, s); err != nil {
			return err
		}
	}
	q = "INSERT INTO schema_migrations (version, applied_at) VALUES (" + d.bind(1) + ", " + d.bind(2) + ")"
	if _, err := tx.ExecContext(ctx, q, m.version, time.Now().UnixNano()); err != nil {
		return err
	}
	return tx.Commit()
}
