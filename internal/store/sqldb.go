package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// sqlDB is the Store shared by the SQL backends. SQLite and Postgres embed
// it and differ only in how they open the database and in their dialect:
// the query text below is written once, with ? placeholders and the
// {{…}} markers that dialect.expand rewrites (see expand).
//
// Locking in write transactions: a row that a read-modify-write method reads
// and then rewrites is read {{forUpdate}}, and a parent row whose existence
// an insert depends on is read {{forShare}}. On SQLite both are empty, since
// BEGIN IMMEDIATE already serialises writers; on PostgreSQL (READ COMMITTED)
// they are row locks, so two UpdateRole calls queue on the row instead of
// both reading the old value, and DeleteRole waits for a PutRolePolicy that
// holds the role rather than racing it.
type sqlDB struct {
	db *sql.DB
	d  *dialect

	queries sync.Map // query as written → query for this dialect
	stmts   sync.Map // query as written → *sql.Stmt prepared on the pool

	subs hub // this process's change subscribers (see Notifier)
	// beforeCommit, for tests, fails a write transaction at its very end.
	beforeCommit func() error
}

// dialect is what differs between the SQL backends.
type dialect struct {
	name  string             // "sqlite" or "postgres", as backups report it
	bytes string             // column type for []byte, for migrations
	bind  func(n int) string // placeholder for the n-th (1-based) argument

	// collate follows a text sort key so that ORDER BY and marker
	// comparisons use byte order whatever the database's default collation.
	collate string
	// forUpdate and forShare end a SELECT inside a write transaction.
	forUpdate, forShare string
	// readTx starts the read transactions that must see one snapshot.
	readTx *sql.TxOptions
	// lockTables returns the statement that keeps other writers out of
	// tables for the rest of a transaction, or "" when begin already does.
	lockTables func(tables []string) string

	isUnique     func(error) bool // unique or primary key violation
	isForeignKey func(error) bool // foreign key violation
	isRetryable  func(error) bool // transaction aborted by the database; run it again

	// notify, when not "", sends a change to other processes from inside a
	// write transaction; its arguments are the channel and the payload.
	notify string
}

// expand turns query as written into this dialect's SQL: {{C}} becomes the
// byte-order collation, {{forUpdate}}/{{forShare}} the row locks, and each ?
// the n-th placeholder. The queries contain no string literals with ? in them.
func (d *dialect) expand(q string) string {
	q = strings.NewReplacer("{{C}}", d.collate, "{{forUpdate}}", d.forUpdate, "{{forShare}}", d.forShare).Replace(q)
	if !strings.Contains(q, "?") {
		return q
	}
	var b strings.Builder
	n := 0
	for _, r := range q {
		if r == '?' {
			n++
			b.WriteString(d.bind(n))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func (s *sqlDB) sql(q string) string {
	if v, ok := s.queries.Load(q); ok {
		return v.(string)
	}
	out := s.d.expand(q)
	s.queries.Store(q, out)
	return out
}

// querier is what *sql.DB, *sql.Tx and *sql.Conn have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// dq is a querier that expands every query for the dialect first; the
// methods below only ever query through one.
type dq struct {
	q querier
	s *sqlDB
	// changes collects, in a write transaction, what it changes (see changed).
	changes *[]Change
}

func (x dq) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return x.q.ExecContext(ctx, x.s.sql(query), args...)
}

func (x dq) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return x.q.QueryContext(ctx, x.s.sql(query), args...)
}

func (x dq) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	return x.q.QueryRowContext(ctx, x.s.sql(query), args...)
}

// pool queries outside a transaction.
func (s *sqlDB) pool() querier { return prepared{s} }

// prepared runs pool queries through statements prepared once per query:
// on the hot paths, parsing the SQL again on every call cost as much as
// running it. database/sql re-prepares a statement on each connection of
// the pool as needed.
type prepared struct{ s *sqlDB }

func (p prepared) stmt(ctx context.Context, query string) (*sql.Stmt, error) {
	if v, ok := p.s.stmts.Load(query); ok {
		return v.(*sql.Stmt), nil
	}
	st, err := p.s.db.PrepareContext(ctx, p.s.sql(query))
	if err != nil {
		return nil, err
	}
	if v, loaded := p.s.stmts.LoadOrStore(query, st); loaded {
		st.Close()
		return v.(*sql.Stmt), nil
	}
	return st, nil
}

func (p prepared) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.ExecContext(ctx, args...)
}

func (p prepared) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	st, err := p.stmt(ctx, query)
	if err != nil {
		return nil, err
	}
	return st.QueryContext(ctx, args...)
}

func (p prepared) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	st, err := p.stmt(ctx, query)
	if err != nil {
		// Let database/sql report the error through the Row it returns.
		return p.s.db.QueryRowContext(ctx, p.s.sql(query), args...)
	}
	return st.QueryRowContext(ctx, args...)
}

// scanner is what *sql.Row and *sql.Rows have in common.
type scanner interface {
	Scan(dest ...any) error
}

// callerError carries an error returned by an Update callback through the
// transaction helpers, which return it unwrapped.
type callerError struct{ err error }

func (e callerError) Error() string { return e.err.Error() }

// Ping checks that the database answers a query.
func (s *sqlDB) Ping(ctx context.Context) error {
	var one int
	if err := s.db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}

// Close closes the database.
func (s *sqlDB) Close() error {
	s.stmts.Range(func(_, v any) bool {
		v.(*sql.Stmt).Close()
		return true
	})
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// maxAttempts bounds how often write runs a transaction the database
// aborted (serialization failure, deadlock) before giving up.
const maxAttempts = 5

// write runs fn in a write transaction and commits it when fn succeeds.
// Errors are wrapped with op and mapped to the package's sentinels.
func (s *sqlDB) write(ctx context.Context, op string, fn func(tx querier) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = s.writeOnce(ctx, fn)
		if err == nil {
			return nil
		}
		if ce, ok := err.(callerError); ok {
			return ce.err
		}
		if attempt == maxAttempts || !s.d.isRetryable(err) || ctx.Err() != nil {
			return s.wrap(op, err)
		}
		time.Sleep(time.Duration(attempt) * 5 * time.Millisecond)
	}
}

