package store

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// A backup is JSON lines: a header, one line per row, and a trailer that
// counts the rows, so a truncated file is refused rather than half restored.
//
//	{"format":"podid-store-backup","version":1,"schema_version":2,"source":"sqlite","created_at":"…"}
//	{"table":"roles","row":{"name":"app",…}}
//	{"end":true,"rows":42}
//
// Rows hold the columns as stored: timestamps as unix nanoseconds, byte
// columns in base64, the JSON columns (tags…) as their text. Secrets stay
// as the store holds them, sealed with the server's master key, which is
// not in the backup: restoring is useful only to a server with that key.
const (
	backupFormat  = "podid-store-backup"
	backupVersion = 1
)

// ErrNotEmpty is returned by Restore into a store that holds data.
var ErrNotEmpty = errors.New("store: not empty")

type colKind int

const (
	kText colKind = iota
	kInt
	kBytes     // NOT NULL bytes
	kNullBytes // bytes or NULL
)

type column struct {
	name string
	kind colKind
}

type table struct {
	name string
	cols []column
	key  []string // text columns to ORDER BY, for the same file from either backend
}

func textCols(names ...string) []column {
	out := make([]column, len(names))
	for i, n := range names {
		out[i] = column{n, kText}
	}
	return out
}

// tables lists every table a backup holds, parents before children. Backup
// checks it against the live schema, so a migration that adds a column
// without adding it here fails the tests rather than losing data.
var tables = []table{
	{"meta", textCols("key", "value"), []string{"key"}},
	{"sealing_keys", []column{{"id", kText}, {"sealed", kBytes}, {"created_at", kInt}}, []string{"id"}},
	{"access_keys", []column{{"access_key_id", kText}, {"secret_sealed", kBytes}, {"principal_arn", kText},
		{"status", kText}, {"created_at", kInt}}, []string{"access_key_id"}},
	{"roles", append(textCols("name", "role_id", "path", "arn", "assume_role_policy", "description"),
		column{"max_session_duration", kInt}, column{"tags", kText}, column{"created_at", kInt}), []string{"name"}},
	{"role_policies", textCols("role_name", "policy_name", "document"), []string{"role_name", "policy_name"}},
	{"managed_policies", append(textCols("arn", "policy_id", "name", "path", "description", "document",
		"default_version", "tags"), column{"created_at", kInt}, column{"updated_at", kInt}), []string{"arn"}},
	{"role_policy_attachments", textCols("role_name", "policy_arn"), []string{"role_name", "policy_arn"}},
	{"oidc_providers", append(textCols("arn", "url", "client_ids", "thumbprints", "tags"),
		column{"created_at", kInt}), []string{"arn"}},
	{"clusters", append(textCols("name", "arn", "issuer", "key_source", "key_source_arg", "kubeconfig"),
		column{"jwks", kNullBytes}, column{"token_review", kInt}, column{"tags", kText},
		column{"created_at", kInt}), []string{"name"}},
	{"associations", append(textCols("cluster_name", "id", "arn", "namespace", "service_account", "role_arn",
		"target_role_arn", "external_id"), column{"disable_session_tags", kInt}, column{"policy", kText},
		column{"tags", kText}, column{"owner_arn", kText}, column{"client_request_token", kText},
		column{"request_hash", kText}, column{"created_at", kInt}, column{"modified_at", kInt}), []string{"cluster_name", "id"}},
}

func tableByName(name string) (table, bool) {
	for _, t := range tables {
		if t.name == name {
			return t, true
		}
	}
	return table{}, false
}

// BackupInfo describes a backup.
type BackupInfo struct {
	Format        string    `json:"format"`
	Version       int       `json:"version"`
	SchemaVersion int       `json:"schema_version"`
	Source        string    `json:"source"` // sqlite | postgres
	CreatedAt     time.Time `json:"created_at"`
	Rows          int       `json:"-"`
}

type backupLine struct {
	Table string                     `json:"table,omitempty"`
	Row   map[string]json.RawMessage `json:"row,omitempty"`
	End   bool                       `json:"end,omitempty"`
	Rows  int                        `json:"rows,omitempty"`
}

// engine gives the backup code the SQL store under a Store.
func engine(s Store) (*sqlDB, error) {
	switch v := s.(type) {
	case *SQLite:
		return &v.sqlDB, nil
	case *Postgres:
		return &v.sqlDB, nil
	}
	return nil, fmt.Errorf("store: %T cannot be backed up or restored", s)
}

// SchemaVersion returns the last migration applied to the store.
func SchemaVersion(ctx context.Context, s Store) (int, error) {
	e, err := engine(s)
	if err != nil {
		return 0, err
	}
	v, err := schemaVersion(ctx, e.pool())
	if err != nil {
		return 0, fmt.Errorf("store: schema version: %w", err)
	}
	return v, nil
}

