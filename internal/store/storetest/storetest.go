// Package storetest is the contract every store.Store backend must meet.
// A backend's test calls Run with a function that opens it.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podid/podid/internal/store"
)

// Run runs the contract suite. open must return an empty store the first
// time a test calls it, and the same database, reopened, when the same test
// (same t.Name()) calls it again after closing the previous store. open
// arranges for the store to be closed when the test ends; the suite may
// close it earlier itself.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open func(t *testing.T) store.Store)
	}{
		{"Ping", testPing},
		{"Meta", testMeta},
		{"SealingKeys", testSealingKeys},
		{"AccessKeys", testAccessKeys},
		{"Roles", testRoles},
		{"RoleNamesIgnoreCase", testRoleNamesIgnoreCase},
		{"UpdateRole", testUpdateRole},
		{"DeleteRole", testDeleteRole},
		{"ListRoles", testListRoles},
		{"ListRolesDefaultPage", testListRolesDefaultPage},
		{"ListOrderIsBytewise", testListOrderIsBytewise},
		{"InvalidMarker", testInvalidMarker},
		{"RolePolicies", testRolePolicies},
		{"ManagedPolicies", testManagedPolicies},
		{"Attachments", testAttachments},
		{"ListPolicies", testListPolicies},
		{"ListAttachedRolePolicies", testListAttachedRolePolicies},
		{"OIDCProviders", testOIDCProviders},
		{"Clusters", testClusters},
		{"Associations", testAssociations},
		{"ListAssociations", testListAssociations},
		{"DeleteClusterCascades", testDeleteClusterCascades},
		{"ConcurrentInlinePolicies", testConcurrentInlinePolicies},
		{"ConcurrentUpdateRole", testConcurrentUpdateRole},
		{"ConcurrentCreateAssociation", testConcurrentCreateAssociation},
		{"ConcurrentPutMeta", testConcurrentPutMeta},
		{"Persistence", testPersistence},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
}

// t0 is in a zone other than UTC so the suite sees that times come back in UTC.
var t0 = time.Date(2025, 3, 4, 5, 6, 7, 0, time.FixedZone("UTC+1", 3600))

const account = "123456789012"

func ctx() context.Context { return context.Background() }

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

func checkUTC(t *testing.T, what string, ts ...time.Time) {
	t.Helper()
	for _, tm := range ts {
		if !tm.IsZero() && tm.Location() != time.UTC {
			t.Errorf("%s: time %v is not in UTC", what, tm)
		}
	}
}

// same compares got and want after n normalises both (times to UTC, empty
// slices to nil), which are the liberties a backend may take.
func same[T any](t *testing.T, what string, got, want T, n func(T) T) {
	t.Helper()
	if g, w := n(got), n(want); !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %+v\nwant %+v", what, g, w)
	}
}

func nilTags(tags []store.Tag) []store.Tag {
	if len(tags) == 0 {
		return nil
	}
	return tags
}