func (s *sqlDB) writeOnce(ctx context.Context, fn func(tx querier) error) error {
	tx, err := s.db.BeginTx(ctx, nil) // BEGIN IMMEDIATE on SQLite through _txlock
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var changes []Change
	if err := fn(dq{tx, s, &changes}); err != nil {
		return err
	}
	if s.d.notify != "" {
		for _, c := range changes {
			// Queued by the server and delivered to the listeners on commit only.
			if _, err := tx.ExecContext(ctx, s.d.notify, changesChannel, c.String()); err != nil {
				return fmt.Errorf("notify %s: %w", c, err)
			}
		}
	}
	if s.beforeCommit != nil {
		if err := s.beforeCommit(); err != nil {
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	s.subs.publish(changes...)
	return nil
}

// read runs fn in a read transaction, so the queries in it see one snapshot.
func (s *sqlDB) read(ctx context.Context, op string, fn func(tx querier) error) error {
	tx, err := s.db.BeginTx(ctx, s.d.readTx)
	if err != nil {
		return s.wrap(op, err)
	}
	defer tx.Rollback()
	if err := fn(dq{tx, s, nil}); err != nil {
		return s.wrap(op, err)
	}
	return nil
}

// wrap adds the operation to err and maps driver errors to the sentinels. A
// foreign key violation means a parent row is missing; the deletes that can
// break a RESTRICT key map it to ErrConflict themselves (see restrict).
func (s *sqlDB) wrap(op string, err error) error {
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("store: %s: %w", op, ErrNotFound)
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrExists), errors.Is(err, ErrConflict):
		return fmt.Errorf("store: %s: %w", op, err)
	case s.d.isUnique(err):
		return fmt.Errorf("store: %s: %w (%v)", op, ErrExists, err)
	case s.d.isForeignKey(err):
		return fmt.Errorf("store: %s: %w (%v)", op, ErrNotFound, err)
	}
	return fmt.Errorf("store: %s: %w", op, err)
}

// restrict maps a foreign key violation from a DELETE to ErrConflict: rows
// still refer to the one being deleted.
func (s *sqlDB) restrict(err error) error {
	if err != nil && s.d.isForeignKey(err) {
		return fmt.Errorf("%w (%v)", ErrConflict, err)
	}
	return err
}

