package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/jackc/pgx/v5"

	"github.com/podid/podid/internal/secretbox"
	"github.com/podid/podid/internal/store/pgtest"
)

// Scenarios of the replica comparison (RunReplicas) besides PodRepeated:
// the association API a controller or an operator drives.
const (
	AssocDescribe = "describe-pod-identity-association"
	AssocList     = "list-pod-identity-associations"
	AssocCreate   = "create-pod-identity-association"
)

// ReplicaScenarios is what RunReplicas measures, in run order. Create runs
// last, so that the rows it adds do not sit under the reads.
var ReplicaScenarios = []string{PodRepeated, AssocDescribe, AssocList, AssocCreate}

// Where the association scenarios work.
const (
	listNamespace   = "bench-list"
	listSize        = 20 // associations List returns, one page
	createNamespace = "bench-create"
)

// ConfigSQLite names the one-server configuration on the embedded store.
const ConfigSQLite = "sqlite-1"

// ConfigPostgres names the configuration of n replicas over PostgreSQL.
func ConfigPostgres(n int) string { return fmt.Sprintf("postgres-%d", n) }

// ReplicaOptions configure RunReplicas.
type ReplicaOptions struct {
	// Replicas is how many podid servers share the PostgreSQL database.
	Replicas int
	// StoreDSN is an empty PostgreSQL database the replicas use. ""
	// starts a private PostgreSQL server on 127.0.0.1 (internal/store/pgtest)
	// for the run, with PostgreSQL's durable defaults unless PGFast.
	StoreDSN string
	PGFast   bool
	Workers  int
	Duration time.Duration
	Warmup   time.Duration
	// Scenarios is a subset of ReplicaScenarios; empty: all.
	Scenarios []string
	WorkDir   string // data dirs, child logs and the shared master key
	Revision  string
	Log       *slog.Logger
}

// ReplicaReport is one replica comparison: every row of both
// configurations comes from the same invocation.
type ReplicaReport struct {
	Machine   Machine        `json:"machine"`
	Command   string         `json:"command"`
	Revision  string         `json:"revision"`
	Workers   int            `json:"workers"`
	DurationS float64        `json:"duration_s"`
	WarmupS   float64        `json:"warmup_s"`
	Postgres  PostgresInfo   `json:"postgres"`
	Configs   []ConfigInfo   `json:"configurations"`
	Rows      []ReplicaRow   `json:"results"`
	Ratios    []ReplicaRatio `json:"ratios"`
}

// PostgresInfo is what the PostgreSQL side was.
type PostgresInfo struct {
	Source   string            `json:"source"`
	Version  string            `json:"version"`
	Settings map[string]string `json:"settings"`
}

// ConfigInfo is one configuration's servers.
type ConfigInfo struct {
	Name  string   `json:"name"`
	Store string   `json:"store"`
	URLs  []string `json:"urls"`
	PIDs  []int    `json:"pids"`
}

// ReplicaRow is one scenario on one configuration.
type ReplicaRow struct {
	Config string `json:"configuration"`
	Result
	// CPU of the PostgreSQL server's processes during the phase (0 for
	// SQLite, which runs inside the server; unknown with an external DSN).
	DBCPU       float64 `json:"db_cpu_s,omitempty"`
	DBCPUPerReq float64 `json:"db_cpu_us_per_req,omitempty"`
	// PGSessions is how many connections PostgreSQL accepted for the
	// database during the phase (pg_stat_database.sessions); -1 unknown.
	PGSessions int64 `json:"pg_sessions_opened"`
	// SentPerURL is how many timed-phase requests went to each URL.
	SentPerURL []int64 `json:"sent_per_url"`
}

// ReplicaRatio compares the configurations on one scenario.
type ReplicaRatio struct {
	Scenario string  `json:"scenario"`
	RPS      float64 `json:"rps_ratio"`       // PostgreSQL replicas ÷ SQLite
	P50      float64 `json:"p50_ratio"`       // likewise
	Clean    bool    `json:"both_clean"`      // both rows ran without errors
	Label    string  `json:"label,omitempty"` // "postgres-3 ÷ sqlite-1"
}

// roundRobin spreads requests over URLs in turn, like a load balancer
// without affinity, and counts what each received.
type roundRobin struct {
	urls []string
	next atomic.Uint64
	sent []atomic.Int64
}

