package store_test

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/podid/podid/internal/store"
	"github.com/podid/podid/internal/store/pgtest"
)

// changeLog is what a subscriber heard.
type changeLog chan store.Change

func subscribe(t *testing.T, n store.Notifier) changeLog {
	t.Helper()
	ch := make(changeLog, 4096)
	unsubscribe := n.Subscribe(func(c store.Change) {
		select {
		case ch <- c:
		default: // the tests never hear this many
		}
	})
	t.Cleanup(unsubscribe)
	return ch
}

// await waits up to limit for want, skipping other changes, and returns
// how long it took.
func (l changeLog) await(t *testing.T, want store.Change, limit time.Duration) time.Duration {
	t.Helper()
	return l.awaitSince(t, want, time.Now(), limit)
}

// awaitSince is await timed from start.
func (l changeLog) awaitSince(t *testing.T, want store.Change, start time.Time, limit time.Duration) time.Duration {
	t.Helper()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		select {
		case c := <-l:
			if c == want {
				return time.Since(start)
			}
		case <-timer.C:
			t.Fatalf("%s not heard within %v", want, limit)
		}
	}
}

// buffered reports whether want is already in the log, without waiting,
// and consumes what it reads.
func (l changeLog) buffered(want store.Change) bool {
	for {
		select {
		case c := <-l:
			if c == want {
				return true
			}
		default:
			return false
		}
	}
}

// until reads up to marker and returns the other changes heard before it,
// leaving out the listener's own ChangeAll.
func (l changeLog) until(t *testing.T, marker store.Change, limit time.Duration) []store.Change {
	t.Helper()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	var out []store.Change
	for {
		select {
		case c := <-l:
			if c == marker {
				return out
			}
			if c.Kind == store.ChangeAll && c.Key != store.ReasonRestore {
				continue
			}
			out = append(out, c)
		case <-timer.C:
			t.Fatalf("%s not heard within %v; heard %v", marker, limit, out)
		}
	}
}

// contextForSteps is the context of the writes: they must not be cut short
// by a test's end, cleanups included.
func contextForSteps() context.Context { return context.Background() }

var (
	listenStarted = store.Change{Kind: store.ChangeAll, Key: store.ReasonListenStarted}
	listenLost    = store.Change{Kind: store.ChangeAll, Key: store.ReasonListenLost}
	listenDown    = store.Change{Kind: store.ChangeAll, Key: store.ReasonListenDown}
)

func roleChange(name string) store.Change { return store.Change{Kind: store.ChangeRole, Key: name} }

func testRole(name string) store.Role {
	return store.Role{RoleID: "AROA" + name, Name: name, Path: "/", ARN: "arn:aws:iam::111122223333:role/" + name,
		AssumeRolePolicy: `{"Version":"2012-10-17","Statement":[]}`, MaxSessionDuration: 3600, CreatedAt: time.Now()}
}