func schemaVersion(ctx context.Context, q querier) (int, error) {
	var v sql.NullInt64
	if err := q.QueryRowContext(ctx, "SELECT MAX(version) FROM schema_migrations").Scan(&v); err != nil {
		return 0, err
	}
	return int(v.Int64), nil
}

// Backup writes every table of s to w from one read transaction, so the
// copy is a consistent snapshot while the servers keep writing (REPEATABLE
// READ on PostgreSQL, a WAL snapshot on SQLite).
func Backup(ctx context.Context, s Store, w io.Writer) (BackupInfo, error) {
	e, err := engine(s)
	if err != nil {
		return BackupInfo{}, err
	}
	info := BackupInfo{Format: backupFormat, Version: backupVersion, Source: e.d.name, CreatedAt: time.Now().UTC()}
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	err = e.read(ctx, "backup", func(tx querier) error {
		var err error
		if info.SchemaVersion, err = schemaVersion(ctx, tx); err != nil {
			return err
		}
		if err := enc.Encode(info); err != nil {
			return err
		}
		for _, t := range tables {
			n, err := backupTable(ctx, tx, t, enc)
			if err != nil {
				return fmt.Errorf("table %s: %w", t.name, err)
			}
			info.Rows += n
		}
		return enc.Encode(backupLine{End: true, Rows: info.Rows})
	})
	if err != nil {
		return BackupInfo{}, err
	}
	if err := bw.Flush(); err != nil {
		return BackupInfo{}, fmt.Errorf("store: backup: %w", err)
	}
	return info, nil
}

func backupTable(ctx context.Context, tx querier, t table, enc *json.Encoder) (int, error) {
	names := make([]string, len(t.cols))
	for i, c := range t.cols {
		names[i] = c.name
	}
	if err := checkColumns(ctx, tx, t, names); err != nil {
		return 0, err
	}
	rows, err := tx.QueryContext(ctx, "SELECT "+strings.Join(names, ", ")+" FROM "+t.name+
		" ORDER BY "+strings.Join(t.key, "{{C}}, ")+"{{C}}")
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		vals := make([]any, len(t.cols))
		dest := make([]any, len(t.cols))
		for i, c := range t.cols {
			switch c.kind {
			case kText:
				dest[i] = new(string)
			case kInt:
				dest[i] = new(int64)
			default:
				dest[i] = new([]byte)
			}
		}
		if err := rows.Scan(dest...); err != nil {
			return n, err
		}
		row := make(map[string]json.RawMessage, len(t.cols))
		for i, c := range t.cols {
			switch c.kind {
			case kText:
				vals[i] = *dest[i].(*string)
			case kInt:
				vals[i] = *dest[i].(*int64)
			case kBytes:
				vals[i] = base64.StdEncoding.EncodeToString(*dest[i].(*[]byte))
			case kNullBytes:
				if b := *dest[i].(*[]byte); b != nil {
					vals[i] = base64.StdEncoding.EncodeToString(b)
				}
			}
			raw, err := json.Marshal(vals[i])
			if err != nil {
				return n, err
			}
			row[c.name] = raw
		}
		if err := enc.Encode(backupLine{Table: t.name, Row: row}); err != nil {
			return n, err
		}
		n++
	}
	return n, rows.Err()
}

// checkColumns fails when the table has a column the backup would miss.
func checkColumns(ctx context.Context, tx querier, t table, names []string) error {
	rows, err := tx.QueryContext(ctx, "SELECT * FROM "+t.name+" LIMIT 0")
	if err != nil {
		return err
	}
	defer rows.Close()
	live, err := rows.Columns()
	if err != nil {
		return err
	}
	for _, c := range live {
		if !slices.Contains(names, c) {
			return fmt.Errorf("column %s is not in the backup format (store.tables)", c)
		}
	}
	return nil
}

// RestoreOptions control Restore.
type RestoreOptions struct {
	// Force replaces the contents of a store that is not empty.
	Force bool
}

type restoreRow struct {
	t    table
	cols []string
	args []any
}