func newRoundRobin(urls []string) *roundRobin {
	return &roundRobin{urls: urls, sent: make([]atomic.Int64, len(urls))}
}

// URL is the next URL in turn.
func (r *roundRobin) URL() string {
	i := (r.next.Add(1) - 1) % uint64(len(r.urls))
	r.sent[i].Add(1)
	return r.urls[i]
}

// Sent is how many requests each URL was given since the last reset.
func (r *roundRobin) Sent() []int64 {
	out := make([]int64, len(r.sent))
	for i := range r.sent {
		out[i] = r.sent[i].Load()
	}
	return out
}

func (r *roundRobin) reset() {
	for i := range r.sent {
		r.sent[i].Store(0)
	}
}

// deployment is one configuration under test.
type deployment struct {
	name   string
	procs  []*Proc
	dirs   []string // each server's data dir
	rr     *roundRobin
	fx     *Fixture
	signer *Signer
	pgDSN  string // "" for SQLite
	pgPID  int    // 0 when unknown
	seq    atomic.Int64
}

func (d *deployment) pids() []int {
	out := make([]int, len(d.procs))
	for i, p := range d.procs {
		out[i] = p.PID
	}
	return out
}

// source builds scenario name's requests for d, spread over its URLs.
func (d *deployment) source(ctx context.Context, name string, podBody []byte) (Source, error) {
	assocPath := "/clusters/" + ClusterName + "/pod-identity-associations"
	switch name {
	case PodRepeated:
		return func(int) (*http.Request, bool, error) {
			r, err := d.signer.JSON(ctx, d.rr.URL(), "/clusters/"+ClusterName+"/assume-role-for-pod-identity", "eks-auth", podBody)
			return r, true, err
		}, nil
	case AssocDescribe:
		return func(int) (*http.Request, bool, error) {
			r, err := d.signer.Get(ctx, d.rr.URL(), assocPath+"/"+d.fx.AssociationID, "eks")
			return r, true, err
		}, nil
	case AssocList:
		q := fmt.Sprintf("?maxResults=%d&namespace=%s", listSize*5, listNamespace)
		return func(int) (*http.Request, bool, error) {
			r, err := d.signer.Get(ctx, d.rr.URL(), assocPath+q, "eks")
			return r, true, err
		}, nil
	case AssocCreate:
		return func(int) (*http.Request, bool, error) {
			body, err := d.createBody(createNamespace)
			if err != nil {
				return nil, true, err
			}
			r, err := d.signer.JSON(ctx, d.rr.URL(), assocPath, "eks", body)
			return r, true, err
		}, nil
	}
	return nil, fmt.Errorf("loadgen: no replica scenario %q", name)
}

// createBody is a CreatePodIdentityAssociation for a service account not
// used before, with the idempotency token an SDK fills in.
func (d *deployment) createBody(namespace string) ([]byte, error) {
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return nil, fmt.Errorf("loadgen: request token: %w", err)
	}
	return json.Marshal(map[string]string{
		"namespace": namespace, "serviceAccount": "sa-" + strconv.FormatInt(d.seq.Add(1), 10),
		"roleArn": d.fx.PodRole, "clientRequestToken": hex.EncodeToString(tok),
	})
}