func nilStrings(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func nilBytes(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return b
}

func normRole(r store.Role) store.Role {
	r.CreatedAt = r.CreatedAt.UTC()
	r.Tags = nilTags(r.Tags)
	return r
}

func normPolicy(p store.ManagedPolicy) store.ManagedPolicy {
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	p.Tags = nilTags(p.Tags)
	return p
}

func normOIDC(o store.OIDCProvider) store.OIDCProvider {
	o.CreatedAt = o.CreatedAt.UTC()
	o.Tags, o.ClientIDs, o.Thumbprints = nilTags(o.Tags), nilStrings(o.ClientIDs), nilStrings(o.Thumbprints)
	return o
}

func normCluster(c store.Cluster) store.Cluster {
	c.CreatedAt = c.CreatedAt.UTC()
	c.Tags, c.JWKS = nilTags(c.Tags), nilBytes(c.JWKS)
	return c
}

func normAssoc(a store.Association) store.Association {
	a.CreatedAt, a.ModifiedAt = a.CreatedAt.UTC(), a.ModifiedAt.UTC()
	a.Tags = nilTags(a.Tags)
	return a
}

func normAccessKey(k store.AccessKey) store.AccessKey {
	k.CreatedAt = k.CreatedAt.UTC()
	k.SecretSealed = nilBytes(k.SecretSealed)
	return k
}

func newRole(name, path string) store.Role {
	return store.Role{
		RoleID:             "AROA" + strings.ToUpper(name),
		Name:               name,
		Path:               path,
		ARN:                "arn:aws:iam::" + account + ":role" + path + name,
		AssumeRolePolicy:   `{"Version":"2012-10-17","Statement":[]}`,
		Description:        "role " + name,
		MaxSessionDuration: 3600,
		Tags:               []store.Tag{{Key: "team", Value: "a"}, {Key: "env", Value: "dev"}},
		CreatedAt:          t0,
	}
}

func newPolicy(name, path string) store.ManagedPolicy {
	return store.ManagedPolicy{
		ARN:            "arn:aws:iam::" + account + ":policy" + path + name,
		PolicyID:       "ANPA" + strings.ToUpper(strings.ReplaceAll(path, "/", "")) + strings.ToUpper(name),
		Name:           name,
		Path:           path,
		Description:    "policy " + name,
		Document:       `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}`,
		DefaultVersion: "v1",
		Tags:           []store.Tag{{Key: "k", Value: "v"}},
		CreatedAt:      t0,
		UpdatedAt:      t0.Add(time.Hour),
	}
}

func newCluster(name string) store.Cluster {
	return store.Cluster{
		Name:         name,
		ARN:          "arn:aws:eks:us-east-1:" + account + ":cluster/" + name,
		Issuer:       "https://issuer.example.com/" + name,
		KeySource:    "jwks-url",
		KeySourceArg: "https://issuer.example.com/" + name + "/keys",
		JWKS:         []byte(`{"keys":[]}`),
		TokenReview:  true,
		Tags:         []store.Tag{{Key: "site", Value: "lab"}},
		CreatedAt:    t0,
	}
}

func newAssoc(cluster, id, ns, sa string) store.Association {
	return store.Association{
		ID:                 id,
		ARN:                "arn:aws:eks:us-east-1:" + account + ":podidentityassociation/" + cluster + "/" + id,
		ClusterName:        cluster,
		Namespace:          ns,
		ServiceAccount:     sa,
		RoleARN:            "arn:aws:iam::" + account + ":role/app",
		TargetRoleARN:      "arn:aws:iam::" + account + ":role/target",
		ExternalID:         "ext-" + id,
		DisableSessionTags: true,
		Policy:             `{"Version":"2012-10-17"}`,
		Tags:               []store.Tag{{Key: "app", Value: sa}},
		OwnerARN:           "arn:aws:iam::" + account + ":root",
		ClientRequestToken: "token-" + id,
		RequestHash:        "hash-" + id,
		CreatedAt:          t0,
		ModifiedAt:         t0.Add(time.Minute),
	}
}

// assocID makes a valid-looking association ID: a- and 17 characters.
func assocID(n int) string { return fmt.Sprintf("a-%017d", n) }

func testPing(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	must(t, s.Ping(ctx()))
}

func testMeta(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	_, err := s.GetMeta(ctx(), "account-id")
	wantErr(t, err, store.ErrNotFound)

	v, err := s.PutMetaIfAbsent(ctx(), "account-id", "111111111111")
	must(t, err)
	if v != "111111111111" {
		t.Fatalf("PutMetaIfAbsent = %q, want the new value", v)
	}
	v, err = s.PutMetaIfAbsent(ctx(), "account-id", "222222222222")
	must(t, err)
	if v != "111111111111" {
		t.Fatalf("PutMetaIfAbsent on an existing key = %q, want the stored value", v)
	}
	v, err = s.GetMeta(ctx(), "account-id")
	must(t, err)
	if v != "111111111111" {
		t.Fatalf("GetMeta = %q", v)
	}
}

func testSealingKeys(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	keys, err := s.ListSealingKeys(ctx())
	must(t, err)
	if len(keys) != 0 {
		t.Fatalf("new store has sealing keys: %v", keys)
	}
	k2 := store.SealingKey{ID: "k2", Sealed: []byte{0, 1, 2, 0xff}, CreatedAt: t0.Add(time.Hour)}
	k1 := store.SealingKey{ID: "k1", Sealed: []byte("sealed-1"), CreatedAt: t0}
	must(t, s.CreateSealingKey(ctx(), k2))
	must(t, s.CreateSealingKey(ctx(), k1))
	wantErr(t, s.CreateSealingKey(ctx(), k1), store.ErrExists)

	keys, err = s.ListSealingKeys(ctx())
	must(t, err)
	if len(keys) != 2 {
		t.Fatalf("ListSealingKeys returned %d keys, want 2", len(keys))
	}
	for i, want := range []store.SealingKey{k1, k2} { // oldest first
		got := keys[i]
		checkUTC(t, "sealing key", got.CreatedAt)
		if got.ID != want.ID || string(got.Sealed) != string(want.Sealed) || !got.CreatedAt.Equal(want.CreatedAt) {
			t.Errorf("key %d = %+v, want %+v", i, got, want)
		}
	}

	// Deleting retires one key and leaves the others.
	must(t, s.DeleteSealingKey(ctx(), "k1"))
	wantErr(t, s.DeleteSealingKey(ctx(), "k1"), store.ErrNotFound)
	wantErr(t, s.DeleteSealingKey(ctx(), "missing"), store.ErrNotFound)
	keys, err = s.ListSealingKeys(ctx())
	must(t, err)
	if len(keys) != 1 || keys[0].ID != "k2" || string(keys[0].Sealed) != string(k2.Sealed) {
		t.Fatalf("after deleting k1: %+v, want only k2", keys)
	}
	// The ID is free again once deleted.
	must(t, s.CreateSealingKey(ctx(), k1))
	keys, err = s.ListSealingKeys(ctx())
	must(t, err)
	if len(keys) != 2 || keys[0].ID != "k1" || keys[1].ID != "k2" {
		t.Fatalf("after recreating k1: %+v", keys)
	}
}

func testAccessKeys(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	root := "arn:aws:iam::" + account + ":root"
	other := "arn:aws:iam::" + account + ":user/other"
	a := store.AccessKey{AccessKeyID: "AKIAAAAAAAAAAAAAAAAA", SecretSealed: []byte("s1"), PrincipalARN: root, Status: "Active", CreatedAt: t0}
	b := store.AccessKey{AccessKeyID: "AKIABBBBBBBBBBBBBBBB", SecretSealed: []byte("s2"), PrincipalARN: root, Status: "Inactive", CreatedAt: t0.Add(time.Second)}
	c := store.AccessKey{AccessKeyID: "AKIACCCCCCCCCCCCCCCC", SecretSealed: []byte("s3"), PrincipalARN: other, Status: "Active", CreatedAt: t0}
	for _, k := range []store.AccessKey{b, a, c} {
		must(t, s.CreateAccessKey(ctx(), k))
	}
	wantErr(t, s.CreateAccessKey(ctx(), a), store.ErrExists)

	got, err := s.GetAccessKey(ctx(), a.AccessKeyID)
	must(t, err)
	checkUTC(t, "access key", got.CreatedAt)
	same(t, "GetAccessKey", got, a, normAccessKey)
	_, err = s.GetAccessKey(ctx(), "AKIAMISSING")
	wantErr(t, err, store.ErrNotFound)

	list, err := s.ListAccessKeys(ctx(), root)
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("ListAccessKeys(root) returned %d keys, want 2", len(list))
	}
	same(t, "ListAccessKeys[0]", list[0], a, normAccessKey)
	same(t, "ListAccessKeys[1]", list[1], b, normAccessKey)
	all, err := s.ListAccessKeys(ctx(), "")
	must(t, err)
	if len(all) != 3 {
		t.Fatalf("ListAccessKeys(\"\") returned %d keys, want 3", len(all))
	}
}

func testRoles(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	r := newRole("app", "/team/")
	must(t, s.CreateRole(ctx(), r))

	got, err := s.GetRole(ctx(), "app")
	must(t, err)
	checkUTC(t, "role", got.CreatedAt)
	same(t, "GetRole", got, r, normRole)

	_, err = s.GetRole(ctx(), "missing")
	wantErr(t, err, store.ErrNotFound)

	wantErr(t, s.CreateRole(ctx(), r), store.ErrExists)
	dupID := newRole("other", "/")
	dupID.RoleID = r.RoleID
	wantErr(t, s.CreateRole(ctx(), dupID), store.ErrExists)
	dupARN := newRole("third", "/")
	dupARN.ARN = r.ARN
	wantErr(t, s.CreateRole(ctx(), dupARN), store.ErrExists)

	// A role without tags comes back without tags.
	bare := newRole("bare", "/")
	bare.Tags = nil
	must(t, s.CreateRole(ctx(), bare))
	got, err = s.GetRole(ctx(), "bare")
	must(t, err)
	if len(got.Tags) != 0 {
		t.Errorf("role created without tags has tags %v", got.Tags)
	}
}

func testRoleNamesIgnoreCase(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	must(t, s.CreateRole(ctx(), newRole("Admin", "/")))
	wantErr(t, s.CreateRole(ctx(), newRole("admin", "/")), store.ErrExists)
}

