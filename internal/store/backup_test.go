package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/podid/podid/internal/store"
	"github.com/podid/podid/internal/store/pgtest"
)

const acct = "123456789012"

var when = time.Date(2025, 3, 4, 5, 6, 7, 8, time.UTC)

// populate writes one or more of every kind of record, with the awkward
// values a backup must carry: bytes that are not UTF-8, a NULL JWKS, empty
// tags, text with quotes and newlines, non-ASCII names.
func populate(t *testing.T, s store.Store) {
	t.Helper()
	ctx := t.Context()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := s.PutMetaIfAbsent(ctx, "account-id", acct)
	must(err)
	must(s.CreateSealingKey(ctx, store.SealingKey{ID: "k1", Sealed: []byte{0, 1, 0xfe, 0xff}, CreatedAt: when}))
	must(s.CreateAccessKey(ctx, store.AccessKey{AccessKeyID: "AKIAEXAMPLE", SecretSealed: []byte("\x00sealed"),
		PrincipalARN: "arn:aws:iam::" + acct + ":root", Status: "Active", CreatedAt: when}))
	for i, name := range []string{"app", "Zeta", "ünïcode"} {
		must(s.CreateRole(ctx, store.Role{RoleID: fmt.Sprintf("AROA%d", i), Name: name, Path: "/team/",
			ARN: "arn:aws:iam::" + acct + ":role/team/" + name, AssumeRolePolicy: "{\"Version\":\"2012-10-17\",\n\"x\":\"'\"}",
			Description: "d " + name, MaxSessionDuration: 7200, Tags: []store.Tag{{Key: "k", Value: name}}, CreatedAt: when}))
	}
	must(s.PutRolePolicy(ctx, store.RolePolicy{RoleName: "app", PolicyName: "inline", Document: `{"a":1}`}))
	must(s.CreatePolicy(ctx, store.ManagedPolicy{ARN: "arn:aws:iam::" + acct + ":policy/p", PolicyID: "ANPA1",
		Name: "p", Path: "/", Document: "{}", DefaultVersion: "v1", CreatedAt: when, UpdatedAt: when.Add(time.Hour)}))
	must(s.AttachRolePolicy(ctx, "app", "arn:aws:iam::"+acct+":policy/p"))
	must(s.CreateOIDCProvider(ctx, store.OIDCProvider{ARN: "arn:aws:iam::" + acct + ":oidc-provider/oidc.example.com/id/X",
		URL: "oidc.example.com/id/X", ClientIDs: []string{"sts.amazonaws.com"}, Thumbprints: []string{"ab"}, CreatedAt: when}))
	must(s.CreateCluster(ctx, store.Cluster{Name: "prod", ARN: "arn:aws:eks:us-east-1:" + acct + ":cluster/prod",
		Issuer: "https://issuer", KeySource: "jwks-url", KeySourceArg: "https://issuer/keys", Kubeconfig: "apiVersion: v1\n",
		JWKS: []byte(`{"keys":[]}`), TokenReview: true, CreatedAt: when}))
	must(s.CreateCluster(ctx, store.Cluster{Name: "dev", ARN: "arn:aws:eks:us-east-1:" + acct + ":cluster/dev",
		Issuer: "https://dev", KeySource: "discovery", CreatedAt: when})) // JWKS NULL
	must(s.CreateAssociation(ctx, store.Association{ID: "a-00000000000000001",
		ARN: "arn:aws:eks:us-east-1:" + acct + ":podidentityassociation/prod/a-00000000000000001", ClusterName: "prod",
		Namespace: "default", ServiceAccount: "app", RoleARN: "arn:aws:iam::" + acct + ":role/team/app",
		DisableSessionTags: true, ClientRequestToken: "tok", RequestHash: "h", CreatedAt: when, ModifiedAt: when}))
}

// rowsOf returns a backup without its header line, which names the source
// and the time; the rows must be identical whichever backend wrote them.
func rowsOf(t *testing.T, b []byte) string {
	t.Helper()
	_, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok {
		t.Fatalf("backup has no header line: %q", b)
	}
	return string(rest)
}