// RunReplicas measures, in one invocation, one podid server over its
// default embedded SQLite store beside o.Replicas servers sharing one
// PostgreSQL database, the load spread round-robin over the replicas. The
// two configurations run each scenario in turn, so both see the machine in
// the same minute.
func RunReplicas(ctx context.Context, o ReplicaOptions) (rep *ReplicaReport, err error) {
	if o.Replicas < 1 || o.Replicas > 16 {
		return nil, fmt.Errorf("loadgen: replicas must be 1..16, have %d", o.Replicas)
	}
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.Duration <= 0 {
		o.Duration = DefaultDuration
	}
	if o.Workers > MaxWorkers || o.Duration > MaxDuration || o.Warmup > MaxDuration || o.Warmup < 0 {
		return nil, fmt.Errorf("loadgen: at most %d workers and %s per phase", MaxWorkers, MaxDuration)
	}
	for _, n := range o.Scenarios {
		if !slices.Contains(ReplicaScenarios, n) {
			return nil, fmt.Errorf("loadgen: unknown replica scenario %q (have %s)", n, strings.Join(ReplicaScenarios, ", "))
		}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	log := o.Log
	rep = &ReplicaReport{Machine: machine(), Command: strings.Join(os.Args, " "), Revision: o.Revision,
		Workers: o.Workers, DurationS: o.Duration.Seconds(), WarmupS: o.Warmup.Seconds()}

	// Everything started here is stopped here, by PID, servers before
	// the database they use.
	var procs []*Proc
	var pg *pgtest.Server
	defer func() {
		for i := len(procs) - 1; i >= 0; i-- {
			if serr := procs[i].Stop(); serr != nil {
				log.Warn("stop server", "name", procs[i].Name, "pid", procs[i].PID, "error", serr)
			}
		}
		if pg != nil {
			if serr := pg.Stop(); serr != nil {
				err = errors.Join(err, fmt.Errorf("stop postgres (pid %d): %w", pg.PID(), serr))
			}
		}
	}()

	dsn := o.StoreDSN
	pgPID := 0
	if dsn == "" {
		if pg, err = pgtest.StartServer(pgtest.ServerOptions{Durable: !o.PGFast}); err != nil {
			return nil, fmt.Errorf("start private postgres: %w", err)
		}
		pgPID = pg.PID()
		if dsn, err = pg.CreateDatabase("podid_bench"); err != nil {
			return nil, fmt.Errorf("create the bench database: %w", err)
		}
		rep.Postgres.Source = fmt.Sprintf("private server on 127.0.0.1 started by the bench (pid %d), settings %s",
			pgPID, strings.Join(pg.Settings(), " "))
		log.Info("postgres started", "pid", pgPID)
	} else {
		rep.Postgres.Source = "given by -store (an empty database)"
	}
	if err := describePostgres(ctx, dsn, &rep.Postgres); err != nil {
		return nil, err
	}

	is, err := StartIssuer(o.WorkDir)
	if err != nil {
		return nil, fmt.Errorf("start OIDC issuer: %w", err)
	}
	defer is.Close()
	clusterKey, err := NewKeyPair("bench-cluster-1")
	if err != nil {
		return nil, fmt.Errorf("cluster key: %w", err)
	}

	// (a) one server, embedded SQLite, as `podid server` by default.
	lite := &deployment{name: ConfigSQLite}
	dir := filepath.Join(o.WorkDir, ConfigSQLite)
	p, err := StartSelfChild(KindPodid, mkdir(dir), "-data-dir", filepath.Join(dir, "data"), "-oidc-ca-file", is.CAFile)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", ConfigSQLite, err)
	}
	procs = append(procs, p)
	lite.procs, lite.dirs = []*Proc{p}, []string{filepath.Join(dir, "data")}
	if err := p.WaitReady("/readyz", 60*time.Second); err != nil {
		return nil, err
	}

	// (b) replicas over one PostgreSQL database: one master key file, one
	// account; started one after another, so the first creates the sealing
	// key and the admin key and the others find them.
	replicas := &deployment{name: ConfigPostgres(o.Replicas), pgDSN: dsn, pgPID: pgPID}
	keyFile := filepath.Join(o.WorkDir, "master.key")
	if err := writeMasterKey(keyFile); err != nil {
		return nil, err
	}
	for i := 1; i <= o.Replicas; i++ {
		dir := filepath.Join(o.WorkDir, fmt.Sprintf("%s-replica-%d", replicas.name, i))
		p, err := StartSelfChild(KindPodid, mkdir(dir), "-data-dir", filepath.Join(dir, "data"), "-oidc-ca-file", is.CAFile,
			"-store", dsn, "-master-key-file", keyFile)
		if err != nil {
			return nil, fmt.Errorf("start replica %d: %w", i, err)
		}
		procs = append(procs, p)
		replicas.procs = append(replicas.procs, p)
		replicas.dirs = append(replicas.dirs, filepath.Join(dir, "data"))
		if err := p.WaitReady("/readyz", 60*time.Second); err != nil {
			return nil, fmt.Errorf("replica %d: %w", i, err)
		}
	}

	for _, d := range []*deployment{lite, replicas} {
		if err := prepare(ctx, d, is, clusterKey); err != nil {
			return nil, fmt.Errorf("%s: %w", d.name, err)
		}
		store := "SQLite at DATA-DIR/podid.db (the default)"
		if d.pgDSN != "" {
			store = "one PostgreSQL database shared by every replica"
		}
		rep.Configs = append(rep.Configs, ConfigInfo{Name: d.name, Store: store, URLs: d.rr.urls, PIDs: d.pids()})
		log.Info("configuration ready", "name", d.name, "urls", d.rr.urls, "pids", d.pids())
	}

	token, err := clusterKey.PodToken(0)
	if err != nil {
		return nil, fmt.Errorf("pod token: %w", err)
	}
	podBody, _ := json.Marshal(map[string]string{"token": token})

	rep.Machine.LoadAvgBefore = LoadAvg()
	for _, name := range ReplicaScenarios {
		if len(o.Scenarios) > 0 && !slices.Contains(o.Scenarios, name) {
			continue
		}
		var pair []ReplicaRow
		for _, d := range []*deployment{lite, replicas} {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			src, err := d.source(ctx, name, podBody)
			if err != nil {
				return rep, err
			}
			row := runReplicaPhase(ctx, o, d, name, src)
			rep.Rows = append(rep.Rows, row)
			pair = append(pair, row)
		}
		rep.Ratios = append(rep.Ratios, ratio(name, pair[0], pair[1]))
	}
	rep.Machine.LoadAvgAfter = LoadAvg()
	return rep, nil
}