func testUpdateRole(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	r := newRole("app", "/")
	must(t, s.CreateRole(ctx(), r))

	updated, err := s.UpdateRole(ctx(), "app", func(r *store.Role) error {
		r.Description = "changed"
		r.MaxSessionDuration = 7200
		r.Tags = append(r.Tags, store.Tag{Key: "new", Value: "tag"})
		return nil
	})
	must(t, err)
	want := r
	want.Description = "changed"
	want.MaxSessionDuration = 7200
	want.Tags = append(slices.Clone(r.Tags), store.Tag{Key: "new", Value: "tag"})
	same(t, "UpdateRole result", updated, want, normRole)
	got, err := s.GetRole(ctx(), "app")
	must(t, err)
	same(t, "GetRole after UpdateRole", got, want, normRole)

	// fn's error comes back unchanged and nothing is written.
	boom := errors.New("boom")
	_, err = s.UpdateRole(ctx(), "app", func(r *store.Role) error {
		r.Description = "must not be written"
		return boom
	})
	if err != boom {
		t.Fatalf("UpdateRole with failing fn: error = %v, want the fn's error unchanged", err)
	}
	got, err = s.GetRole(ctx(), "app")
	must(t, err)
	same(t, "GetRole after failed UpdateRole", got, want, normRole)

	called := false
	_, err = s.UpdateRole(ctx(), "missing", func(*store.Role) error { called = true; return nil })
	wantErr(t, err, store.ErrNotFound)
	if called {
		t.Error("UpdateRole called fn for a missing role")
	}
}

func testDeleteRole(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	wantErr(t, s.DeleteRole(ctx(), "missing"), store.ErrNotFound)

	must(t, s.CreateRole(ctx(), newRole("app", "/")))
	must(t, s.PutRolePolicy(ctx(), store.RolePolicy{RoleName: "app", PolicyName: "inline", Document: "{}"}))
	wantErr(t, s.DeleteRole(ctx(), "app"), store.ErrConflict)
	must(t, s.DeleteRolePolicy(ctx(), "app", "inline"))

	p := newPolicy("pol", "/")
	must(t, s.CreatePolicy(ctx(), p))
	must(t, s.AttachRolePolicy(ctx(), "app", p.ARN))
	wantErr(t, s.DeleteRole(ctx(), "app"), store.ErrConflict)
	must(t, s.DetachRolePolicy(ctx(), "app", p.ARN))

	must(t, s.DeleteRole(ctx(), "app"))
	_, err := s.GetRole(ctx(), "app")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.DeleteRole(ctx(), "app"), store.ErrNotFound)
}

// collect pages through a listing and returns the items and page count.
func collect[T any](t *testing.T, max int, list func(p store.Page) ([]T, string, error)) ([]T, int) {
	t.Helper()
	var all []T
	marker, pages := "", 0
	for {
		items, next, err := list(store.Page{Marker: marker, MaxItems: max})
		must(t, err)
		pages++
		if len(items) > max {
			t.Fatalf("page %d has %d items, more than MaxItems %d", pages, len(items), max)
		}
		all = append(all, items...)
		if next == "" {
			return all, pages
		}
		if len(items) == 0 {
			t.Fatalf("page %d is empty but has a next marker", pages)
		}
		if pages > 100 {
			t.Fatal("listing does not end")
		}
		marker = next
	}
}

func roleNames(roles []store.Role) []string {
	var out []string
	for _, r := range roles {
		out = append(out, r.Name)
	}
	return out
}

func testListRoles(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	roles, next, err := s.ListRoles(ctx(), store.RoleFilter{}, store.Page{})
	must(t, err)
	if len(roles) != 0 || next != "" {
		t.Fatalf("empty store lists roles %v, marker %q", roles, next)
	}

	paths := map[string]string{
		"g": "/", "b": "/a/", "f": "/a/b/", "a": "/A/", "e": "/b/", "c": "/", "d": "/ab/",
	}
	for name, path := range paths {
		must(t, s.CreateRole(ctx(), newRole(name, path)))
	}
	list := func(prefix string) func(store.Page) ([]store.Role, string, error) {
		return func(p store.Page) ([]store.Role, string, error) {
			return s.ListRoles(ctx(), store.RoleFilter{PathPrefix: prefix}, p)
		}
	}
	all, pages := collect(t, 3, list(""))
	if pages != 3 {
		t.Errorf("7 roles at 3 per page took %d pages, want 3", pages)
	}
	if got, want := roleNames(all), []string{"a", "b", "c", "d", "e", "f", "g"}; !slices.Equal(got, want) {
		t.Errorf("ListRoles = %v, want %v", got, want)
	}
	same(t, "listed role", all[0], newRole("a", "/A/"), normRole)

	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"/", []string{"a", "b", "c", "d", "e", "f", "g"}},
		{"/a/", []string{"b", "f"}},
		{"/a", []string{"b", "d", "f"}},
		{"/A/", []string{"a"}},
		{"/a/b/", []string{"f"}},
		{"/none/", nil},
	} {
		got, _ := collect(t, 2, list(tc.prefix))
		if !slices.Equal(roleNames(got), tc.want) {
			t.Errorf("ListRoles(PathPrefix %q) = %v, want %v", tc.prefix, roleNames(got), tc.want)
		}
	}

	// An exact fit leaves no next marker.
	roles, next, err = s.ListRoles(ctx(), store.RoleFilter{}, store.Page{MaxItems: 7})
	must(t, err)
	if len(roles) != 7 || next != "" {
		t.Errorf("ListRoles(MaxItems 7) = %d roles, marker %q; want 7 and no marker", len(roles), next)
	}
}

func testListRolesDefaultPage(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	for i := range 101 {
		must(t, s.CreateRole(ctx(), newRole(fmt.Sprintf("r%03d", i), "/")))
	}
	roles, next, err := s.ListRoles(ctx(), store.RoleFilter{}, store.Page{MaxItems: 0})
	must(t, err)
	if len(roles) != 100 || next == "" {
		t.Fatalf("ListRoles(MaxItems 0) = %d roles, marker %q; want 100 and a marker", len(roles), next)
	}
	roles, next, err = s.ListRoles(ctx(), store.RoleFilter{}, store.Page{Marker: next, MaxItems: -1})
	must(t, err)
	if len(roles) != 1 || roles[0].Name != "r100" || next != "" {
		t.Fatalf("second page = %v, marker %q; want [r100] and no marker", roleNames(roles), next)
	}
}