// exists reports whether query, a SELECT of one row, finds it.
func exists(ctx context.Context, q querier, query string, args ...any) (bool, error) {
	var one int
	err := q.QueryRowContext(ctx, query, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// mustExist turns a missing row into ErrNotFound.
func mustExist(ctx context.Context, q querier, what, query string, args ...any) error {
	ok, err := exists(ctx, q, query, args...)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s: %w", what, ErrNotFound)
	}
	return nil
}

// affected returns ErrNotFound when res changed no row.
func affected(res sql.Result, err error) error {
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Timestamps are unix nanoseconds; 0 stands for the zero time.
func toNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func toJSON[T any](v []T) string {
	if len(v) == 0 {
		return "[]"
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // []Tag and []string always marshal
	}
	return string(b)
}

func fromJSON[T any](s, field string) ([]T, error) {
	var v []T
	if err := json.Unmarshal([]byte(s), &v); err != nil {
		return nil, fmt.Errorf("decode %s: %w", field, err)
	}
	if len(v) == 0 {
		return nil, nil
	}
	return v, nil
}

// blob keeps NOT NULL byte columns from receiving NULL for a nil slice.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func nilIfEmpty(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// conds collects the AND-ed conditions of a WHERE clause.
type conds struct {
	parts []string
	args  []any
}

func (c *conds) add(cond string, args ...any) {
	c.parts = append(c.parts, cond)
	c.args = append(c.args, args...)
}

func (c *conds) where() string {
	if len(c.parts) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(c.parts, " AND ")
}

// pathPrefix restricts col to values starting with prefix. "" and "/" match
// every IAM path. substr, unlike LIKE, is case-sensitive and needs no
// escaping; it counts characters on both backends, hence the rune count.
func (c *conds) pathPrefix(col, prefix string) {
	if prefix == "" || prefix == "/" {
		return
	}
	c.add("substr("+col+", 1, ?) = ?", utf8.RuneCountInString(prefix), prefix)
}

// queryPage runs query (without LIMIT) for one page of at most limit items,
// and returns them with the marker of the next page.
func queryPage[T any](ctx context.Context, q querier, query string, args []any, limit int,
	scan func(scanner) (T, error), key func(T) []string) ([]T, string, error) {
	items, err := queryAll(ctx, q, query+" LIMIT ?", append(args, limit+1), scan)
	if err != nil {
		return nil, "", err
	}
	if len(items) <= limit {
		return items, "", nil
	}
	items = items[:limit]
	return items, encodeMarker(key(items[limit-1])...), nil
}

func queryAll[T any](ctx context.Context, q querier, query string, args []any, scan func(scanner) (T, error)) ([]T, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var items []T
	for rows.Next() {
		it, err := scan(rows)
		if err != nil {
			return nil, err
		}
		items = append(items, it)
	}
	return items, rows.Err()
}

// ---- meta ----

func (s *sqlDB) GetMeta(ctx context.Context, key string) (string, error) {
	var v string
	err := s.pool().QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", key).Scan(&v)
	if err != nil {
		return "", s.wrap(fmt.Sprintf("get meta %q", key), err)
	}
	return v, nil
}

func (s *sqlDB) PutMetaIfAbsent(ctx context.Context, key, value string) (string, error) {
	var stored string
	err := s.write(ctx, fmt.Sprintf("put meta %q", key), func(tx querier) error {
		// On PostgreSQL, DO NOTHING waits for a concurrent insert of the key
		// to commit, and the SELECT (a new statement) then sees it.
		if _, err := tx.ExecContext(ctx,
			"INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING", key, value); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", key).Scan(&stored)
	})
	return stored, err
}

// ---- sealing keys ----

func (s *sqlDB) CreateSealingKey(ctx context.Context, k SealingKey) error {
	_, err := s.pool().ExecContext(ctx, "INSERT INTO sealing_keys (id, sealed, created_at) VALUES (?, ?, ?)",
		k.ID, blob(k.Sealed), toNanos(k.CreatedAt))
	if err != nil {
		return s.wrap(fmt.Sprintf("create sealing key %q", k.ID), err)
	}
	return nil
}

func (s *sqlDB) ListSealingKeys(ctx context.Context) ([]SealingKey, error) {
	keys, err := queryAll(ctx, s.pool(), "SELECT id, sealed, created_at FROM sealing_keys ORDER BY created_at, id{{C}}", nil,
		func(sc scanner) (SealingKey, error) {
			var k SealingKey
			var created int64
			if err := sc.Scan(&k.ID, &k.Sealed, &created); err != nil {
				return k, err
			}
			k.Sealed = nilIfEmpty(k.Sealed)
			k.CreatedAt = fromNanos(created)
			return k, nil
		})
	if err != nil {
		return nil, s.wrap("list sealing keys", err)
	}
	return keys, nil
}

// DeleteSealingKey removes a sealing key; ErrNotFound if there is none.
func (s *sqlDB) DeleteSealingKey(ctx context.Context, id string) error {
	err := affected(s.pool().ExecContext(ctx, "DELETE FROM sealing_keys WHERE id = ?", id))
	if err != nil {
		return s.wrap(fmt.Sprintf("delete sealing key %q", id), err)
	}
	return nil
}

// ---- access keys ----

const accessKeyCols = "access_key_id, secret_sealed, principal_arn, status, created_at"

func scanAccessKey(sc scanner) (AccessKey, error) {
	var k AccessKey
	var created int64
	if err := sc.Scan(&k.AccessKeyID, &k.SecretSealed, &k.PrincipalARN, &k.Status, &created); err != nil {
		return k, err
	}
	k.SecretSealed = nilIfEmpty(k.SecretSealed)
	k.CreatedAt = fromNanos(created)
	return k, nil
}

func (s *sqlDB) CreateAccessKey(ctx context.Context, k AccessKey) error {
	_, err := s.pool().ExecContext(ctx, "INSERT INTO access_keys ("+accessKeyCols+") VALUES (?, ?, ?, ?, ?)",
		k.AccessKeyID, blob(k.SecretSealed), k.PrincipalARN, k.Status, toNanos(k.CreatedAt))
	if err != nil {
		return s.wrap(fmt.Sprintf("create access key %q", k.AccessKeyID), err)
	}
	return nil
}

func (s *sqlDB) GetAccessKey(ctx context.Context, id string) (AccessKey, error) {
	k, err := scanAccessKey(s.pool().QueryRowContext(ctx,
		"SELECT "+accessKeyCols+" FROM access_keys WHERE access_key_id = ?", id))
	if err != nil {
		return AccessKey{}, s.wrap(fmt.Sprintf("get access key %q", id), err)
	}
	return k, nil
}

// ListAccessKeys lists the keys of principalARN, or every key when it is "".
func (s *sqlDB) ListAccessKeys(ctx context.Context, principalARN string) ([]AccessKey, error) {
	var c conds
	if principalARN != "" {
		c.add("principal_arn = ?", principalARN)
	}
	keys, err := queryAll(ctx, s.pool(),
		"SELECT "+accessKeyCols+" FROM access_keys"+c.where()+" ORDER BY created_at, access_key_id{{C}}",
		c.args, scanAccessKey)
	if err != nil {
		return nil, s.wrap("list access keys", err)
	}
	return keys, nil
}

// ---- roles ----

const roleCols = "name, role_id, path, arn, assume_role_policy, description, max_session_duration, tags, created_at"

func scanRole(sc scanner) (Role, error) {
	var r Role
	var tags string
	var created int64
	if err := sc.Scan(&r.Name, &r.RoleID, &r.Path, &r.ARN, &r.AssumeRolePolicy, &r.Description,
		&r.MaxSessionDuration, &tags, &created); err != nil {
		return r, err
	}
	var err error
	if r.Tags, err = fromJSON[Tag](tags, "role tags"); err != nil {
		return r, err
	}
	r.CreatedAt = fromNanos(created)
	return r, nil
}

// getRole reads the role; lock is "" or one of the {{…}} row locks.
func getRole(ctx context.Context, q querier, name, lock string) (Role, error) {
	return scanRole(q.QueryRowContext(ctx, "SELECT "+roleCols+" FROM roles WHERE name = ?"+lock, name))
}

const roleExists = "SELECT 1 FROM roles WHERE name = ?"

func (s *sqlDB) CreateRole(ctx context.Context, r Role) error {
	return s.write(ctx, fmt.Sprintf("create role %q", r.Name), func(tx querier) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO roles ("+roleCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
			r.Name, r.RoleID, r.Path, r.ARN, r.AssumeRolePolicy, r.Description, r.MaxSessionDuration,
			toJSON(r.Tags), toNanos(r.CreatedAt))
		if err != nil {
			return err
		}
		return changed(tx, ChangeRole, r.Name)
	})
}

func (s *sqlDB) GetRole(ctx context.Context, name string) (Role, error) {
	r, err := getRole(ctx, s.pool(), name, "")
	if err != nil {
		return Role{}, s.wrap(fmt.Sprintf("get role %q", name), err)
	}
	return r, nil
}

func (s *sqlDB) ListRoles(ctx context.Context, f RoleFilter, p Page) ([]Role, string, error) {
	after, err := decodeMarker(p.Marker, 1)
	if err != nil {
		return nil, "", fmt.Errorf("store: list roles: %w", err)
	}
	var c conds
	c.pathPrefix("path", f.PathPrefix)
	if after != nil {
		c.add("name{{C}} > ?", after[0])
	}
	roles, next, err := queryPage(ctx, s.pool(), "SELECT "+roleCols+" FROM roles"+c.where()+" ORDER BY name{{C}}",
		c.args, p.limit(), scanRole, func(r Role) []string { return []string{r.Name} })
	if err != nil {
		return nil, "", s.wrap("list roles", err)
	}
	return roles, next, nil
}

// UpdateRole applies fn to the role named name. The name is the key: a
// change fn makes to it is not written.
func (s *sqlDB) UpdateRole(ctx context.Context, name string, fn func(*Role) error) (Role, error) {
	var out Role
	err := s.write(ctx, fmt.Sprintf("update role %q", name), func(tx querier) error {
		r, err := getRole(ctx, tx, name, "{{forUpdate}}")
		if err != nil {
			return err
		}
		if err := fn(&r); err != nil {
			return callerError{err}
		}
		r.Name = name
		_, err = tx.ExecContext(ctx, `UPDATE roles SET role_id = ?, path = ?, arn = ?, assume_role_policy = ?,
			description = ?, max_session_duration = ?, tags = ?, created_at = ? WHERE name = ?`,
			r.RoleID, r.Path, r.ARN, r.AssumeRolePolicy, r.Description, r.MaxSessionDuration,
			toJSON(r.Tags), toNanos(r.CreatedAt), name)
		if err != nil {
			return err
		}
		out = r
		return changed(tx, ChangeRole, name)
	})
	if err != nil {
		return Role{}, err
	}
	return out, nil
}

func (s *sqlDB) DeleteRole(ctx context.Context, name string) error {
	return s.write(ctx, fmt.Sprintf("delete role %q", name), func(tx querier) error {
		if err := mustExist(ctx, tx, "role", roleExists+"{{forUpdate}}", name); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT
			(SELECT COUNT(*) FROM role_policies WHERE role_name = ?) +
			(SELECT COUNT(*) FROM role_policy_attachments WHERE role_name = ?)`, name, name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("%d policies remain: %w", n, ErrConflict)
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM roles WHERE name = ?", name); err != nil {
			return s.restrict(err)
		}
		return changed(tx, ChangeRole, name)
	})
}

// ---- inline role policies ----

func scanRolePolicy(sc scanner) (RolePolicy, error) {
	var p RolePolicy
	err := sc.Scan(&p.RoleName, &p.PolicyName, &p.Document)
	return p, err
}

func (s *sqlDB) PutRolePolicy(ctx context.Context, p RolePolicy) error {
	return s.write(ctx, fmt.Sprintf("put role policy %q/%q", p.RoleName, p.PolicyName), func(tx querier) error {
		if err := mustExist(ctx, tx, "role", roleExists+"{{forShare}}", p.RoleName); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO role_policies (role_name, policy_name, document) VALUES (?, ?, ?)
			ON CONFLICT (role_name, policy_name) DO UPDATE SET document = excluded.document`,
			p.RoleName, p.PolicyName, p.Document)
		if err != nil {
			return err
		}
		return changed(tx, ChangeRole, p.RoleName)
	})
}