func backup(t *testing.T, s store.Store) []byte {
	t.Helper()
	var buf bytes.Buffer
	info, err := store.Backup(t.Context(), s, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if info.SchemaVersion != store.MigrationCount || info.Rows == 0 {
		t.Fatalf("backup info %+v", info)
	}
	return buf.Bytes()
}

func openSQLite(t *testing.T) store.Store {
	t.Helper()
	s, err := store.OpenSQLite(filepath.Join(t.TempDir(), "podid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openPG(t *testing.T) store.Store {
	t.Helper()
	s, err := store.OpenPostgres(t.Context(), pgtest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sameContents compares what the API reads back from two stores.
func sameContents(t *testing.T, a, b store.Store) {
	t.Helper()
	ctx := t.Context()
	read := func(s store.Store) []any {
		var out []any
		add := func(v any, err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, v)
		}
		add(s.GetMeta(ctx, "account-id"))
		add(s.ListSealingKeys(ctx))
		add(s.ListAccessKeys(ctx, ""))
		roles, _, err := s.ListRoles(ctx, store.RoleFilter{}, store.Page{})
		add(roles, err)
		for _, r := range roles {
			ps, _, err := s.ListRolePolicies(ctx, r.Name, store.Page{})
			add(ps, err)
			ap, _, err := s.ListAttachedRolePolicies(ctx, r.Name, store.PolicyFilter{}, store.Page{})
			add(ap, err)
		}
		add(s.ListOIDCProviders(ctx))
		clusters, _, err := s.ListClusters(ctx, store.Page{})
		add(clusters, err)
		for _, c := range clusters {
			as, _, err := s.ListAssociations(ctx, c.Name, store.AssociationFilter{}, store.Page{})
			add(as, err)
		}
		return out
	}
	if ra, rb := read(a), read(b); !reflect.DeepEqual(ra, rb) {
		t.Errorf("stores differ:\n%+v\n%+v", ra, rb)
	}
}

// TestBackupRestoreAcrossBackends: SQLite → PostgreSQL → SQLite, the same
// rows and the same records through the API at every step.
func TestBackupRestoreAcrossBackends(t *testing.T) {
	ctx := t.Context()
	src := openSQLite(t)
	populate(t, src)
	b1 := backup(t, src)

	pg := openPG(t)
	info, err := store.Restore(ctx, pg, bytes.NewReader(b1), store.RestoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.Source != "sqlite" {
		t.Errorf("restored backup source %q, want sqlite", info.Source)
	}
	sameContents(t, src, pg)
	b2 := backup(t, pg)
	if !strings.Contains(string(b2[:bytes.IndexByte(b2, '\n')]), `"source":"postgres"`) {
		t.Errorf("postgres backup header: %s", b2[:bytes.IndexByte(b2, '\n')])
	}
	if rowsOf(t, b1) != rowsOf(t, b2) {
		t.Errorf("backup rows differ between SQLite and PostgreSQL:\n%s\n---\n%s", rowsOf(t, b1), rowsOf(t, b2))
	}

	back := openSQLite(t)
	if _, err := store.Restore(ctx, back, bytes.NewReader(b2), store.RestoreOptions{}); err != nil {
		t.Fatal(err)
	}
	sameContents(t, src, back)
	if b3 := backup(t, back); rowsOf(t, b3) != rowsOf(t, b1) {
		t.Errorf("round trip changed the rows:\n%s\n---\n%s", rowsOf(t, b1), rowsOf(t, b3))
	}
}

func TestRestoreRefusals(t *testing.T) {
	for _, backend := range []struct {
		name string
		open func(t *testing.T) store.Store
	}{{"sqlite", openSQLite}, {"postgres", openPG}} {
		t.Run(backend.name, func(t *testing.T) {
			ctx := t.Context()
			src := openSQLite(t)
			populate(t, src)
			b := backup(t, src)

			dst := backend.open(t)
			if _, err := dst.PutMetaIfAbsent(ctx, "other", "x"); err != nil {
				t.Fatal(err)
			}
			_, err := store.Restore(ctx, dst, bytes.NewReader(b), store.RestoreOptions{})
			if !errors.Is(err, store.ErrNotEmpty) {
				t.Fatalf("restore into a non-empty store = %v, want ErrNotEmpty", err)
			}
			if _, err := dst.GetRole(ctx, "app"); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("refused restore wrote a role: %v", err)
			}

			// Truncated, reordered, tampered: refused, and nothing written.
			lines := strings.SplitAfter(string(b), "\n")
			bad := map[string]string{
				"truncated":     strings.Join(lines[:len(lines)-3], ""),
				"count":         strings.Join(lines[:len(lines)-2], "") + `{"end":true,"rows":1}` + "\n",
				"unknown table": lines[0] + `{"table":"users","row":{"a":"b"}}` + "\n" + `{"end":true,"rows":1}` + "\n",
				"unknown col":   lines[0] + `{"table":"meta","row":{"key":"a","value":"b","x":"c"}}` + "\n" + `{"end":true,"rows":1}` + "\n",
				"newer schema":  strings.Replace(string(b), `"schema_version":`, `"schema_version":9`, 1),
				"not a backup":  `{"hello":"world"}` + "\n",
			}
			for name, text := range bad {
				_, err := store.Restore(ctx, dst, strings.NewReader(text), store.RestoreOptions{Force: true})
				if err == nil {
					t.Errorf("%s backup restored", name)
				}
			}
			if v, err := dst.GetMeta(ctx, "other"); err != nil || v != "x" {
				t.Fatalf("a refused restore changed the store: %q, %v", v, err)
			}

			// Forced: the store's contents are replaced.
			if _, err := store.Restore(ctx, dst, bytes.NewReader(b), store.RestoreOptions{Force: true}); err != nil {
				t.Fatal(err)
			}
			if _, err := dst.GetMeta(ctx, "other"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("forced restore kept a row the backup does not have: %v", err)
			}
			sameContents(t, src, dst)
		})
	}
}