// testListOrderIsBytewise checks that listings sort by bytes, as AWS does,
// whatever collation the database would use by default (PostgreSQL
// databases are often en_US, which puts "a" before "B" and ignores "_").
func testListOrderIsBytewise(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	names := []string{"z", "B", "a", "_x", "Z1", "Ab", "a-b", "a_b"}
	want := slices.Clone(names)
	slices.Sort(want) // Go compares strings bytewise
	for _, n := range names {
		must(t, s.CreateRole(ctx(), newRole(n, "/")))
		must(t, s.CreatePolicy(ctx(), newPolicy(n, "/")))
		must(t, s.CreateCluster(ctx(), newCluster(n)))
	}
	roles, _ := collect(t, 3, func(p store.Page) ([]store.Role, string, error) {
		return s.ListRoles(ctx(), store.RoleFilter{}, p)
	})
	if got := roleNames(roles); !slices.Equal(got, want) {
		t.Errorf("ListRoles order = %v, want %v", got, want)
	}
	policies, _ := collect(t, 3, func(p store.Page) ([]store.ManagedPolicy, string, error) {
		return s.ListPolicies(ctx(), store.PolicyFilter{}, p)
	})
	var got []string
	for _, p := range policies {
		got = append(got, p.Name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("ListPolicies order = %v, want %v", got, want)
	}
	clusters, _ := collect(t, 3, func(p store.Page) ([]store.Cluster, string, error) {
		return s.ListClusters(ctx(), p)
	})
	got = nil
	for _, c := range clusters {
		got = append(got, c.Name)
	}
	if !slices.Equal(got, want) {
		t.Errorf("ListClusters order = %v, want %v", got, want)
	}
}

func testInvalidMarker(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	_, _, err := s.ListRoles(ctx(), store.RoleFilter{}, store.Page{Marker: "not a marker!"})
	wantErr(t, err, store.ErrInvalidMarker)
	_, _, err = s.ListPolicies(ctx(), store.PolicyFilter{}, store.Page{Marker: "%%%"})
	wantErr(t, err, store.ErrInvalidMarker)
	must(t, s.CreateCluster(ctx(), newCluster("c")))
	_, _, err = s.ListAssociations(ctx(), "c", store.AssociationFilter{}, store.Page{Marker: "???"})
	wantErr(t, err, store.ErrInvalidMarker)
}

func testRolePolicies(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	wantErr(t, s.PutRolePolicy(ctx(), store.RolePolicy{RoleName: "missing", PolicyName: "p", Document: "{}"}), store.ErrNotFound)
	_, _, err := s.ListRolePolicies(ctx(), "missing", store.Page{})
	wantErr(t, err, store.ErrNotFound)

	must(t, s.CreateRole(ctx(), newRole("app", "/")))
	must(t, s.CreateRole(ctx(), newRole("other", "/")))
	p := store.RolePolicy{RoleName: "app", PolicyName: "p1", Document: `{"v":1}`}
	must(t, s.PutRolePolicy(ctx(), p))
	got, err := s.GetRolePolicy(ctx(), "app", "p1")
	must(t, err)
	if got != p {
		t.Fatalf("GetRolePolicy = %+v, want %+v", got, p)
	}
	p.Document = `{"v":2}`
	must(t, s.PutRolePolicy(ctx(), p)) // an upsert
	got, err = s.GetRolePolicy(ctx(), "app", "p1")
	must(t, err)
	if got.Document != `{"v":2}` {
		t.Fatalf("PutRolePolicy did not replace the document: %q", got.Document)
	}
	_, err = s.GetRolePolicy(ctx(), "app", "missing")
	wantErr(t, err, store.ErrNotFound)
	_, err = s.GetRolePolicy(ctx(), "other", "p1")
	wantErr(t, err, store.ErrNotFound)

	for _, n := range []string{"p5", "p3", "p2", "p4"} {
		must(t, s.PutRolePolicy(ctx(), store.RolePolicy{RoleName: "app", PolicyName: n, Document: "{}"}))
	}
	must(t, s.PutRolePolicy(ctx(), store.RolePolicy{RoleName: "other", PolicyName: "x", Document: "{}"}))
	all, pages := collect(t, 2, func(pg store.Page) ([]store.RolePolicy, string, error) {
		return s.ListRolePolicies(ctx(), "app", pg)
	})
	var names []string
	for _, rp := range all {
		if rp.RoleName != "app" {
			t.Errorf("ListRolePolicies(app) returned a policy of %q", rp.RoleName)
		}
		names = append(names, rp.PolicyName)
	}
	if want := []string{"p1", "p2", "p3", "p4", "p5"}; !slices.Equal(names, want) || pages != 3 {
		t.Errorf("ListRolePolicies = %v in %d pages, want %v in 3", names, pages, want)
	}

	must(t, s.DeleteRolePolicy(ctx(), "app", "p1"))
	_, err = s.GetRolePolicy(ctx(), "app", "p1")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.DeleteRolePolicy(ctx(), "app", "p1"), store.ErrNotFound)
	wantErr(t, s.DeleteRolePolicy(ctx(), "missing", "p1"), store.ErrNotFound)
}

func testManagedPolicies(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	p := newPolicy("pol", "/team/")
	p.AttachmentCount = 42 // derived: the store must ignore it
	must(t, s.CreatePolicy(ctx(), p))
	got, err := s.GetPolicy(ctx(), p.ARN)
	must(t, err)
	checkUTC(t, "policy", got.CreatedAt, got.UpdatedAt)
	want := p
	want.AttachmentCount = 0
	same(t, "GetPolicy", got, want, normPolicy)

	wantErr(t, s.CreatePolicy(ctx(), p), store.ErrExists)
	_, err = s.GetPolicy(ctx(), "arn:aws:iam::"+account+":policy/missing")
	wantErr(t, err, store.ErrNotFound)

	wantErr(t, s.DeletePolicy(ctx(), "arn:aws:iam::"+account+":policy/missing"), store.ErrNotFound)
	must(t, s.DeletePolicy(ctx(), p.ARN))
	_, err = s.GetPolicy(ctx(), p.ARN)
	wantErr(t, err, store.ErrNotFound)
}

