package store_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/podid/podid/internal/store"
	"github.com/podid/podid/internal/store/pgtest"
)

// The crash tests run this test binary again as a writer process (the
// TestCrashChild "test"), kill it with SIGKILL in the middle of its writes,
// then open the store and check that every write is whole: each acknowledged
// one is there, and none is there in part.
const (
	envCrashDSN    = "PODID_STORE_CRASH_DSN"
	envCrashMode   = "PODID_STORE_CRASH_MODE" // writes | restore
	envCrashBackup = "PODID_STORE_CRASH_BACKUP"
)

const crashRole = "crash"

func crashCluster(i int) string { return fmt.Sprintf("c%06d", i) }
func crashAssoc(i, j int) string {
	return fmt.Sprintf("a-%08d%09d", i, j)
}

// TestCrashChild is the writer process of the crash tests, not a test.
func TestCrashChild(t *testing.T) {
	dsn := os.Getenv(envCrashDSN)
	if dsn == "" {
		t.Skip("the writer process of the crash tests; runs only when they start it")
	}
	// Never outlive a parent that failed to kill us.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := store.OpenContext(ctx, dsn)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(2)
	}
	if os.Getenv(envCrashMode) == "restore" {
		f, err := os.Open(os.Getenv(envCrashBackup))
		if err != nil {
			fail(err)
		}
		fmt.Println("restoring")
		if _, err := store.Restore(ctx, s, f, store.RestoreOptions{Force: true}); err != nil {
			fail(err)
		}
		fmt.Println("restored")
		time.Sleep(time.Minute) // wait for the kill
		return
	}

	r, err := s.GetRole(ctx, crashRole)
	if err != nil {
		fail(err)
	}
	// Finish the deletions a previous writer was killed before.
	clusters, _, err := s.ListClusters(ctx, store.Page{MaxItems: 1000})
	if err != nil {
		fail(err)
	}
	for _, c := range clusters {
		if n, _ := strconv.Atoi(strings.TrimPrefix(c.Name, "c")); n < len(r.Tags)-1 {
			if err := s.DeleteCluster(ctx, c.Name); err != nil {
				fail(err)
			}
		}
	}
	for i := len(r.Tags); ctx.Err() == nil; i++ {
		// A cluster with three associations, …
		c := store.Cluster{Name: crashCluster(i), ARN: "arn:aws:eks:us-east-1:123456789012:cluster/" + crashCluster(i),
			JWKS: bytes.Repeat([]byte("k"), 2048), CreatedAt: time.Now()}
		if err := s.CreateCluster(ctx, c); err != nil && !errors.Is(err, store.ErrExists) {
			fail(err)
		}
		for j := range 3 {
			a := store.Association{ID: crashAssoc(i, j), ARN: "arn:" + crashAssoc(i, j), ClusterName: c.Name,
				Namespace: "ns", ServiceAccount: fmt.Sprintf("sa-%d", j), RoleARN: "arn:aws:iam::123456789012:role/crash"}
			if err := s.CreateAssociation(ctx, a); err != nil && !errors.Is(err, store.ErrExists) {
				fail(err)
			}
		}
		// … a read-modify-write whose two fields must agree, …
		r, err := s.UpdateRole(ctx, crashRole, func(r *store.Role) error {
			r.Tags = append(r.Tags, store.Tag{Key: fmt.Sprintf("t%06d", len(r.Tags)), Value: strings.Repeat("v", 200)})
			r.Description = strconv.Itoa(len(r.Tags))
			return nil
		})
		if err != nil {
			fail(err)
		}
		fmt.Println("role", len(r.Tags))
		// … and a cascading delete of the previous cluster and its associations.
		if i > 0 {
			if err := s.DeleteCluster(ctx, crashCluster(i-1)); err != nil && !errors.Is(err, store.ErrNotFound) {
				fail(err)
			}
			fmt.Println("deleted", i-1)
		}
	}
}

// crashChild starts the writer process and returns its output lines.
func crashChild(t *testing.T, env ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 1024)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return cmd, lines
}

// kill9 kills the writer with SIGKILL and drains its output.
func kill9(t *testing.T, cmd *exec.Cmd, lines <-chan string, seen func(string)) {
	t.Helper()
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		seen(l)
	}
	cmd.Wait()
}

func waitLine(t *testing.T, lines <-chan string, prefix string, seen func(string)) {
	t.Helper()
	timeout := time.After(60 * time.Second)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("writer exited before printing %q", prefix)
			}
			seen(l)
			if strings.HasPrefix(l, "error") {
				t.Fatalf("writer: %s", l)
			}
			if strings.HasPrefix(l, prefix) {
				return
			}
		case <-timeout:
			t.Fatalf("writer printed no %q in 60s", prefix)
		}
	}
}

// crashState is what the writers acknowledged before they died.
type crashState struct {
	roleTags int          // highest acknowledged tag count
	deleted  map[int]bool // acknowledged cluster deletions
}

func (st *crashState) seen(l string) {
	f := strings.Fields(l)
	if len(f) != 2 {
		return
	}
	n, err := strconv.Atoi(f[1])
	if err != nil {
		return
	}
	switch f[0] {
	case "role":
		st.roleTags = max(st.roleTags, n)
	case "deleted":
		st.deleted[n] = true
	}
}