func mkdir(dir string) string {
	_ = os.MkdirAll(dir, 0o755) // StartSelfChild reports a failure to log there
	return dir
}

// writeMasterKey writes the 32-byte master key every replica reads
// (--master-key-file is never created by the server).
func writeMasterKey(path string) error {
	key := make([]byte, secretbox.KeySize)
	if _, err := rand.Read(key); err != nil {
		return fmt.Errorf("master key: %w", err)
	}
	if err := os.WriteFile(path, key, 0o600); err != nil {
		return fmt.Errorf("master key: %w", err)
	}
	return nil
}

// prepare reads the admin key of d's first server, checks the others have
// the same one (they share the store), and creates the fixture through the
// first server: roles, cluster, the association Describe reads and the
// page List returns.
func prepare(ctx context.Context, d *deployment, is *Issuer, clusterKey *KeyPair) error {
	var urls []string
	var admin aws.Credentials
	for i, p := range d.procs {
		urls = append(urls, p.URL)
		c, err := readAdminCredentials(d.dirs[i])
		if err != nil {
			return fmt.Errorf("admin credentials of %s: %w", p.URL, err)
		}
		if i == 0 {
			admin = c
		} else if c.AccessKeyID != admin.AccessKeyID {
			return fmt.Errorf("replica %d has admin key %s, replica 1 %s: the store is not shared", i+1, c.AccessKeyID, admin.AccessKeyID)
		}
	}
	d.rr = newRoundRobin(urls)
	d.signer = NewSigner(admin)
	fx, err := SetupPodid(ctx, urls[0], admin, is, clusterKey)
	if err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	d.fx = fx
	for range listSize {
		body, err := d.createBody(listNamespace)
		if err != nil {
			return err
		}
		req, err := d.signer.JSON(ctx, urls[0], "/clusters/"+ClusterName+"/pod-identity-associations", "eks", body)
		if err != nil {
			return err
		}
		if err := do(req); err != nil {
			return fmt.Errorf("create the associations List reads: %w", err)
		}
	}
	return nil
}

func do(req *http.Request) error {
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", resp.Status, truncate(b, 400))
	}
	return nil
}