func testAttachments(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	p := newPolicy("pol", "/")
	must(t, s.CreatePolicy(ctx(), p))
	must(t, s.CreateRole(ctx(), newRole("r1", "/")))
	must(t, s.CreateRole(ctx(), newRole("r2", "/")))

	wantErr(t, s.AttachRolePolicy(ctx(), "missing", p.ARN), store.ErrNotFound)
	wantErr(t, s.AttachRolePolicy(ctx(), "r1", "arn:aws:iam::"+account+":policy/missing"), store.ErrNotFound)
	wantErr(t, s.DetachRolePolicy(ctx(), "r1", p.ARN), store.ErrNotFound)

	count := func(want int) {
		t.Helper()
		got, err := s.GetPolicy(ctx(), p.ARN)
		must(t, err)
		if got.AttachmentCount != want {
			t.Errorf("AttachmentCount = %d, want %d", got.AttachmentCount, want)
		}
	}
	must(t, s.AttachRolePolicy(ctx(), "r1", p.ARN))
	count(1)
	must(t, s.AttachRolePolicy(ctx(), "r1", p.ARN)) // attaching twice is a no-op
	count(1)
	must(t, s.AttachRolePolicy(ctx(), "r2", p.ARN))
	count(2)

	wantErr(t, s.DeletePolicy(ctx(), p.ARN), store.ErrConflict)
	must(t, s.DetachRolePolicy(ctx(), "r1", p.ARN))
	count(1)
	wantErr(t, s.DetachRolePolicy(ctx(), "r1", p.ARN), store.ErrNotFound)
	wantErr(t, s.DeletePolicy(ctx(), p.ARN), store.ErrConflict)
	must(t, s.DetachRolePolicy(ctx(), "r2", p.ARN))
	count(0)
	must(t, s.DeletePolicy(ctx(), p.ARN))
}

func policyARNs(ps []store.ManagedPolicy) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.ARN)
	}
	return out
}

func testListPolicies(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	// Same names under different paths: the order is by name, then ARN.
	specs := []struct{ name, path string }{
		{"zeta", "/"}, {"alpha", "/b/"}, {"alpha", "/a/"}, {"beta", "/a/"},
		{"alpha", "/"}, {"gamma", "/c/"}, {"beta", "/"},
	}
	arn := func(name, path string) string { return "arn:aws:iam::" + account + ":policy" + path + name }
	for _, sp := range specs {
		must(t, s.CreatePolicy(ctx(), newPolicy(sp.name, sp.path)))
	}
	must(t, s.CreateRole(ctx(), newRole("app", "/")))
	must(t, s.AttachRolePolicy(ctx(), "app", arn("beta", "/a/")))
	must(t, s.AttachRolePolicy(ctx(), "app", arn("zeta", "/")))

	list := func(f store.PolicyFilter) func(store.Page) ([]store.ManagedPolicy, string, error) {
		return func(p store.Page) ([]store.ManagedPolicy, string, error) { return s.ListPolicies(ctx(), f, p) }
	}
	all, pages := collect(t, 3, list(store.PolicyFilter{}))
	// Within a name, by ARN: ":policy/a/alpha" sorts before ":policy/alpha".
	wantAll := []string{
		arn("alpha", "/a/"), arn("alpha", "/"), arn("alpha", "/b/"),
		arn("beta", "/a/"), arn("beta", "/"), arn("gamma", "/c/"), arn("zeta", "/"),
	}
	if got := policyARNs(all); !slices.Equal(got, wantAll) || pages != 3 {
		t.Errorf("ListPolicies = %v in %d pages, want %v in 3", got, pages, wantAll)
	}
	for _, p := range all {
		wantCount := 0
		if p.ARN == arn("beta", "/a/") || p.ARN == arn("zeta", "/") {
			wantCount = 1
		}
		if p.AttachmentCount != wantCount {
			t.Errorf("listed %s with AttachmentCount %d, want %d", p.ARN, p.AttachmentCount, wantCount)
		}
	}

	// Page size 1 walks the ties on name one by one.
	one, _ := collect(t, 1, list(store.PolicyFilter{}))
	if got := policyARNs(one); !slices.Equal(got, wantAll) {
		t.Errorf("ListPolicies one by one = %v, want %v", got, wantAll)
	}

	for _, tc := range []struct {
		f    store.PolicyFilter
		want []string
	}{
		{store.PolicyFilter{PathPrefix: "/a/"}, []string{arn("alpha", "/a/"), arn("beta", "/a/")}},
		{store.PolicyFilter{PathPrefix: "/"}, wantAll},
		{store.PolicyFilter{OnlyAttached: true}, []string{arn("beta", "/a/"), arn("zeta", "/")}},
		{store.PolicyFilter{OnlyAttached: true, PathPrefix: "/a/"}, []string{arn("beta", "/a/")}},
		{store.PolicyFilter{PathPrefix: "/x/"}, nil},
	} {
		got, _ := collect(t, 1, list(tc.f))
		if !slices.Equal(policyARNs(got), tc.want) {
			t.Errorf("ListPolicies(%+v) = %v, want %v", tc.f, policyARNs(got), tc.want)
		}
	}
}

func testListAttachedRolePolicies(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	_, _, err := s.ListAttachedRolePolicies(ctx(), "missing", store.PolicyFilter{}, store.Page{})
	wantErr(t, err, store.ErrNotFound)

	must(t, s.CreateRole(ctx(), newRole("app", "/")))
	must(t, s.CreateRole(ctx(), newRole("other", "/")))
	var want []string
	for i, path := range []string{"/", "/x/", "/", "/x/", "/"} {
		p := newPolicy(fmt.Sprintf("p%d", i), path)
		must(t, s.CreatePolicy(ctx(), p))
		must(t, s.AttachRolePolicy(ctx(), "app", p.ARN))
		want = append(want, p.ARN)
	}
	unattached := newPolicy("unattached", "/")
	must(t, s.CreatePolicy(ctx(), unattached))
	elsewhere := newPolicy("elsewhere", "/")
	must(t, s.CreatePolicy(ctx(), elsewhere))
	must(t, s.AttachRolePolicy(ctx(), "other", elsewhere.ARN))
	must(t, s.AttachRolePolicy(ctx(), "other", want[0]))

	all, pages := collect(t, 2, func(p store.Page) ([]store.ManagedPolicy, string, error) {
		return s.ListAttachedRolePolicies(ctx(), "app", store.PolicyFilter{}, p)
	})
	if got := policyARNs(all); !slices.Equal(got, want) || pages != 3 {
		t.Errorf("ListAttachedRolePolicies = %v in %d pages, want %v in 3", got, pages, want)
	}
	if all[0].AttachmentCount != 2 {
		t.Errorf("policy attached to two roles lists with AttachmentCount %d", all[0].AttachmentCount)
	}
	x, _ := collect(t, 5, func(p store.Page) ([]store.ManagedPolicy, string, error) {
		return s.ListAttachedRolePolicies(ctx(), "app", store.PolicyFilter{PathPrefix: "/x/"}, p)
	})
	if got := policyARNs(x); !slices.Equal(got, []string{want[1], want[3]}) {
		t.Errorf("ListAttachedRolePolicies(/x/) = %v", got)
	}
	empty, next, err := s.ListAttachedRolePolicies(ctx(), "other", store.PolicyFilter{PathPrefix: "/x/"}, store.Page{})
	must(t, err)
	if len(empty) != 0 || next != "" {
		t.Errorf("ListAttachedRolePolicies(other, /x/) = %v, %q", policyARNs(empty), next)
	}
}