// Restore loads a backup made by Backup (from either backend) into s in one
// transaction: all of it or, on any error, nothing. s must be empty unless
// opts.Force; on PostgreSQL the tables are locked against other writers for
// the duration. The backup's schema version must not be newer than s's.
func Restore(ctx context.Context, s Store, r io.Reader, opts RestoreOptions) (BackupInfo, error) {
	e, err := engine(s)
	if err != nil {
		return BackupInfo{}, err
	}
	info, rows, err := readBackup(r)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("store: restore: %w", err)
	}
	err = e.write(ctx, "restore", func(tx querier) error {
		names := make([]string, len(tables))
		for i, t := range tables {
			names[i] = t.name
		}
		if lock := e.d.lockTables(names); lock != "" {
			if _, err := tx.ExecContext(ctx, lock); err != nil {
				return err
			}
		}
		current, err := schemaVersion(ctx, tx)
		if err != nil {
			return err
		}
		if info.SchemaVersion > current {
			return fmt.Errorf("backup has schema version %d, newer than this store's %d: restore it with the podid that made it",
				info.SchemaVersion, current)
		}
		for i := len(tables) - 1; i >= 0; i-- { // children first
			t := tables[i]
			if !opts.Force {
				has, err := exists(ctx, tx, "SELECT 1 FROM "+t.name+" LIMIT 1")
				if err != nil {
					return err
				}
				if has {
					return fmt.Errorf("table %s has rows: %w (restore replaces a store's contents only when forced)", t.name, ErrNotEmpty)
				}
				continue
			}
			if _, err := tx.ExecContext(ctx, "DELETE FROM "+t.name); err != nil {
				return fmt.Errorf("empty table %s: %w", t.name, err)
			}
		}
		for _, row := range rows {
			q := "INSERT INTO " + row.t.name + " (" + strings.Join(row.cols, ", ") + ") VALUES (?" +
				strings.Repeat(", ?", len(row.cols)-1) + ")"
			if _, err := tx.ExecContext(ctx, q, row.args...); err != nil {
				return fmt.Errorf("insert into %s: %w", row.t.name, err)
			}
		}
		// Servers sharing the store forget what they cache.
		return changed(tx, ChangeAll, ReasonRestore)
	})
	if err != nil {
		return BackupInfo{}, err
	}
	return info, nil
}

// readBackup parses and checks a whole backup before anything is written.
func readBackup(r io.Reader) (BackupInfo, []restoreRow, error) {
	dec := json.NewDecoder(bufio.NewReader(r))
	dec.UseNumber()
	var info BackupInfo
	if err := dec.Decode(&info); err != nil {
		return info, nil, fmt.Errorf("read header: %w", err)
	}
	if info.Format != backupFormat {
		return info, nil, fmt.Errorf("not a podid store backup (format %q)", info.Format)
	}
	if info.Version != backupVersion {
		return info, nil, fmt.Errorf("backup format version %d is not supported (want %d)", info.Version, backupVersion)
	}
	var rows []restoreRow
	order := 0 // index in tables of the last table seen, so parents come first
	for line := 2; ; line++ {
		var l backupLine
		if err := dec.Decode(&l); err != nil {
			if errors.Is(err, io.EOF) {
				return info, nil, errors.New("backup is truncated: no end line")
			}
			return info, nil, fmt.Errorf("line %d: %w", line, err)
		}
		if l.End {
			if l.Rows != len(rows) {
				return info, nil, fmt.Errorf("backup ends after %d rows but says it has %d", len(rows), l.Rows)
			}
			if dec.More() {
				return info, nil, fmt.Errorf("line %d: data after the end line", line+1)
			}
			info.Rows = len(rows)
			return info, rows, nil
		}
		t, ok := tableByName(l.Table)
		if !ok {
			return info, nil, fmt.Errorf("line %d: unknown table %q", line, l.Table)
		}
		idx := slices.IndexFunc(tables, func(x table) bool { return x.name == t.name })
		if idx < order {
			return info, nil, fmt.Errorf("line %d: table %s after its children", line, t.name)
		}
		order = idx
		row, err := decodeRow(t, l.Row)
		if err != nil {
			return info, nil, fmt.Errorf("line %d: table %s: %w", line, t.name, err)
		}
		rows = append(rows, row)
	}
}

// decodeRow turns a backup row into INSERT columns and arguments. Columns
// the backup lacks (made by an older schema) take their defaults.
func decodeRow(t table, raw map[string]json.RawMessage) (restoreRow, error) {
	for name := range raw {
		if !slices.ContainsFunc(t.cols, func(c column) bool { return c.name == name }) {
			return restoreRow{}, fmt.Errorf("unknown column %q", name)
		}
	}
	row := restoreRow{t: t}
	for _, c := range t.cols {
		v, ok := raw[c.name]
		if !ok {
			continue
		}
		var arg any
		switch c.kind {
		case kText:
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return row, fmt.Errorf("column %s: %w", c.name, err)
			}
			arg = s
		case kInt:
			var n json.Number
			if err := json.Unmarshal(v, &n); err != nil {
				return row, fmt.Errorf("column %s: %w", c.name, err)
			}
			i, err := n.Int64()
			if err != nil {
				return row, fmt.Errorf("column %s: %w", c.name, err)
			}
			arg = i
		case kBytes, kNullBytes:
			var s *string
			if err := json.Unmarshal(v, &s); err != nil {
				return row, fmt.Errorf("column %s: %w", c.name, err)
			}
			switch {
			case s == nil && c.kind == kBytes:
				return row, fmt.Errorf("column %s: null", c.name)
			case s == nil:
				arg = []byte(nil)
			default:
				b, err := base64.StdEncoding.DecodeString(*s)
				if err != nil {
					return row, fmt.Errorf("column %s: %w", c.name, err)
				}
				arg = blob(b)
			}
		}
		row.cols = append(row.cols, c.name)
		row.args = append(row.args, arg)
	}
	if len(row.cols) == 0 {
		return row, errors.New("empty row")
	}
	return row, nil
}