func (s *sqlDB) GetRolePolicy(ctx context.Context, role, name string) (RolePolicy, error) {
	p, err := scanRolePolicy(s.pool().QueryRowContext(ctx,
		"SELECT role_name, policy_name, document FROM role_policies WHERE role_name = ? AND policy_name = ?", role, name))
	if err != nil {
		return RolePolicy{}, s.wrap(fmt.Sprintf("get role policy %q/%q", role, name), err)
	}
	return p, nil
}

// ListRolePolicies lists the inline policies of role, ErrNotFound if the
// role does not exist.
func (s *sqlDB) ListRolePolicies(ctx context.Context, role string, p Page) ([]RolePolicy, string, error) {
	op := fmt.Sprintf("list role policies of %q", role)
	after, err := decodeMarker(p.Marker, 1)
	if err != nil {
		return nil, "", fmt.Errorf("store: %s: %w", op, err)
	}
	var items []RolePolicy
	var next string
	err = s.read(ctx, op, func(tx querier) error {
		if err := mustExist(ctx, tx, "role", roleExists, role); err != nil {
			return err
		}
		var c conds
		c.add("role_name = ?", role)
		if after != nil {
			c.add("policy_name{{C}} > ?", after[0])
		}
		var err error
		items, next, err = queryPage(ctx, tx,
			"SELECT role_name, policy_name, document FROM role_policies"+c.where()+" ORDER BY policy_name{{C}}",
			c.args, p.limit(), scanRolePolicy, func(rp RolePolicy) []string { return []string{rp.PolicyName} })
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return items, next, nil
}

func (s *sqlDB) DeleteRolePolicy(ctx context.Context, role, name string) error {
	return s.write(ctx, fmt.Sprintf("delete role policy %q/%q", role, name), func(tx querier) error {
		err := affected(tx.ExecContext(ctx, "DELETE FROM role_policies WHERE role_name = ? AND policy_name = ?", role, name))
		if err != nil {
			return err
		}
		return changed(tx, ChangeRole, role)
	})
}

// ---- managed policies ----

// policyCols selects from managed_policies aliased p; the attachment count
// is derived on every read.
const policyCols = `p.arn, p.policy_id, p.name, p.path, p.description, p.document, p.default_version,
	p.tags, p.created_at, p.updated_at,
	(SELECT COUNT(*) FROM role_policy_attachments c WHERE c.policy_arn = p.arn)`

func scanPolicy(sc scanner) (ManagedPolicy, error) {
	var p ManagedPolicy
	var tags string
	var created, updated int64
	if err := sc.Scan(&p.ARN, &p.PolicyID, &p.Name, &p.Path, &p.Description, &p.Document, &p.DefaultVersion,
		&tags, &created, &updated, &p.AttachmentCount); err != nil {
		return p, err
	}
	var err error
	if p.Tags, err = fromJSON[Tag](tags, "policy tags"); err != nil {
		return p, err
	}
	p.CreatedAt = fromNanos(created)
	p.UpdatedAt = fromNanos(updated)
	return p, nil
}

func policyKey(p ManagedPolicy) []string { return []string{p.Name, p.ARN} }

const policyExists = "SELECT 1 FROM managed_policies WHERE arn = ?"

// CreatePolicy stores p; p.AttachmentCount is ignored.
func (s *sqlDB) CreatePolicy(ctx context.Context, p ManagedPolicy) error {
	_, err := s.pool().ExecContext(ctx, `INSERT INTO managed_policies (arn, policy_id, name, path, description,
		document, default_version, tags, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.ARN, p.PolicyID, p.Name, p.Path, p.Description, p.Document, p.DefaultVersion,
		toJSON(p.Tags), toNanos(p.CreatedAt), toNanos(p.UpdatedAt))
	if err != nil {
		return s.wrap(fmt.Sprintf("create policy %q", p.ARN), err)
	}
	return nil
}

func (s *sqlDB) GetPolicy(ctx context.Context, arn string) (ManagedPolicy, error) {
	p, err := scanPolicy(s.pool().QueryRowContext(ctx, "SELECT "+policyCols+" FROM managed_policies p WHERE p.arn = ?", arn))
	if err != nil {
		return ManagedPolicy{}, s.wrap(fmt.Sprintf("get policy %q", arn), err)
	}
	return p, nil
}

func (s *sqlDB) ListPolicies(ctx context.Context, f PolicyFilter, p Page) ([]ManagedPolicy, string, error) {
	after, err := decodeMarker(p.Marker, 2)
	if err != nil {
		return nil, "", fmt.Errorf("store: list policies: %w", err)
	}
	var c conds
	c.pathPrefix("p.path", f.PathPrefix)
	if f.OnlyAttached {
		c.add("EXISTS (SELECT 1 FROM role_policy_attachments a WHERE a.policy_arn = p.arn)")
	}
	if after != nil {
		c.add("(p.name{{C}}, p.arn{{C}}) > (?, ?)", after[0], after[1])
	}
	items, next, err := queryPage(ctx, s.pool(),
		"SELECT "+policyCols+" FROM managed_policies p"+c.where()+" ORDER BY p.name{{C}}, p.arn{{C}}",
		c.args, p.limit(), scanPolicy, policyKey)
	if err != nil {
		return nil, "", s.wrap("list policies", err)
	}
	return items, next, nil
}

func (s *sqlDB) DeletePolicy(ctx context.Context, arn string) error {
	return s.write(ctx, fmt.Sprintf("delete policy %q", arn), func(tx querier) error {
		if err := mustExist(ctx, tx, "policy", policyExists+"{{forUpdate}}", arn); err != nil {
			return err
		}
		attached, err := exists(ctx, tx, "SELECT 1 FROM role_policy_attachments WHERE policy_arn = ? LIMIT 1", arn)
		if err != nil {
			return err
		}
		if attached {
			return fmt.Errorf("policy is attached: %w", ErrConflict)
		}
		_, err = tx.ExecContext(ctx, "DELETE FROM managed_policies WHERE arn = ?", arn)
		return s.restrict(err)
	})
}

// AttachRolePolicy attaches policyARN to role; attaching it again is a no-op,
// as in IAM.
func (s *sqlDB) AttachRolePolicy(ctx context.Context, role, policyARN string) error {
	return s.write(ctx, fmt.Sprintf("attach policy %q to role %q", policyARN, role), func(tx querier) error {
		if err := mustExist(ctx, tx, "role", roleExists+"{{forShare}}", role); err != nil {
			return err
		}
		if err := mustExist(ctx, tx, "policy", policyExists+"{{forShare}}", policyARN); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO role_policy_attachments (role_name, policy_arn) VALUES (?, ?)
			ON CONFLICT (role_name, policy_arn) DO NOTHING`, role, policyARN)
		if err != nil {
			return err
		}
		return changed(tx, ChangeRole, role)
	})
}