func testOIDCProviders(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	mk := func(host string) store.OIDCProvider {
		url := host + "/id/ABC"
		return store.OIDCProvider{
			ARN:         "arn:aws:iam::" + account + ":oidc-provider/" + url,
			URL:         url,
			ClientIDs:   []string{"sts.amazonaws.com"},
			Thumbprints: []string{strings.Repeat("a", 40)},
			Tags:        []store.Tag{{Key: "k", Value: "v"}},
			CreatedAt:   t0,
		}
	}
	o := mk("oidc.b.example.com")
	must(t, s.CreateOIDCProvider(ctx(), o))
	got, err := s.GetOIDCProvider(ctx(), o.ARN)
	must(t, err)
	checkUTC(t, "OIDC provider", got.CreatedAt)
	same(t, "GetOIDCProvider", got, o, normOIDC)

	wantErr(t, s.CreateOIDCProvider(ctx(), o), store.ErrExists)
	sameURL := o
	sameURL.ARN += "-other"
	wantErr(t, s.CreateOIDCProvider(ctx(), sameURL), store.ErrExists)
	_, err = s.GetOIDCProvider(ctx(), "arn:missing")
	wantErr(t, err, store.ErrNotFound)

	o2 := mk("oidc.a.example.com")
	o2.ClientIDs, o2.Thumbprints, o2.Tags = nil, nil, nil
	must(t, s.CreateOIDCProvider(ctx(), o2))
	list, err := s.ListOIDCProviders(ctx())
	must(t, err)
	if len(list) != 2 {
		t.Fatalf("ListOIDCProviders returned %d, want 2", len(list))
	}
	same(t, "ListOIDCProviders[0]", list[0], o2, normOIDC)
	same(t, "ListOIDCProviders[1]", list[1], o, normOIDC)

	updated, err := s.UpdateOIDCProvider(ctx(), o.ARN, func(p *store.OIDCProvider) error {
		p.ClientIDs = append(p.ClientIDs, "other-client")
		p.Thumbprints = nil
		return nil
	})
	must(t, err)
	want := o
	want.ClientIDs = []string{"sts.amazonaws.com", "other-client"}
	want.Thumbprints = nil
	same(t, "UpdateOIDCProvider result", updated, want, normOIDC)
	got, err = s.GetOIDCProvider(ctx(), o.ARN)
	must(t, err)
	same(t, "GetOIDCProvider after update", got, want, normOIDC)

	boom := errors.New("boom")
	_, err = s.UpdateOIDCProvider(ctx(), o.ARN, func(p *store.OIDCProvider) error {
		p.ClientIDs = nil
		return boom
	})
	if err != boom {
		t.Fatalf("UpdateOIDCProvider with failing fn: error = %v, want the fn's error", err)
	}
	got, err = s.GetOIDCProvider(ctx(), o.ARN)
	must(t, err)
	same(t, "GetOIDCProvider after failed update", got, want, normOIDC)
	_, err = s.UpdateOIDCProvider(ctx(), "arn:missing", func(*store.OIDCProvider) error { return nil })
	wantErr(t, err, store.ErrNotFound)
	// Moving onto another provider's URL is a conflict too.
	_, err = s.UpdateOIDCProvider(ctx(), o.ARN, func(p *store.OIDCProvider) error { p.URL = o2.URL; return nil })
	wantErr(t, err, store.ErrExists)

	must(t, s.DeleteOIDCProvider(ctx(), o.ARN))
	_, err = s.GetOIDCProvider(ctx(), o.ARN)
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.DeleteOIDCProvider(ctx(), o.ARN), store.ErrNotFound)
	// The URL is free again.
	must(t, s.CreateOIDCProvider(ctx(), o))
}

func testClusters(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	c := newCluster("prod")
	must(t, s.CreateCluster(ctx(), c))
	got, err := s.GetCluster(ctx(), "prod")
	must(t, err)
	checkUTC(t, "cluster", got.CreatedAt)
	same(t, "GetCluster", got, c, normCluster)
	wantErr(t, s.CreateCluster(ctx(), c), store.ErrExists)
	_, err = s.GetCluster(ctx(), "missing")
	wantErr(t, err, store.ErrNotFound)

	bare := newCluster("bare")
	bare.JWKS, bare.Tags, bare.TokenReview = nil, nil, false
	must(t, s.CreateCluster(ctx(), bare))
	got, err = s.GetCluster(ctx(), "bare")
	must(t, err)
	same(t, "GetCluster(bare)", got, bare, normCluster)

	for _, n := range []string{"c3", "c1", "c5", "c2", "c4"} {
		must(t, s.CreateCluster(ctx(), newCluster(n)))
	}
	all, pages := collect(t, 3, func(p store.Page) ([]store.Cluster, string, error) { return s.ListClusters(ctx(), p) })
	var names []string
	for _, c := range all {
		names = append(names, c.Name)
	}
	if want := []string{"bare", "c1", "c2", "c3", "c4", "c5", "prod"}; !slices.Equal(names, want) || pages != 3 {
		t.Errorf("ListClusters = %v in %d pages, want %v in 3", names, pages, want)
	}

	updated, err := s.UpdateCluster(ctx(), "prod", func(c *store.Cluster) error {
		c.JWKS = []byte(`{"keys":[{"kid":"1"}]}`)
		c.TokenReview = false
		return nil
	})
	must(t, err)
	want := c
	want.JWKS = []byte(`{"keys":[{"kid":"1"}]}`)
	want.TokenReview = false
	same(t, "UpdateCluster result", updated, want, normCluster)
	got, err = s.GetCluster(ctx(), "prod")
	must(t, err)
	same(t, "GetCluster after update", got, want, normCluster)

	boom := errors.New("boom")
	_, err = s.UpdateCluster(ctx(), "prod", func(c *store.Cluster) error { c.Issuer = "changed"; return boom })
	if err != boom {
		t.Fatalf("UpdateCluster with failing fn: error = %v, want the fn's error", err)
	}
	got, err = s.GetCluster(ctx(), "prod")
	must(t, err)
	same(t, "GetCluster after failed update", got, want, normCluster)
	_, err = s.UpdateCluster(ctx(), "missing", func(*store.Cluster) error { return nil })
	wantErr(t, err, store.ErrNotFound)

	must(t, s.DeleteCluster(ctx(), "prod"))
	_, err = s.GetCluster(ctx(), "prod")
	wantErr(t, err, store.ErrNotFound)
	wantErr(t, s.DeleteCluster(ctx(), "prod"), store.ErrNotFound)
}

