package loadgen

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podid/podid/internal/store"
	"github.com/podid/podid/internal/store/pgtest"
)

// TestMain lets StartSelfChild re-execute the test binary as a server
// child, as podid-bench re-executes itself.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == ChildCommand {
		if err := ServeChild(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(pgtest.Main(m))
}

// TestRoundRobinSpreads sends through a roundRobin over three loopback
// servers and checks each got its third, as counted by the servers.
func TestRoundRobinSpreads(t *testing.T) {
	var urls []string
	got := make([]atomic.Int64, 3)
	for i := range got {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) { got[i].Add(1) })}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { srv.Close() })
		urls = append(urls, "http://"+ln.Addr().String())
	}
	rr := newRoundRobin(urls)
	src := func(int) (*http.Request, bool, error) {
		r, err := http.NewRequest(http.MethodGet, rr.URL(), nil)
		return r, true, err
	}
	res, err := Run(context.Background(), Config{Workers: 4, Duration: 200 * time.Millisecond}, NewClient(4), src)
	if err != nil {
		t.Fatal(err)
	}
	sent := rr.Sent()
	if res.OK < 30 || res.Failed != 0 {
		t.Fatalf("ok %d failed %d", res.OK, res.Failed)
	}
	var total int64
	for i := range got {
		total += got[i].Load()
		if sent[i] != got[i].Load() {
			t.Errorf("server %d: sent %d, received %d", i, sent[i], got[i].Load())
		}
	}
	if total != res.OK || slices.Max(sent)-slices.Min(sent) > 1 {
		t.Fatalf("sent %v (ok %d): not round-robin", sent, res.OK)
	}
	rr.reset()
	if slices.Max(rr.Sent()) != 0 {
		t.Fatal("reset kept counts")
	}
}

// TestRunReplicas runs the whole comparison for a fraction of a second per
// row: one server over SQLite and three replicas over one PostgreSQL
// database, every scenario on both. It checks every row succeeded, that the
// replicas each took their share of every scenario, that the writes landed
// in the shared database, and that the report names every configuration
// and scenario.
func TestRunReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("starts PostgreSQL and four servers")
	}
	dsn := pgtest.Start(t)
	defer func(d time.Duration) { statsSettle = d }(statsSettle)
	statsSettle = 0
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	rep, err := RunReplicas(ctx, ReplicaOptions{Replicas: 3, StoreDSN: dsn, Workers: 6,
		Duration: 100 * time.Millisecond, WorkDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(tlog{t}, nil))})
	if err != nil {
		t.Fatal(err)
	}
	pg := ConfigPostgres(3)
	if len(rep.Configs) != 2 || rep.Configs[0].Name != ConfigSQLite || rep.Configs[1].Name != pg {
		t.Fatalf("configurations %+v", rep.Configs)
	}
	if pids := rep.Configs[1].PIDs; len(pids) != 3 || len(slices.Compact(slices.Sorted(slices.Values(pids)))) != 3 {
		t.Fatalf("replica pids %v", pids)
	}
	if len(rep.Rows) != 2*len(ReplicaScenarios) || len(rep.Ratios) != len(ReplicaScenarios) {
		t.Fatalf("%d rows, %d ratios", len(rep.Rows), len(rep.Ratios))
	}
	var created int64
	for _, r := range rep.Rows {
		if r.OK == 0 || r.Failed != 0 {
			t.Errorf("%s on %s: ok %d failed %d %v %s", r.Scenario, r.Config, r.OK, r.Failed, r.ErrorSamples, r.Note)
			continue
		}
		want := 1
		if r.Config == pg {
			want = 3
		}
		if len(r.SentPerURL) != want || slices.Min(r.SentPerURL) == 0 || slices.Max(r.SentPerURL)-slices.Min(r.SentPerURL) > 1 {
			t.Errorf("%s on %s: requests per server %v", r.Scenario, r.Config, r.SentPerURL)
		}
		if r.Config == pg && r.PGSessions < 0 {
			t.Errorf("%s on %s: no session count", r.Scenario, r.Config)
		}
		if r.Config == pg && r.Scenario == AssocCreate {
			created = r.OK
		}
	}
	if rep.HasErrors() {
		t.Fatal("report has errors")
	}

	// The replicas' creations are in the one database: the timed phase's,
	// plus those of the sanity request and the warm-up (none here).
	st, err := store.OpenContext(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	n, marker := 0, ""
	for {
		as, next, err := st.ListAssociations(ctx, ClusterName, store.AssociationFilter{Namespace: createNamespace}, store.Page{Marker: marker, MaxItems: 100})
		if err != nil {
			t.Fatal(err)
		}
		n += len(as)
		if marker = next; marker == "" {
			break
		}
	}
	if int64(n) != created+1 {
		t.Fatalf("%d associations in the shared database, want %d (timed phase) + 1 (sanity request)", n, created)
	}

	md := rep.Markdown()
	for _, s := range append([]string{"`" + ConfigSQLite + "`", "`" + pg + "`", "fsync="}, ReplicaScenarios...) {
		if !strings.Contains(md, s) {
			t.Errorf("report lacks %q:\n%s", s, md)
		}
	}
	for _, name := range ReplicaScenarios {
		if !strings.Contains(md, "| "+name+" | "+ConfigSQLite+" |") || !strings.Contains(md, "| "+name+" | "+pg+" |") {
			t.Errorf("report lacks a row of %s for each configuration", name)
		}
	}
}

func TestRunReplicasRejects(t *testing.T) {
	for _, o := range []ReplicaOptions{{Replicas: 0}, {Replicas: 17}, {Replicas: 3, Scenarios: []string{Noop}}} {
		if _, err := RunReplicas(context.Background(), o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// tlog sends a logger's lines to the test's log.
type tlog struct{ t *testing.T }

func (w tlog) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}