func (s *sqlDB) DetachRolePolicy(ctx context.Context, role, policyARN string) error {
	return s.write(ctx, fmt.Sprintf("detach policy %q from role %q", policyARN, role), func(tx querier) error {
		err := affected(tx.ExecContext(ctx,
			"DELETE FROM role_policy_attachments WHERE role_name = ? AND policy_arn = ?", role, policyARN))
		if err != nil {
			return err
		}
		return changed(tx, ChangeRole, role)
	})
}

// ListAttachedRolePolicies lists the policies attached to role (ErrNotFound
// if it does not exist); f.OnlyAttached is implied.
func (s *sqlDB) ListAttachedRolePolicies(ctx context.Context, role string, f PolicyFilter, p Page) ([]ManagedPolicy, string, error) {
	op := fmt.Sprintf("list policies attached to role %q", role)
	after, err := decodeMarker(p.Marker, 2)
	if err != nil {
		return nil, "", fmt.Errorf("store: %s: %w", op, err)
	}
	var items []ManagedPolicy
	var next string
	err = s.read(ctx, op, func(tx querier) error {
		if err := mustExist(ctx, tx, "role", roleExists, role); err != nil {
			return err
		}
		var c conds
		c.add("a.role_name = ?", role)
		c.pathPrefix("p.path", f.PathPrefix)
		if after != nil {
			c.add("(p.name{{C}}, p.arn{{C}}) > (?, ?)", after[0], after[1])
		}
		var err error
		items, next, err = queryPage(ctx, tx, "SELECT "+policyCols+
			" FROM managed_policies p JOIN role_policy_attachments a ON a.policy_arn = p.arn"+
			c.where()+" ORDER BY p.name{{C}}, p.arn{{C}}", c.args, p.limit(), scanPolicy, policyKey)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return items, next, nil
}

// ---- OIDC providers ----

const oidcCols = "arn, url, client_ids, thumbprints, tags, created_at"

func scanOIDC(sc scanner) (OIDCProvider, error) {
	var o OIDCProvider
	var ids, thumbs, tags string
	var created int64
	if err := sc.Scan(&o.ARN, &o.URL, &ids, &thumbs, &tags, &created); err != nil {
		return o, err
	}
	var err error
	if o.ClientIDs, err = fromJSON[string](ids, "client IDs"); err != nil {
		return o, err
	}
	if o.Thumbprints, err = fromJSON[string](thumbs, "thumbprints"); err != nil {
		return o, err
	}
	if o.Tags, err = fromJSON[Tag](tags, "OIDC provider tags"); err != nil {
		return o, err
	}
	o.CreatedAt = fromNanos(created)
	return o, nil
}

func getOIDC(ctx context.Context, q querier, arn, lock string) (OIDCProvider, error) {
	return scanOIDC(q.QueryRowContext(ctx, "SELECT "+oidcCols+" FROM oidc_providers WHERE arn = ?"+lock, arn))
}

func (s *sqlDB) CreateOIDCProvider(ctx context.Context, o OIDCProvider) error {
	return s.write(ctx, fmt.Sprintf("create OIDC provider %q", o.URL), func(tx querier) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO oidc_providers ("+oidcCols+") VALUES (?, ?, ?, ?, ?, ?)",
			o.ARN, o.URL, toJSON(o.ClientIDs), toJSON(o.Thumbprints), toJSON(o.Tags), toNanos(o.CreatedAt))
		if err != nil {
			return err
		}
		return changed(tx, ChangeOIDCProvider, o.ARN)
	})
}