// changeSteps are writes of every kind that is announced, with the change
// each must announce.
func changeSteps(s store.Store) []struct {
	name string
	do   func() error
	want store.Change
} {
	now := time.Now()
	policyARN := "arn:aws:iam::111122223333:policy/read"
	oidcARN := "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/1"
	assoc := store.Association{ID: "a-0123456789abcdefg", ARN: "arn:aws:eks:us-east-1:111122223333:podidentityassociation/c1/a-0123456789abcdefg",
		ClusterName: "c1", Namespace: "default", ServiceAccount: "app", RoleARN: "arn:aws:iam::111122223333:role/app",
		CreatedAt: now, ModifiedAt: now}
	assocKey := store.Change{Kind: store.ChangeAssociation, Key: store.AssociationKey("c1", "default", "app")}
	cluster := store.Change{Kind: store.ChangeCluster, Key: "c1"}
	oidc := store.Change{Kind: store.ChangeOIDCProvider, Key: oidcARN}
	c := contextForSteps()
	return []struct {
		name string
		do   func() error
		want store.Change
	}{
		{"CreateRole", func() error { return s.CreateRole(c, testRole("app")) }, roleChange("app")},
		{"UpdateRole trust policy", func() error {
			_, err := s.UpdateRole(c, "app", func(r *store.Role) error { r.AssumeRolePolicy = `{"Version":"2012-10-17"}`; return nil })
			return err
		}, roleChange("app")},
		{"UpdateRole max session duration", func() error {
			_, err := s.UpdateRole(c, "app", func(r *store.Role) error { r.MaxSessionDuration = 7200; return nil })
			return err
		}, roleChange("app")},
		{"PutRolePolicy", func() error {
			return s.PutRolePolicy(c, store.RolePolicy{RoleName: "app", PolicyName: "p", Document: "{}"})
		}, roleChange("app")},
		{"DeleteRolePolicy", func() error { return s.DeleteRolePolicy(c, "app", "p") }, roleChange("app")},
		{"AttachRolePolicy", func() error {
			if err := s.CreatePolicy(c, store.ManagedPolicy{ARN: policyARN, PolicyID: "ANPA1", Name: "read", Path: "/",
				Document: "{}", DefaultVersion: "v1", CreatedAt: now, UpdatedAt: now}); err != nil {
				return err
			}
			return s.AttachRolePolicy(c, "app", policyARN)
		}, roleChange("app")},
		{"DetachRolePolicy", func() error { return s.DetachRolePolicy(c, "app", policyARN) }, roleChange("app")},
		{"CreateOIDCProvider", func() error {
			return s.CreateOIDCProvider(c, store.OIDCProvider{ARN: oidcARN, URL: "oidc.example.com/id/1",
				ClientIDs: []string{"sts.amazonaws.com"}, CreatedAt: now})
		}, oidc},
		{"UpdateOIDCProvider", func() error {
			_, err := s.UpdateOIDCProvider(c, oidcARN, func(o *store.OIDCProvider) error { o.ClientIDs = append(o.ClientIDs, "x"); return nil })
			return err
		}, oidc},
		{"DeleteOIDCProvider", func() error { return s.DeleteOIDCProvider(c, oidcARN) }, oidc},
		{"CreateCluster", func() error {
			return s.CreateCluster(c, store.Cluster{Name: "c1", ARN: "arn:aws:eks:us-east-1:111122223333:cluster/c1",
				Issuer: "https://issuer.test", KeySource: "jwks-file", JWKS: []byte(`{"keys":[]}`), CreatedAt: now})
		}, cluster},
		{"UpdateCluster JWKS", func() error {
			_, err := s.UpdateCluster(c, "c1", func(cl *store.Cluster) error { cl.JWKS = []byte(`{"keys":[{}]}`); return nil })
			return err
		}, cluster},
		{"CreateAssociation", func() error { return s.CreateAssociation(c, assoc) }, assocKey},
		{"UpdateAssociation", func() error {
			_, err := s.UpdateAssociation(c, "c1", assoc.ID, func(a *store.Association) error { a.RoleARN += "2"; return nil })
			return err
		}, assocKey},
		{"DeleteAssociation", func() error { _, err := s.DeleteAssociation(c, "c1", assoc.ID); return err }, assocKey},
		{"DeleteCluster", func() error { return s.DeleteCluster(c, "c1") }, cluster},
		{"DeleteRole", func() error { return s.DeleteRole(c, "app") }, roleChange("app")},
	}
}

