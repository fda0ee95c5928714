package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/podid/podid/internal/store"
	"github.com/podid/podid/internal/store/pgtest"
)

func runStoreCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

// TestStoreCommands: migrate, back up SQLite, restore into PostgreSQL, back
// that up and restore it into a new SQLite database.
func TestStoreCommands(t *testing.T) {
	dir := t.TempDir()
	sqlitePath := filepath.Join(dir, "src.db")
	pg := pgtest.Start(t)

	for _, dsn := range []string{sqlitePath, pg} {
		out, err := runStoreCLI(t, "store", "migrate", "--store", dsn)
		if err != nil || !strings.Contains(out, "schema at version") {
			t.Fatalf("store migrate --store %s: %v\n%s", dsn, err, out)
		}
	}

	s, err := store.Open(sqlitePath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.PutMetaIfAbsent(t.Context(), "account-id", "123456789012"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateSealingKey(t.Context(), store.SealingKey{ID: "k1", Sealed: []byte{0, 0xff}}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	b1 := filepath.Join(dir, "b1.jsonl")
	if out, err := runStoreCLI(t, "store", "backup", "--store", sqlitePath, "--out", b1); err != nil {
		t.Fatalf("backup: %v\n%s", err, out)
	}
	if fi, err := os.Stat(b1); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v; want mode 0600", fi, err)
	}
	if out, err := runStoreCLI(t, "store", "restore", "--store", pg, "--in", b1); err != nil {
		t.Fatalf("restore into postgres: %v\n%s", err, out)
	}
	// Again: refused, the store is no longer empty; --force replaces.
	out, err := runStoreCLI(t, "store", "restore", "--store", pg, "--in", b1)
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("second restore = %v, want a refusal naming --force\n%s", err, out)
	}
	if out, err := runStoreCLI(t, "store", "restore", "--store", pg, "--in", b1, "--force"); err != nil {
		t.Fatalf("forced restore: %v\n%s", err, out)
	}

	b2 := filepath.Join(dir, "b2.jsonl")
	if out, err := runStoreCLI(t, "store", "backup", "--store", pg, "--out", b2); err != nil {
		t.Fatalf("backup postgres: %v\n%s", err, out)
	}
	back := "sqlite:" + filepath.Join(dir, "back.db")
	if out, err := runStoreCLI(t, "store", "restore", "--store", back, "--in", b2); err != nil {
		t.Fatalf("restore into sqlite: %v\n%s", err, out)
	}
	s, err = store.Open(back)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if v, err := s.GetMeta(t.Context(), "account-id"); err != nil || v != "123456789012" {
		t.Errorf("account ID after SQLite → PostgreSQL → SQLite: %q, %v", v, err)
	}
	keys, err := s.ListSealingKeys(t.Context())
	if err != nil || len(keys) != 1 || !bytes.Equal(keys[0].Sealed, []byte{0, 0xff}) {
		t.Errorf("sealing keys after the round trip: %+v, %v", keys, err)
	}
}

func TestStoreHelpSaysMasterKeyIsNotInBackup(t *testing.T) {
	for _, verb := range []string{"backup", "restore"} {
		out, err := runStoreCLI(t, "store", verb, "--help")
		if err != nil || !strings.Contains(out, "master key is NOT in the backup") {
			t.Errorf("store %s --help does not say the master key is not in the backup: %v\n%s", verb, err, out)
		}
	}
}