func (s *sqlDB) GetOIDCProvider(ctx context.Context, arn string) (OIDCProvider, error) {
	o, err := getOIDC(ctx, s.pool(), arn, "")
	if err != nil {
		return OIDCProvider{}, s.wrap(fmt.Sprintf("get OIDC provider %q", arn), err)
	}
	return o, nil
}

func (s *sqlDB) ListOIDCProviders(ctx context.Context) ([]OIDCProvider, error) {
	items, err := queryAll(ctx, s.pool(), "SELECT "+oidcCols+" FROM oidc_providers ORDER BY arn{{C}}", nil, scanOIDC)
	if err != nil {
		return nil, s.wrap("list OIDC providers", err)
	}
	return items, nil
}

// UpdateOIDCProvider applies fn to the provider; its ARN is the key and a
// change fn makes to it is not written.
func (s *sqlDB) UpdateOIDCProvider(ctx context.Context, arn string, fn func(*OIDCProvider) error) (OIDCProvider, error) {
	var out OIDCProvider
	err := s.write(ctx, fmt.Sprintf("update OIDC provider %q", arn), func(tx querier) error {
		o, err := getOIDC(ctx, tx, arn, "{{forUpdate}}")
		if err != nil {
			return err
		}
		if err := fn(&o); err != nil {
			return callerError{err}
		}
		o.ARN = arn
		_, err = tx.ExecContext(ctx, `UPDATE oidc_providers SET url = ?, client_ids = ?, thumbprints = ?, tags = ?,
			created_at = ? WHERE arn = ?`,
			o.URL, toJSON(o.ClientIDs), toJSON(o.Thumbprints), toJSON(o.Tags), toNanos(o.CreatedAt), arn)
		if err != nil {
			return err
		}
		out = o
		return changed(tx, ChangeOIDCProvider, arn)
	})
	if err != nil {
		return OIDCProvider{}, err
	}
	return out, nil
}

func (s *sqlDB) DeleteOIDCProvider(ctx context.Context, arn string) error {
	return s.write(ctx, fmt.Sprintf("delete OIDC provider %q", arn), func(tx querier) error {
		if err := affected(tx.ExecContext(ctx, "DELETE FROM oidc_providers WHERE arn = ?", arn)); err != nil {
			return err
		}
		return changed(tx, ChangeOIDCProvider, arn)
	})
}

// ---- clusters ----

const clusterCols = "name, arn, issuer, key_source, key_source_arg, kubeconfig, jwks, token_review, tags, created_at"

func scanCluster(sc scanner) (Cluster, error) {
	var c Cluster
	var tags string
	var review int
	var created int64
	if err := sc.Scan(&c.Name, &c.ARN, &c.Issuer, &c.KeySource, &c.KeySourceArg, &c.Kubeconfig, &c.JWKS, &review,
		&tags, &created); err != nil {
		return c, err
	}
	var err error
	if c.Tags, err = fromJSON[Tag](tags, "cluster tags"); err != nil {
		return c, err
	}
	c.JWKS = nilIfEmpty(c.JWKS)
	c.TokenReview = review != 0
	c.CreatedAt = fromNanos(created)
	return c, nil
}

func getCluster(ctx context.Context, q querier, name, lock string) (Cluster, error) {
	return scanCluster(q.QueryRowContext(ctx, "SELECT "+clusterCols+" FROM clusters WHERE name = ?"+lock, name))
}