// Every announced write on one replica reaches a subscriber on another
// within 1 s (in practice a few milliseconds), and the writer's own
// subscribers before the call returns.
func TestPostgresChangesReachOtherReplicas(t *testing.T) {
	dsn := pgtest.Start(t)
	r := replicas(t, dsn, 2)
	a, b := r[0], r[1]
	heardA, heardB := subscribe(t, a), subscribe(t, b)
	heardA.await(t, listenStarted, 10*time.Second)
	heardB.await(t, listenStarted, 10*time.Second)

	var worst time.Duration
	for _, step := range changeSteps(a) {
		start := time.Now()
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if !heardA.buffered(step.want) {
			t.Errorf("%s: the writer's own subscriber had not heard %s when the call returned", step.name, step.want)
		}
		took := heardB.awaitSince(t, step.want, start, time.Second)
		worst = max(worst, took)
		t.Logf("%-32s %-70s heard on the other replica %v after the call began", step.name, step.want, took.Round(10*time.Microsecond))
	}
	t.Logf("slowest: %v", worst.Round(10*time.Microsecond))

	// A restore makes every replica forget everything.
	var backup bytes.Buffer
	if _, err := store.Backup(t.Context(), a, &backup); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := store.Restore(t.Context(), a, &backup, store.RestoreOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	restored := store.Change{Kind: store.ChangeAll, Key: store.ReasonRestore}
	if !heardA.buffered(restored) {
		t.Errorf("the writer's own subscriber had not heard %s when Restore returned", restored)
	}
	t.Logf("restore heard on the other replica %v after it began", heardB.awaitSince(t, restored, start, time.Second).Round(10*time.Microsecond))
}

// On SQLite, one process owns the file: its subscribers hear of every
// announced write before the call returns.
func TestSQLiteChangesReachSubscribers(t *testing.T) {
	s, err := store.OpenSQLite(filepath.Join(t.TempDir(), "podid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	heard := subscribe(t, s)
	for _, step := range changeSteps(s) {
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if !heard.buffered(step.want) {
			t.Errorf("%s: %s not heard when the call returned", step.name, step.want)
		}
	}
}

// A write that is rolled back announces nothing, to other replicas or to
// the writer's own subscribers, even when its pg_notify had already run.
func TestPostgresRolledBackWriteNotifiesNothing(t *testing.T) {
	dsn := pgtest.Start(t)
	r := replicas(t, dsn, 2)
	a, b := r[0], r[1]
	heardA, heardB := subscribe(t, a), subscribe(t, b)
	heardA.await(t, listenStarted, 10*time.Second)
	heardB.await(t, listenStarted, 10*time.Second)
	rolledBack(t, a, heardA, heardB)
}

// The same on SQLite, whose subscribers are in-process.
func TestSQLiteRolledBackWriteNotifiesNothing(t *testing.T) {
	s, err := store.OpenSQLite(filepath.Join(t.TempDir(), "podid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	heard := subscribe(t, s)
	rolledBack(t, s, heard)
}

func rolledBack(t *testing.T, s store.Store, heard ...changeLog) {
	c := contextForSteps()
	if err := s.CreateRole(c, testRole("app")); err != nil {
		t.Fatal(err)
	}
	for _, h := range heard {
		h.await(t, roleChange("app"), 5*time.Second)
	}
	// Let the writer's own LISTEN echo of the create arrive before the
	// failures, so that it is not taken for one of theirs.
	time.Sleep(200 * time.Millisecond)
	for _, h := range heard {
		for h.buffered(roleChange("app")) {
		}
	}

	boom := errors.New("boom")
	if _, err := s.UpdateRole(c, "app", func(*store.Role) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("UpdateRole with a failing callback = %v, want boom", err)
	}
	if err := s.CreateRole(c, testRole("app")); !errors.Is(err, store.ErrExists) {
		t.Fatalf("CreateRole of an existing role = %v, want ErrExists", err)
	}
	// Fail the transactions after their pg_notify, just before COMMIT.
	store.FailBeforeCommit(s, func() error { return boom })
	_, err := s.UpdateRole(c, "app", func(r *store.Role) error { r.AssumeRolePolicy = "changed"; return nil })
	if !errors.Is(err, boom) {
		t.Fatalf("UpdateRole failing at commit = %v, want boom", err)
	}
	if err := s.CreateCluster(c, store.Cluster{Name: "c1", KeySource: "jwks-file", CreatedAt: time.Now()}); !errors.Is(err, boom) {
		t.Fatalf("CreateCluster failing at commit = %v, want boom", err)
	}
	store.FailBeforeCommit(s, nil)
	if role, err := s.GetRole(c, "app"); err != nil || role.AssumeRolePolicy == "changed" {
		t.Fatalf("role after the rolled-back update: %+v, %v", role, err)
	}
	if _, err := s.GetCluster(c, "c1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("cluster after the rolled-back create: %v, want ErrNotFound", err)
	}

	marker := roleChange("marker")
	if err := s.CreateRole(c, testRole("marker")); err != nil {
		t.Fatal(err)
	}
	for i, h := range heard {
		if got := h.until(t, marker, 5*time.Second); len(got) > 0 {
			t.Errorf("subscriber %d heard %v from rolled-back writes", i, got)
		}
	}
}

// When the LISTEN connection is terminated, the listener says so
// (ChangeAll), reconnects, says so again, and hears changes again. While it
// cannot reconnect, subscribers receive ChangeAll periodically.
func TestPostgresListenReconnects(t *testing.T) {
	dsn := pgtest.Start(t)
	r := replicas(t, dsn, 2)
	a, b := r[0], r[1]
	store.SetListenTiming(b, 0, 200*time.Millisecond)
	heard := subscribe(t, b)
	heard.await(t, listenStarted, 10*time.Second)

	// Connected to another database, since ALTER DATABASE below cannot
	// change the one it runs in.
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	db := cfg.Database
	cfg.Database = "postgres"
	admin, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.Close(contextForSteps()) })
	terminate := func() uint32 {
		t.Helper()
		pid := store.ListenerPID(b)
		if pid == 0 {
			t.Fatal("no LISTEN connection")
		}
		var ok bool
		if err := admin.QueryRow(t.Context(), "SELECT pg_terminate_backend($1)", int64(pid)).Scan(&ok); err != nil || !ok {
			t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, ok, err)
		}
		return pid
	}

	old := terminate()
	lost := heard.await(t, listenLost, 5*time.Second)
	back := heard.await(t, listenStarted, 10*time.Second)
	if pid := store.ListenerPID(b); pid == 0 || pid == old {
		t.Fatalf("listener PID after reconnecting = %d, was %d", pid, old)
	}
	t.Logf("LISTEN connection terminated: loss signalled after %v, back %v later", lost.Round(time.Microsecond), back.Round(time.Microsecond))
	if err := a.CreateRole(t.Context(), testRole("after")); err != nil {
		t.Fatal(err)
	}
	t.Logf("change after reconnecting heard after %v", heard.await(t, roleChange("after"), time.Second).Round(time.Microsecond))

	// Keep it from reconnecting: ChangeAll arrives every 200 ms meanwhile.
	ident := pgx.Identifier{db}.Sanitize()
	if _, err := admin.Exec(t.Context(), "ALTER DATABASE "+ident+" WITH ALLOW_CONNECTIONS false"); err != nil {
		t.Skipf("cannot refuse connections to test the listener's degraded mode: %v", err)
	}
	allowed := false
	allow := func() {
		if allowed {
			return
		}
		allowed = true
		if _, err := admin.Exec(contextForSteps(), "ALTER DATABASE "+ident+" WITH ALLOW_CONNECTIONS true"); err != nil {
			t.Errorf("allow connections again: %v", err)
		}
	}
	defer allow()
	terminate()
	heard.await(t, listenLost, 5*time.Second)
	start := time.Now()
	for range 3 {
		heard.await(t, listenDown, time.Second)
	}
	t.Logf("while LISTEN was down: 3 full invalidations in %v", time.Since(start).Round(time.Millisecond))
	allow()
	heard.await(t, listenStarted, 15*time.Second)
	if err := a.CreateRole(t.Context(), testRole("after-outage")); err != nil {
		t.Fatal(err)
	}
	heard.await(t, roleChange("after-outage"), time.Second)
}

// A quiet LISTEN connection is pinged, not dropped: no reconnects, no
// full invalidations, and changes still arrive.
func TestPostgresListenIdleCheck(t *testing.T) {
	dsn := pgtest.Start(t)
	r := replicas(t, dsn, 2)
	a, b := r[0], r[1]
	store.SetListenTiming(b, 50*time.Millisecond, 0)
	heard := subscribe(t, b)
	heard.await(t, listenStarted, 10*time.Second)
	pid := store.ListenerPID(b)
	time.Sleep(500 * time.Millisecond) // ten idle checks
	if err := a.CreateRole(t.Context(), testRole("after-quiet")); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(time.Second)
	for done := false; !done; {
		select {
		case c := <-heard:
			if c == roleChange("after-quiet") {
				done = true
			} else {
				t.Errorf("heard %v while quiet", c)
			}
		case <-timeout:
			t.Fatal("change after the quiet period not heard within 1 s")
		}
	}
	if now := store.ListenerPID(b); now != pid {
		t.Errorf("listener PID went from %d to %d while quiet", pid, now)
	}
}

// ParseChange reads what Change.String writes, and treats anything else
// as a full invalidation.
func TestParseChange(t *testing.T) {
	for _, c := range []store.Change{
		roleChange("app"),
		{Kind: store.ChangeOIDCProvider, Key: "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/1"},
		{Kind: store.ChangeAssociation, Key: store.AssociationKey("c", "ns", "sa")},
		{Kind: store.ChangeCluster, Key: "c"},
		{Kind: store.ChangeAll, Key: store.ReasonRestore},
	} {
		if got := store.ParseChange(c.String()); got != c {
			t.Errorf("ParseChange(%q) = %v", c.String(), got)
		}
	}
	for _, s := range []string{"", "role", "policy:x", "nonsense"} {
		if got := store.ParseChange(s); got.Kind != store.ChangeAll {
			t.Errorf("ParseChange(%q) = %v, want ChangeAll", s, got)
		}
	}
}