// runReplicaPhase is runScenario for a configuration of one or more
// servers: a sanity request, the warm-up, then the timed phase with the CPU
// of every server (and of PostgreSQL when it runs here) measured.
func runReplicaPhase(ctx context.Context, o ReplicaOptions, d *deployment, name string, src Source) ReplicaRow {
	row := ReplicaRow{Config: d.name, Result: Result{Scenario: name, Target: "podid", Workers: o.Workers}, PGSessions: -1}
	if err := sanity(ctx, src); err != nil {
		row.Note = "NOT RUN: sanity request failed: " + err.Error()
		row.Errors, row.Failed = map[string]int64{"sanity": 1}, 1
		o.Log.Error("scenario not run", "scenario", name, "configuration", d.name, "error", err)
		return row
	}
	client := NewClient(o.Workers)
	defer client.CloseIdleConnections()
	if o.Warmup > 0 {
		if _, err := Run(ctx, Config{Workers: o.Workers, Duration: o.Warmup}, client, src); err != nil {
			row.Note = "NOT RUN: " + err.Error()
			return row
		}
	}
	d.rr.reset()
	var sessions *sessionCounter
	if d.pgDSN != "" {
		sessions = newSessionCounter(ctx, d.pgDSN)
		defer sessions.close()
	}
	sessBefore := sessions.read(ctx)
	var dbBefore time.Duration
	if d.pgPID > 0 {
		dbBefore, _ = ProcessTreeCPU(d.pgPID)
	}
	r, err := Run(ctx, Config{Workers: o.Workers, Duration: o.Duration, ServerPIDs: d.pids()}, client, src)
	if err != nil {
		row.Note = "NOT RUN: " + err.Error()
		return row
	}
	if d.pgPID > 0 {
		if after, err := ProcessTreeCPU(d.pgPID); err == nil {
			row.DBCPU = (after - dbBefore).Seconds()
			if r.OK > 0 {
				row.DBCPUPerReq = row.DBCPU / float64(r.OK) * 1e6
			}
		}
	}
	if sessBefore >= 0 {
		if after := sessions.read(ctx); after >= 0 {
			row.PGSessions = after - sessBefore
		}
	}
	r.Scenario, r.Target = name, "podid"
	row.Result, row.SentPerURL = r, d.rr.Sent()
	o.Log.Info("phase done", "scenario", name, "configuration", d.name, "rps", int(r.RPS),
		"p50_ms", r.P50us/1e3, "p99_ms", r.P99us/1e3, "errors", r.Failed,
		"server_cpu_us_per_req", int(r.ServerCPUPerReq), "db_cpu_us_per_req", int(row.DBCPUPerReq),
		"pg_sessions", row.PGSessions, "sent_per_url", row.SentPerURL, "load", r.LoadAvgAfter)
	if r.Failed > 0 {
		o.Log.Error("FAILED REQUESTS", "scenario", name, "configuration", d.name, "failed", r.Failed, "errors", r.Errors)
	}
	return row
}

// statsSettle is how long a session count waits for backends to report.
var statsSettle = 1100 * time.Millisecond

// sessionCounter reads pg_stat_database.sessions (connections PostgreSQL
// accepted for a database) over one connection it keeps, so that reading
// does not count. A nil counter, or one that failed, reads -1.
type sessionCounter struct {
	conn *pgx.Conn
}

func newSessionCounter(ctx context.Context, dsn string) *sessionCounter {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, dsn)
	if err != nil {
		return nil
	}
	return &sessionCounter{conn: conn}
}

func (c *sessionCounter) read(ctx context.Context) int64 {
	if c == nil || c.conn == nil {
		return -1
	}
	// Backends report their connection to the cumulative statistics when
	// they first go idle, at most once a second: give new ones a moment.
	time.Sleep(statsSettle)
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var n int64
	if err := c.conn.QueryRow(qctx, "SELECT sessions FROM pg_stat_database WHERE datname = current_database()").Scan(&n); err != nil {
		return -1 // PostgreSQL before 14 has no sessions column
	}
	return n
}

func (c *sessionCounter) close() {
	if c != nil && c.conn != nil {
		c.conn.Close(context.Background())
	}
}

// describePostgres records the server's version and the settings that
// decide write latency.
func describePostgres(ctx context.Context, dsn string, info *PostgresInfo) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(cctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to postgres: %w", err)
	}
	defer conn.Close(context.Background())
	var migrated *string
	if err := conn.QueryRow(cctx, "SELECT to_regclass('schema_migrations')::text").Scan(&migrated); err != nil {
		return fmt.Errorf("inspect postgres: %w", err)
	}
	if migrated != nil {
		return errors.New("the postgres database is not empty (it has schema_migrations): give the bench an empty one")
	}
	info.Settings = map[string]string{}
	for _, s := range []string{"server_version", "fsync", "synchronous_commit", "full_page_writes", "wal_sync_method", "shared_buffers", "max_connections"} {
		var v string
		if err := conn.QueryRow(cctx, "SELECT current_setting($1)", s).Scan(&v); err != nil {
			return fmt.Errorf("postgres setting %s: %w", s, err)
		}
		if s == "server_version" {
			info.Version = v
			continue
		}
		info.Settings[s] = v
	}
	return nil
}