const clusterExists = "SELECT 1 FROM clusters WHERE name = ?"

func (s *sqlDB) CreateCluster(ctx context.Context, c Cluster) error {
	return s.write(ctx, fmt.Sprintf("create cluster %q", c.Name), func(tx querier) error {
		_, err := tx.ExecContext(ctx, "INSERT INTO clusters ("+clusterCols+") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			c.Name, c.ARN, c.Issuer, c.KeySource, c.KeySourceArg, c.Kubeconfig, nilIfEmpty(c.JWKS), boolInt(c.TokenReview),
			toJSON(c.Tags), toNanos(c.CreatedAt))
		if err != nil {
			return err
		}
		return changed(tx, ChangeCluster, c.Name)
	})
}

func (s *sqlDB) GetCluster(ctx context.Context, name string) (Cluster, error) {
	c, err := getCluster(ctx, s.pool(), name, "")
	if err != nil {
		return Cluster{}, s.wrap(fmt.Sprintf("get cluster %q", name), err)
	}
	return c, nil
}

func (s *sqlDB) ListClusters(ctx context.Context, p Page) ([]Cluster, string, error) {
	after, err := decodeMarker(p.Marker, 1)
	if err != nil {
		return nil, "", fmt.Errorf("store: list clusters: %w", err)
	}
	var c conds
	if after != nil {
		c.add("name{{C}} > ?", after[0])
	}
	items, next, err := queryPage(ctx, s.pool(), "SELECT "+clusterCols+" FROM clusters"+c.where()+" ORDER BY name{{C}}",
		c.args, p.limit(), scanCluster, func(c Cluster) []string { return []string{c.Name} })
	if err != nil {
		return nil, "", s.wrap("list clusters", err)
	}
	return items, next, nil
}

// UpdateCluster applies fn to the cluster; its name is the key and a change
// fn makes to it is not written.
func (s *sqlDB) UpdateCluster(ctx context.Context, name string, fn func(*Cluster) error) (Cluster, error) {
	var out Cluster
	err := s.write(ctx, fmt.Sprintf("update cluster %q", name), func(tx querier) error {
		c, err := getCluster(ctx, tx, name, "{{forUpdate}}")
		if err != nil {
			return err
		}
		if err := fn(&c); err != nil {
			return callerError{err}
		}
		c.Name = name
		c.JWKS = nilIfEmpty(c.JWKS)
		_, err = tx.ExecContext(ctx, `UPDATE clusters SET arn = ?, issuer = ?, key_source = ?, key_source_arg = ?,
			kubeconfig = ?, jwks = ?, token_review = ?, tags = ?, created_at = ? WHERE name = ?`,
			c.ARN, c.Issuer, c.KeySource, c.KeySourceArg, c.Kubeconfig, c.JWKS, boolInt(c.TokenReview),
			toJSON(c.Tags), toNanos(c.CreatedAt), name)
		if err != nil {
			return err
		}
		out = c
		return changed(tx, ChangeCluster, name)
	})
	if err != nil {
		return Cluster{}, err
	}
	return out, nil
}

// DeleteCluster deletes the cluster and, through the foreign key, its
// associations, in one statement; it announces the cluster only.
func (s *sqlDB) DeleteCluster(ctx context.Context, name string) error {
	return s.write(ctx, fmt.Sprintf("delete cluster %q", name), func(tx querier) error {
		if err := affected(tx.ExecContext(ctx, "DELETE FROM clusters WHERE name = ?", name)); err != nil {
			return err
		}
		return changed(tx, ChangeCluster, name)
	})
}

// ---- associations ----

const assocCols = `cluster_name, id, arn, namespace, service_account, role_arn, target_role_arn, external_id,
	disable_session_tags, policy, tags, owner_arn, client_request_token, request_hash, created_at, modified_at`

func scanAssociation(sc scanner) (Association, error) {
	var a Association
	var tags string
	var disable int
	var created, modified int64
	if err := sc.Scan(&a.ClusterName, &a.ID, &a.ARN, &a.Namespace, &a.ServiceAccount, &a.RoleARN,
		&a.TargetRoleARN, &a.ExternalID, &disable, &a.Policy, &tags, &a.OwnerARN, &a.ClientRequestToken,
		&a.RequestHash, &created, &modified); err != nil {
		return a, err
	}
	var err error
	if a.Tags, err = fromJSON[Tag](tags, "association tags"); err != nil {
		return a, err
	}
	a.DisableSessionTags = disable != 0
	a.CreatedAt = fromNanos(created)
	a.ModifiedAt = fromNanos(modified)
	return a, nil
}

func getAssociation(ctx context.Context, q querier, cluster, id, lock string) (Association, error) {
	return scanAssociation(q.QueryRowContext(ctx,
		"SELECT "+assocCols+" FROM associations WHERE cluster_name = ? AND id = ?"+lock, cluster, id))
}

// CreateAssociation inserts a; the unique key on (cluster, namespace,
// service account) decides between two concurrent creates: on PostgreSQL
// the second insert waits for the first to commit, then fails with ErrExists.
func (s *sqlDB) CreateAssociation(ctx context.Context, a Association) error {
	op := fmt.Sprintf("create association %s/%s in cluster %q", a.Namespace, a.ServiceAccount, a.ClusterName)
	return s.write(ctx, op, func(tx querier) error {
		if err := mustExist(ctx, tx, "cluster", clusterExists+"{{forShare}}", a.ClusterName); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, "INSERT INTO associations ("+assocCols+
			") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
			a.ClusterName, a.ID, a.ARN, a.Namespace, a.ServiceAccount, a.RoleARN, a.TargetRoleARN, a.ExternalID,
			boolInt(a.DisableSessionTags), a.Policy, toJSON(a.Tags), a.OwnerARN, a.ClientRequestToken,
			a.RequestHash, toNanos(a.CreatedAt), toNanos(a.ModifiedAt))
		if err != nil {
			return err
		}
		return changed(tx, ChangeAssociation, AssociationKey(a.ClusterName, a.Namespace, a.ServiceAccount))
	})
}

