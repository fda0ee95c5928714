package store

import "context"

// AppliedMigrations returns the applied schema versions and when each was
// applied (unix nanoseconds), for the tests.
func AppliedMigrations(s *SQLite) (map[int]int64, error) {
	rows, err := s.db.QueryContext(context.Background(), "SELECT version, applied_at FROM schema_migrations")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[int]int64{}
	for rows.Next() {
		var v int
		var at int64
		if err := rows.Scan(&v, &at); err != nil {
			return nil, err
		}
		out[v] = at
	}
	return out, rows.Err()
}

// MigrationCount is the number of schema steps.
var MigrationCount = len(migrations)