func ratio(name string, lite, pg ReplicaRow) ReplicaRatio {
	r := ReplicaRatio{Scenario: name, Label: pg.Config + " ÷ " + lite.Config,
		Clean: lite.OK > 0 && pg.OK > 0 && lite.Failed == 0 && pg.Failed == 0}
	if lite.RPS > 0 {
		r.RPS = pg.RPS / lite.RPS
	}
	if lite.P50us > 0 {
		r.P50 = pg.P50us / lite.P50us
	}
	return r
}

// HasErrors reports whether any request failed.
func (r *ReplicaReport) HasErrors() bool {
	for _, x := range r.Rows {
		if x.Failed > 0 {
			return true
		}
	}
	return false
}

// Markdown renders the comparison as tables.
func (r *ReplicaReport) Markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "Machine: nproc %d, %s, %s, Linux %s, %s; load average %s before, %s after.\n\n",
		r.Machine.NumCPU, r.Machine.CPUModel, r.Machine.GoVersion, r.Machine.Kernel, r.Machine.Date,
		r.Machine.LoadAvgBefore, r.Machine.LoadAvgAfter)
	fmt.Fprintf(&b, "PostgreSQL %s: %s; fsync=%s synchronous_commit=%s full_page_writes=%s.\n\n",
		r.Postgres.Version, r.Postgres.Source, r.Postgres.Settings["fsync"], r.Postgres.Settings["synchronous_commit"],
		r.Postgres.Settings["full_page_writes"])
	fmt.Fprintf(&b, "%d workers, %.0f s timed phase after %.0f s of warm-up per row; revision %s.\n\n",
		r.Workers, r.DurationS, r.WarmupS, r.Revision)
	for _, c := range r.Configs {
		fmt.Fprintf(&b, "- `%s`: %d server(s), %s — %s (pids %s)\n", c.Name, len(c.URLs), c.Store,
			strings.Join(c.URLs, ", "), joinInts(c.PIDs))
	}
	b.WriteString("\n| scenario | configuration | req/s | p50 ms | p90 ms | p99 ms | max ms | errors | server CPU µs/req | PostgreSQL CPU µs/req | PG connections opened | requests per server | load avg after |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|\n")
	for _, x := range r.Rows {
		if x.OK == 0 {
			fmt.Fprintf(&b, "| %s | %s | – | – | – | – | – | **%d** | – | – | – | – | %s |\n", x.Scenario, x.Config, x.Failed, x.Note)
			continue
		}
		errs := "0"
		if x.Failed > 0 {
			errs = fmt.Sprintf("**%d**", x.Failed)
		}
		db, sess := "–", "–"
		if x.DBCPU > 0 {
			db = fmt.Sprintf("%.0f", x.DBCPUPerReq)
		}
		if x.PGSessions >= 0 {
			sess = strconv.FormatInt(x.PGSessions, 10)
		}
		sent := make([]string, len(x.SentPerURL))
		for i, n := range x.SentPerURL {
			sent[i] = strconv.FormatInt(n, 10)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.3f | %.3f | %.3f | %.1f | %s | %.0f | %s | %s | %s | %s |\n",
			x.Scenario, x.Config, x.RPS, x.P50us/1e3, x.P90us/1e3, x.P99us/1e3, x.MaxUs/1e3, errs,
			x.ServerCPUPerReq, db, sess, strings.Join(sent, " / "), x.LoadAvgAfter)
	}
	b.WriteString("\n| scenario | req/s ratio | p50 ratio | |\n|---|---:|---:|---|\n")
	for _, x := range r.Ratios {
		verdict := "both clean"
		if !x.Clean {
			verdict = "**not clean: see errors**"
		}
		fmt.Fprintf(&b, "| %s | %.2f× | %.2f× | %s, %s |\n", x.Scenario, x.RPS, x.P50, x.Label, verdict)
	}
	var loud []string
	for _, x := range r.Rows {
		keys := make([]string, 0, len(x.Errors))
		for k := range x.Errors {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			loud = append(loud, fmt.Sprintf("- **%s on %s: %d × %s** — %s", x.Scenario, x.Config, x.Errors[k], k, x.ErrorSamples[k]))
		}
	}
	if len(loud) > 0 {
		b.WriteString("\n**THIS RUN HAD ERRORS:**\n\n" + strings.Join(loud, "\n") + "\n")
	}
	return b.String()
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}