func testAssociations(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	a := newAssoc("prod", assocID(1), "default", "app")
	wantErr(t, s.CreateAssociation(ctx(), a), store.ErrNotFound)

	must(t, s.CreateCluster(ctx(), newCluster("prod")))
	must(t, s.CreateCluster(ctx(), newCluster("dev")))
	must(t, s.CreateAssociation(ctx(), a))
	got, err := s.GetAssociation(ctx(), "prod", a.ID)
	must(t, err)
	checkUTC(t, "association", got.CreatedAt, got.ModifiedAt)
	same(t, "GetAssociation", got, a, normAssoc)
	_, err = s.GetAssociation(ctx(), "dev", a.ID)
	wantErr(t, err, store.ErrNotFound)

	dupSA := newAssoc("prod", assocID(2), "default", "app")
	wantErr(t, s.CreateAssociation(ctx(), dupSA), store.ErrExists)
	dupID := newAssoc("prod", assocID(1), "other", "app")
	wantErr(t, s.CreateAssociation(ctx(), dupID), store.ErrExists)
	// The same service account in another cluster is another association.
	must(t, s.CreateAssociation(ctx(), newAssoc("dev", assocID(3), "default", "app")))

	got, err = s.FindAssociation(ctx(), "prod", "default", "app")
	must(t, err)
	same(t, "FindAssociation", got, a, normAssoc)
	_, err = s.FindAssociation(ctx(), "prod", "default", "missing")
	wantErr(t, err, store.ErrNotFound)

	got, err = s.FindAssociationByRequestToken(ctx(), "prod", a.ClientRequestToken)
	must(t, err)
	same(t, "FindAssociationByRequestToken", got, a, normAssoc)
	_, err = s.FindAssociationByRequestToken(ctx(), "dev", a.ClientRequestToken)
	wantErr(t, err, store.ErrNotFound)
	noToken := newAssoc("prod", assocID(4), "default", "notoken")
	noToken.ClientRequestToken = ""
	must(t, s.CreateAssociation(ctx(), noToken))
	_, err = s.FindAssociationByRequestToken(ctx(), "prod", "")
	wantErr(t, err, store.ErrNotFound)

	updated, err := s.UpdateAssociation(ctx(), "prod", a.ID, func(x *store.Association) error {
		x.RoleARN = "arn:aws:iam::" + account + ":role/new"
		x.TargetRoleARN = ""
		x.DisableSessionTags = false
		x.ModifiedAt = t0.Add(time.Hour)
		return nil
	})
	must(t, err)
	want := a
	want.RoleARN = "arn:aws:iam::" + account + ":role/new"
	want.TargetRoleARN = ""
	want.DisableSessionTags = false
	want.ModifiedAt = t0.Add(time.Hour)
	same(t, "UpdateAssociation result", updated, want, normAssoc)
	got, err = s.GetAssociation(ctx(), "prod", a.ID)
	must(t, err)
	same(t, "GetAssociation after update", got, want, normAssoc)

	boom := errors.New("boom")
	_, err = s.UpdateAssociation(ctx(), "prod", a.ID, func(x *store.Association) error { x.Policy = "changed"; return boom })
	if err != boom {
		t.Fatalf("UpdateAssociation with failing fn: error = %v, want the fn's error", err)
	}
	got, err = s.GetAssociation(ctx(), "prod", a.ID)
	must(t, err)
	same(t, "GetAssociation after failed update", got, want, normAssoc)
	_, err = s.UpdateAssociation(ctx(), "prod", "a-missing", func(*store.Association) error { return nil })
	wantErr(t, err, store.ErrNotFound)
	_, err = s.UpdateAssociation(ctx(), "dev", a.ID, func(*store.Association) error { return nil })
	wantErr(t, err, store.ErrNotFound)

	deleted, err := s.DeleteAssociation(ctx(), "prod", a.ID)
	must(t, err)
	same(t, "DeleteAssociation result", deleted, want, normAssoc)
	_, err = s.GetAssociation(ctx(), "prod", a.ID)
	wantErr(t, err, store.ErrNotFound)
	_, err = s.DeleteAssociation(ctx(), "prod", a.ID)
	wantErr(t, err, store.ErrNotFound)
	// The service account is free again.
	must(t, s.CreateAssociation(ctx(), newAssoc("prod", assocID(5), "default", "app")))
}

func assocIDs(as []store.Association) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.ID)
	}
	return out
}

func testListAssociations(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	_, _, err := s.ListAssociations(ctx(), "missing", store.AssociationFilter{}, store.Page{})
	wantErr(t, err, store.ErrNotFound)

	must(t, s.CreateCluster(ctx(), newCluster("prod")))
	must(t, s.CreateCluster(ctx(), newCluster("dev")))
	specs := []struct {
		id     int
		ns, sa string
	}{
		{7, "ns1", "a"}, {3, "ns1", "b"}, {5, "ns2", "a"}, {1, "ns2", "b"}, {6, "ns3", "c"}, {2, "ns1", "c"}, {4, "ns3", "a"},
	}
	for _, sp := range specs {
		must(t, s.CreateAssociation(ctx(), newAssoc("prod", assocID(sp.id), sp.ns, sp.sa)))
	}
	must(t, s.CreateAssociation(ctx(), newAssoc("dev", assocID(8), "ns1", "a")))

	list := func(f store.AssociationFilter) func(store.Page) ([]store.Association, string, error) {
		return func(p store.Page) ([]store.Association, string, error) {
			return s.ListAssociations(ctx(), "prod", f, p)
		}
	}
	all, pages := collect(t, 3, list(store.AssociationFilter{}))
	wantAll := []string{assocID(1), assocID(2), assocID(3), assocID(4), assocID(5), assocID(6), assocID(7)}
	if got := assocIDs(all); !slices.Equal(got, wantAll) || pages != 3 {
		t.Errorf("ListAssociations = %v in %d pages, want %v in 3", got, pages, wantAll)
	}
	same(t, "listed association", all[0], newAssoc("prod", assocID(1), "ns2", "b"), normAssoc)

	for _, tc := range []struct {
		f    store.AssociationFilter
		want []string
	}{
		{store.AssociationFilter{Namespace: "ns1"}, []string{assocID(2), assocID(3), assocID(7)}},
		{store.AssociationFilter{ServiceAccount: "a"}, []string{assocID(4), assocID(5), assocID(7)}},
		{store.AssociationFilter{Namespace: "ns1", ServiceAccount: "a"}, []string{assocID(7)}},
		{store.AssociationFilter{Namespace: "ns"}, nil},
	} {
		got, _ := collect(t, 2, list(tc.f))
		if !slices.Equal(assocIDs(got), tc.want) {
			t.Errorf("ListAssociations(%+v) = %v, want %v", tc.f, assocIDs(got), tc.want)
		}
	}
}