func (s *sqlDB) GetAssociation(ctx context.Context, cluster, id string) (Association, error) {
	a, err := getAssociation(ctx, s.pool(), cluster, id, "")
	if err != nil {
		return Association{}, s.wrap(fmt.Sprintf("get association %q in cluster %q", id, cluster), err)
	}
	return a, nil
}

func (s *sqlDB) FindAssociation(ctx context.Context, cluster, namespace, serviceAccount string) (Association, error) {
	a, err := scanAssociation(s.pool().QueryRowContext(ctx, "SELECT "+assocCols+
		" FROM associations WHERE cluster_name = ? AND namespace = ? AND service_account = ?",
		cluster, namespace, serviceAccount))
	if err != nil {
		return Association{}, s.wrap(fmt.Sprintf("find association %s/%s in cluster %q", namespace, serviceAccount, cluster), err)
	}
	return a, nil
}

// FindAssociationByRequestToken finds the association created with the
// client request token; an empty token matches nothing.
func (s *sqlDB) FindAssociationByRequestToken(ctx context.Context, cluster, token string) (Association, error) {
	op := fmt.Sprintf("find association by request token in cluster %q", cluster)
	if token == "" {
		return Association{}, fmt.Errorf("store: %s: %w", op, ErrNotFound)
	}
	a, err := scanAssociation(s.pool().QueryRowContext(ctx, "SELECT "+assocCols+
		" FROM associations WHERE cluster_name = ? AND client_request_token = ? ORDER BY created_at, id{{C}} LIMIT 1",
		cluster, token))
	if err != nil {
		return Association{}, s.wrap(op, err)
	}
	return a, nil
}

// ListAssociations lists the associations of cluster (ErrNotFound if it does
// not exist), ordered by ID.
func (s *sqlDB) ListAssociations(ctx context.Context, cluster string, f AssociationFilter, p Page) ([]Association, string, error) {
	op := fmt.Sprintf("list associations of cluster %q", cluster)
	after, err := decodeMarker(p.Marker, 1)
	if err != nil {
		return nil, "", fmt.Errorf("store: %s: %w", op, err)
	}
	var items []Association
	var next string
	err = s.read(ctx, op, func(tx querier) error {
		if err := mustExist(ctx, tx, "cluster", clusterExists, cluster); err != nil {
			return err
		}
		var c conds
		c.add("cluster_name = ?", cluster)
		if f.Namespace != "" {
			c.add("namespace = ?", f.Namespace)
		}
		if f.ServiceAccount != "" {
			c.add("service_account = ?", f.ServiceAccount)
		}
		if after != nil {
			c.add("id{{C}} > ?", after[0])
		}
		var err error
		items, next, err = queryPage(ctx, tx, "SELECT "+assocCols+" FROM associations"+c.where()+" ORDER BY id{{C}}",
			c.args, p.limit(), scanAssociation, func(a Association) []string { return []string{a.ID} })
		return err
	})
	if err != nil {
		return nil, "", err
	}
	return items, next, nil
}

// UpdateAssociation applies fn to the association; ClusterName and ID are
// the key and changes fn makes to them are not written.
func (s *sqlDB) UpdateAssociation(ctx context.Context, cluster, id string, fn func(*Association) error) (Association, error) {
	var out Association
	err := s.write(ctx, fmt.Sprintf("update association %q in cluster %q", id, cluster), func(tx querier) error {
		a, err := getAssociation(ctx, tx, cluster, id, "{{forUpdate}}")
		if err != nil {
			return err
		}
		before := AssociationKey(cluster, a.Namespace, a.ServiceAccount)
		if err := fn(&a); err != nil {
			return callerError{err}
		}
		a.ClusterName, a.ID = cluster, id
		_, err = tx.ExecContext(ctx, `UPDATE associations SET arn = ?, namespace = ?, service_account = ?,
			role_arn = ?, target_role_arn = ?, external_id = ?, disable_session_tags = ?, policy = ?, tags = ?,
			owner_arn = ?, client_request_token = ?, request_hash = ?, created_at = ?, modified_at = ?
			WHERE cluster_name = ? AND id = ?`,
			a.ARN, a.Namespace, a.ServiceAccount, a.RoleARN, a.TargetRoleARN, a.ExternalID,
			boolInt(a.DisableSessionTags), a.Policy, toJSON(a.Tags), a.OwnerARN, a.ClientRequestToken,
			a.RequestHash, toNanos(a.CreatedAt), toNanos(a.ModifiedAt), cluster, id)
		if err != nil {
			return err
		}
		out = a
		if err := changed(tx, ChangeAssociation, before); err != nil {
			return err
		}
		return changed(tx, ChangeAssociation, AssociationKey(cluster, a.Namespace, a.ServiceAccount))
	})
	if err != nil {
		return Association{}, err
	}
	return out, nil
}

// DeleteAssociation deletes the association and returns it as it was.
func (s *sqlDB) DeleteAssociation(ctx context.Context, cluster, id string) (Association, error) {
	var out Association
	err := s.write(ctx, fmt.Sprintf("delete association %q in cluster %q", id, cluster), func(tx querier) error {
		a, err := getAssociation(ctx, tx, cluster, id, "{{forUpdate}}")
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM associations WHERE cluster_name = ? AND id = ?", cluster, id); err != nil {
			return err
		}
		out = a
		return changed(tx, ChangeAssociation, AssociationKey(cluster, a.Namespace, a.ServiceAccount))
	})
	if err != nil {
		return Association{}, err
	}
	return out, nil
}