// checkCrashInvariants opens the store as a restarted server would and
// checks that nothing acknowledged is lost and nothing is half written.
func checkCrashInvariants(t *testing.T, dsn string, st *crashState) {
	t.Helper()
	ctx := t.Context()
	s, err := store.OpenContext(ctx, dsn)
	if err != nil {
		t.Fatalf("reopen after kill -9: %v", err)
	}
	defer s.Close()
	r, err := s.GetRole(ctx, crashRole)
	if err != nil {
		t.Fatal(err)
	}
	n := len(r.Tags)
	if n < st.roleTags || n > st.roleTags+1 {
		t.Fatalf("role has %d tags; the writer acknowledged %d (one more may have committed unacknowledged)", n, st.roleTags)
	}
	if r.Description != strconv.Itoa(n) {
		t.Fatalf("role half updated: %d tags but description %q", n, r.Description)
	}
	for i, tag := range r.Tags {
		if tag.Key != fmt.Sprintf("t%06d", i) || len(tag.Value) != 200 {
			t.Fatalf("tag %d is %+v", i, tag)
		}
	}
	for i := 0; i <= n; i++ {
		_, err := s.GetCluster(ctx, crashCluster(i))
		gone := errors.Is(err, store.ErrNotFound)
		if err != nil && !gone {
			t.Fatal(err)
		}
		if st.deleted[i] && !gone {
			t.Fatalf("cluster %d: deletion acknowledged, cluster still there", i)
		}
		if !gone {
			continue
		}
		// A deleted cluster takes all its associations with it.
		for j := range 3 {
			if a, err := s.FindAssociation(ctx, crashCluster(i), "ns", fmt.Sprintf("sa-%d", j)); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("cluster %d is gone but association %s remains (%v)", i, a.ID, err)
			}
		}
	}
}

func runCrashTest(t *testing.T, dsn string) {
	s, err := store.OpenContext(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CreateRole(t.Context(), store.Role{Name: crashRole, RoleID: "AROACRASH", Path: "/",
		ARN: "arn:aws:iam::123456789012:role/crash", MaxSessionDuration: 3600}); err != nil {
		t.Fatal(err)
	}
	s.Close()

	st := &crashState{deleted: map[int]bool{}}
	for round := range 3 {
		cmd, lines := crashChild(t, envCrashDSN+"="+dsn, envCrashMode+"=writes")
		waitLine(t, lines, "deleted", st.seen) // in full swing
		time.Sleep(time.Duration(20+rand.IntN(200)) * time.Millisecond)
		kill9(t, cmd, lines, st.seen)
		checkCrashInvariants(t, dsn, st)
		t.Logf("round %d: killed after %d acknowledged updates", round, st.roleTags)
	}

	// Restore is the biggest single transaction: thousands of rows. Killed
	// part way, the store must hold either all of the old contents or all of
	// the backup.
	const bulk = 1500
	src, err := store.OpenSQLite(filepath.Join(t.TempDir(), "bulk.db"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range bulk {
		name := fmt.Sprintf("bulk%05d", i)
		must := func(err error) {
			if err != nil {
				t.Fatal(err)
			}
		}
		must(src.CreateRole(t.Context(), store.Role{Name: name, RoleID: "AROA" + name, Path: "/",
			ARN: "arn:aws:iam::123456789012:role/" + name, MaxSessionDuration: 3600}))
		must(src.PutRolePolicy(t.Context(), store.RolePolicy{RoleName: name, PolicyName: "p", Document: "{}"}))
	}
	backupFile := filepath.Join(t.TempDir(), "bulk.jsonl")
	f, err := os.Create(backupFile)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Backup(t.Context(), src, f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	src.Close()

	cmd, lines := crashChild(t, envCrashDSN+"="+dsn, envCrashMode+"=restore", envCrashBackup+"="+backupFile)
	restored := false
	seen := func(l string) {
		if l == "restored" {
			restored = true
		}
	}
	waitLine(t, lines, "restoring", seen)
	time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
	kill9(t, cmd, lines, seen)

	s, err = store.OpenContext(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	roles, _, err := s.ListRoles(t.Context(), store.RoleFilter{}, store.Page{MaxItems: 1000})
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case len(roles) == 1 && roles[0].Name == crashRole && !restored:
		t.Logf("restore killed part way: the old contents are whole")
		s.Close()
		checkCrashInvariants(t, dsn, st)
	case len(roles) > 1 && roles[0].Name == "bulk00000":
		t.Logf("restore committed before the kill (acknowledged: %v)", restored)
		all, _ := collectRoles(t, s)
		if all != bulk {
			t.Fatalf("restore half applied: %d of %d roles", all, bulk)
		}
		for _, i := range []int{0, bulk / 2, bulk - 1} {
			if _, err := s.GetRolePolicy(t.Context(), fmt.Sprintf("bulk%05d", i), "p"); err != nil {
				t.Fatalf("restored role %d without its inline policy: %v", i, err)
			}
		}
		if _, err := s.GetRole(t.Context(), crashRole); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("forced restore kept an old role: %v", err)
		}
	default:
		t.Fatalf("after a killed restore (acknowledged: %v) the store has %d roles (%v…): neither old nor new",
			restored, len(roles), roleNamesOf(roles[:min(3, len(roles))]))
	}
}

func roleNamesOf(roles []store.Role) []string {
	var out []string
	for _, r := range roles {
		out = append(out, r.Name)
	}
	return out
}

func collectRoles(t *testing.T, s store.Store) (int, error) {
	n, marker := 0, ""
	for {
		roles, next, err := s.ListRoles(t.Context(), store.RoleFilter{}, store.Page{Marker: marker, MaxItems: 1000})
		if err != nil {
			t.Fatal(err)
		}
		n += len(roles)
		if next == "" {
			return n, nil
		}
		marker = next
	}
}

func TestCrashSQLite(t *testing.T) {
	runCrashTest(t, "sqlite:"+filepath.Join(t.TempDir(), "podid.db"))
}

func TestCrashPostgres(t *testing.T) {
	runCrashTest(t, pgtest.Start(t))
}