func testDeleteClusterCascades(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	must(t, s.CreateCluster(ctx(), newCluster("prod")))
	must(t, s.CreateCluster(ctx(), newCluster("dev")))
	for i := range 3 {
		must(t, s.CreateAssociation(ctx(), newAssoc("prod", assocID(i), "ns", fmt.Sprintf("sa%d", i))))
	}
	must(t, s.CreateAssociation(ctx(), newAssoc("dev", assocID(9), "ns", "sa0")))

	must(t, s.DeleteCluster(ctx(), "prod"))
	_, err := s.GetAssociation(ctx(), "prod", assocID(0))
	wantErr(t, err, store.ErrNotFound)
	_, err = s.FindAssociation(ctx(), "prod", "ns", "sa1")
	wantErr(t, err, store.ErrNotFound)

	// A new cluster of the same name starts without associations.
	must(t, s.CreateCluster(ctx(), newCluster("prod")))
	as, _, err := s.ListAssociations(ctx(), "prod", store.AssociationFilter{}, store.Page{})
	must(t, err)
	if len(as) != 0 {
		t.Errorf("associations survived their cluster: %v", assocIDs(as))
	}
	// Other clusters keep theirs.
	if _, err := s.GetAssociation(ctx(), "dev", assocID(9)); err != nil {
		t.Errorf("association of another cluster: %v", err)
	}
}

// parallel runs fn n times at once and returns the errors.
func parallel(n int, fn func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return errs
}

func testConcurrentInlinePolicies(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	must(t, s.CreateRole(ctx(), newRole("app", "/")))
	const n = 20
	errs := parallel(n, func(i int) error {
		return s.PutRolePolicy(ctx(), store.RolePolicy{RoleName: "app", PolicyName: fmt.Sprintf("p%02d", i), Document: "{}"})
	})
	for _, err := range errs {
		must(t, err)
	}
	ps, _, err := s.ListRolePolicies(ctx(), "app", store.Page{MaxItems: 100})
	must(t, err)
	if len(ps) != n {
		t.Fatalf("%d inline policies after %d concurrent puts", len(ps), n)
	}
}

func testConcurrentUpdateRole(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	r := newRole("app", "/")
	r.Tags = nil
	must(t, s.CreateRole(ctx(), r))
	const n = 20
	errs := parallel(n, func(i int) error {
		_, err := s.UpdateRole(ctx(), "app", func(r *store.Role) error {
			r.Tags = append(r.Tags, store.Tag{Key: fmt.Sprintf("k%02d", i), Value: "v"})
			return nil
		})
		return err
	})
	for _, err := range errs {
		must(t, err)
	}
	got, err := s.GetRole(ctx(), "app")
	must(t, err)
	if len(got.Tags) != n {
		t.Fatalf("%d tags after %d concurrent read-modify-write updates: updates were lost", len(got.Tags), n)
	}
}

func testConcurrentCreateAssociation(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	must(t, s.CreateCluster(ctx(), newCluster("prod")))
	for round := range 5 {
		sa := fmt.Sprintf("sa%d", round)
		errs := parallel(2, func(i int) error {
			return s.CreateAssociation(ctx(), newAssoc("prod", assocID(round*10+i), "ns", sa))
		})
		var ok, exists int
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case errors.Is(err, store.ErrExists):
				exists++
			default:
				t.Fatalf("concurrent CreateAssociation: %v", err)
			}
		}
		if ok != 1 || exists != 1 {
			t.Fatalf("two concurrent creates for one service account: %d succeeded, %d ErrExists; want 1 and 1", ok, exists)
		}
	}
}

func testConcurrentPutMeta(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	const n = 10
	got := make([]string, n)
	errs := parallel(n, func(i int) error {
		var err error
		got[i], err = s.PutMetaIfAbsent(ctx(), "account-id", fmt.Sprintf("%012d", i))
		return err
	})
	for _, err := range errs {
		must(t, err)
	}
	for _, v := range got[1:] {
		if v != got[0] {
			t.Fatalf("concurrent PutMetaIfAbsent returned different values: %v", got)
		}
	}
}

func testPersistence(t *testing.T, open func(t *testing.T) store.Store) {
	s := open(t)
	r := newRole("app", "/team/")
	p := newPolicy("pol", "/")
	c := newCluster("prod")
	a := newAssoc("prod", assocID(1), "default", "app")
	k := store.SealingKey{ID: "k1", Sealed: []byte("sealed"), CreatedAt: t0}
	must(t, s.CreateRole(ctx(), r))
	must(t, s.PutRolePolicy(ctx(), store.RolePolicy{RoleName: "app", PolicyName: "inline", Document: "{}"}))
	must(t, s.CreatePolicy(ctx(), p))
	must(t, s.AttachRolePolicy(ctx(), "app", p.ARN))
	must(t, s.CreateCluster(ctx(), c))
	must(t, s.CreateAssociation(ctx(), a))
	must(t, s.CreateSealingKey(ctx(), k))
	_, err := s.PutMetaIfAbsent(ctx(), "account-id", account)
	must(t, err)
	must(t, s.Close())

	s = open(t)
	gotRole, err := s.GetRole(ctx(), "app")
	must(t, err)
	same(t, "role after reopen", gotRole, r, normRole)
	if _, err := s.GetRolePolicy(ctx(), "app", "inline"); err != nil {
		t.Errorf("inline policy after reopen: %v", err)
	}
	gotPolicy, err := s.GetPolicy(ctx(), p.ARN)
	must(t, err)
	if gotPolicy.AttachmentCount != 1 {
		t.Errorf("attachment lost across reopen: count %d", gotPolicy.AttachmentCount)
	}
	gotCluster, err := s.GetCluster(ctx(), "prod")
	must(t, err)
	same(t, "cluster after reopen", gotCluster, c, normCluster)
	gotAssoc, err := s.GetAssociation(ctx(), "prod", a.ID)
	must(t, err)
	same(t, "association after reopen", gotAssoc, a, normAssoc)
	keys, err := s.ListSealingKeys(ctx())
	must(t, err)
	if len(keys) != 1 || string(keys[0].Sealed) != "sealed" {
		t.Errorf("sealing keys after reopen: %+v", keys)
	}
	v, err := s.GetMeta(ctx(), "account-id")
	must(t, err)
	if v != account {
		t.Errorf("meta after reopen: %q", v)
	}
}
