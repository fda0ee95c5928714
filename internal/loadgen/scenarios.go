package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// Scenario names, in the order a full run measures them.
const (
	Noop           = "noop"
	NoopC1         = "noop-c1"
	GCI            = "get-caller-identity"
	GCISession     = "get-caller-identity-session"
	AssumeRole     = "assume-role"
	WebIdentity    = "assume-role-with-web-identity"
	PodRepeated    = "assume-role-for-pod-identity-repeated"
	PodRepeatedC1  = "assume-role-for-pod-identity-repeated-c1"
	PodFresh       = "assume-role-for-pod-identity-fresh"
	MotoGCI        = "moto-get-caller-identity"
	MotoAssumeRole = "moto-assume-role"
	MotoWeb        = "moto-assume-role-with-web-identity"
)

// AllScenarios is every scenario, in run order.
// The -c1 rows run one worker: with 64 requests always in flight a closed
// loop's mean latency is 64 / throughput (Little's law), so latency without
// queueing needs its own row.
var AllScenarios = []string{Noop, NoopC1, GCI, GCISession, AssumeRole, WebIdentity, PodRepeated, PodRepeatedC1, PodFresh, MotoGCI, MotoAssumeRole, MotoWeb}

// Options configure RunAll.
type Options struct {
	Workers   int
	Duration  time.Duration
	Warmup    time.Duration
	Scenarios []string // empty: all
	// WorkDir holds data dirs and child logs; ProfileDir, if set, receives
	// one server CPU profile per podid/noop scenario.
	WorkDir    string
	ProfileDir string
	// PodidBin, if set, runs this `podid` binary as the server instead of
	// the profiled self-child (no profiles then).
	PodidBin       string
	MotoCommand    string // "" skips the moto scenarios
	MaxFreshTokens int
	Revision       string
	Log            io.Writer
}

// Report is one invocation's results.
type Report struct {
	Machine      Machine  `json:"machine"`
	Command      string   `json:"command"`
	Revision     string   `json:"revision"` // the podid commit measured
	ProcessModel string   `json:"process_model"`
	Workers      int      `json:"workers"`
	DurationS    float64  `json:"duration_s"`
	WarmupS      float64  `json:"warmup_s"`
	Results      []Result `json:"results"`
	Checks       []Check  `json:"checks"`
}

// Machine describes where the run happened.
type Machine struct {
	NumCPU        int    `json:"nproc"`
	CPUModel      string `json:"cpu_model"`
	GoVersion     string `json:"go_version"`
	Kernel        string `json:"kernel"`
	Date          string `json:"date"`
	LoadAvgBefore string `json:"loadavg_before"`
	LoadAvgAfter  string `json:"loadavg_after"`
}

// Check is one target from the issues, judged within this run.
type Check struct {
	Name     string  `json:"name"`
	Target   string  `json:"target"`
	Measured string  `json:"measured"`
	Value    float64 `json:"value"`
	Met      bool    `json:"met"`
	Missing  bool    `json:"missing,omitempty"` // a scenario it needs did not run cleanly
}

// scenario is one row of the run.
type scenario struct {
	name, target string
	workers      int // 0: Options.Workers
	proc         *Proc
	src          Source // the timed phase
	warm         Source // warm-up and sanity request; nil: src
	note         string
	prepare      func(prev map[string]Result) (Source, string, error) // builds src late (fresh tokens)
}

// RunAll runs the selected scenarios once each, in one process, so that
// every ratio compares figures from the same run.
func RunAll(ctx context.Context, o Options) (*Report, error) {
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	if o.Duration <= 0 {
		o.Duration = DefaultDuration
	}
	if o.Duration > MaxDuration || o.Warmup > MaxDuration || o.Warmup < 0 {
		return nil, fmt.Errorf("duration and warm-up must be at most %s", MaxDuration)
	}
	if o.Workers > MaxWorkers {
		return nil, fmt.Errorf("at most %d workers", MaxWorkers)
	}
	if o.MaxFreshTokens <= 0 {
		o.MaxFreshTokens = 150_000
	}
	if o.Log == nil {
		o.Log = io.Discard
	}
	want := func(names ...string) bool {
		if len(o.Scenarios) == 0 {
			return true
		}
		for _, n := range names {
			if slices.Contains(o.Scenarios, n) {
				return true
			}
		}
		return false
	}
	for _, n := range o.Scenarios {
		if !slices.Contains(AllScenarios, n) {
			return nil, fmt.Errorf("unknown scenario %q (have %s)", n, strings.Join(AllScenarios, ", "))
		}
	}
	logf := func(format string, args ...any) { fmt.Fprintf(o.Log, format+"\n", args...) }

	rep := &Report{Machine: machine(), Workers: o.Workers, DurationS: o.Duration.Seconds(), WarmupS: o.Warmup.Seconds()}
	rep.Command, rep.Revision = strings.Join(os.Args, " "), o.Revision
	var procs []*Proc
	defer func() {
		for _, p := range procs {
			if err := p.Stop(); err != nil {
				logf("stop %s (pid %d): %v", p.Name, p.PID, err)
			}
		}
	}()

	is, err := StartIssuer(o.WorkDir)
	if err != nil {
		return nil, err
	}
	defer is.Close()

	var noop, podid, moto *Proc
	if want(Noop, NoopC1) {
		if noop, err = StartSelfChild(KindNoop, o.WorkDir); err != nil {
			return nil, err
		}
		procs = append(procs, noop)
		if err := noop.WaitReady("/", 20*time.Second); err != nil {
			return nil, err
		}
	}
	dataDir := filepath.Join(o.WorkDir, "podid-data")
	if o.PodidBin != "" {
		podid, err = StartPodidBinary(o.PodidBin, dataDir, is.CAFile, o.WorkDir)
		rep.ProcessModel = "separate processes: load generator; `podid server` binary " + o.PodidBin + "; do-nothing handler in a child process"
	} else {
		podid, err = StartSelfChild(KindPodid, o.WorkDir, "-data-dir", dataDir, "-oidc-ca-file", is.CAFile)
		rep.ProcessModel = "separate processes: load generator; podid server (server.New + ListenAndServe, as `podid server`) in a child process; do-nothing net/http handler in a child process built the same way"
	}
	if err != nil {
		return nil, err
	}
	procs = append(procs, podid)
	if err := podid.WaitReady("/readyz", 60*time.Second); err != nil {
		return nil, err
	}
	admin, err := readAdminCredentials(dataDir)
	if err != nil {
		return nil, err
	}
	clusterKey, err := NewKeyPair("bench-cluster-1")
	if err != nil {
		return nil, err
	}
	fx, err := SetupPodid(ctx, podid.URL, admin, is, clusterKey)
	if err != nil {
		return nil, fmt.Errorf("podid setup: %w", err)
	}
	logf("podid pid %d at %s; noop pid %d", podid.PID, podid.URL, pidOf(noop))

	var motoFx *Fixture
	if o.MotoCommand != "" && want(MotoGCI, MotoAssumeRole, MotoWeb) {
		if moto, err = StartMoto(o.MotoCommand, o.WorkDir); err != nil {
			return nil, err
		}
		procs = append(procs, moto)
		if err := moto.WaitReady("/moto-api/", 60*time.Second); err != nil {
			return nil, err
		}
		if motoFx, err = SetupMoto(ctx, moto.URL, is, fx.WebToken); err != nil {
			return nil, fmt.Errorf("moto setup: %w", err)
		}
		logf("moto_server pid %d at %s", moto.PID, moto.URL)
	}

	// Session credentials for GetCallerIdentity with an ASIA key, through
	// the SDK's own STS client.
	var session aws.Credentials
	if want(GCISession) {
		stc := sts.New(sts.Options{Region: Region, BaseEndpoint: aws.String(fx.URL), RetryMaxAttempts: 1,
			Credentials: credentials.NewStaticCredentialsProvider(admin.AccessKeyID, admin.SecretAccessKey, "")})
		out, err := stc.AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String(fx.AssumeRole), RoleSessionName: aws.String(SessionName)})
		if err != nil {
			return nil, fmt.Errorf("assume role for session credentials: %w", err)
		}
		session = aws.Credentials{AccessKeyID: aws.ToString(out.Credentials.AccessKeyId),
			SecretAccessKey: aws.ToString(out.Credentials.SecretAccessKey), SessionToken: aws.ToString(out.Credentials.SessionToken)}
	}

	gciBody := []byte(url.Values{"Action": {"GetCallerIdentity"}, "Version": {"2011-06-15"}}.Encode())
	assumeBody := func(f *Fixture) []byte {
		return []byte(url.Values{"Action": {"AssumeRole"}, "Version": {"2011-06-15"}, "RoleArn": {f.AssumeRole}, "RoleSessionName": {SessionName}}.Encode())
	}
	webBody := func(f *Fixture) []byte {
		return []byte(url.Values{"Action": {"AssumeRoleWithWebIdentity"}, "Version": {"2011-06-15"}, "RoleArn": {f.WebRole},
			"RoleSessionName": {SessionName}, "WebIdentityToken": {f.WebToken}}.Encode())
	}
	podPath := "/clusters/" + ClusterName + "/assume-role-for-pod-identity"
	repeatedToken, err := clusterKey.PodToken(0)
	if err != nil {
		return nil, err
	}
	repeatedBody, _ := json.Marshal(map[string]string{"token": repeatedToken})

	adminSigner, sessionSigner, unsigned := NewSigner(admin), NewSigner(session), NewSigner(aws.Credentials{})
	query := func(s *Signer, endpoint, service string, body []byte) Source {
		return func(int) (*http.Request, bool, error) {
			r, err := s.Query(ctx, endpoint, service, body)
			return r, true, err
		}
	}
	podSrc := func(body []byte) Source {
		return func(int) (*http.Request, bool, error) {
			r, err := adminSigner.JSON(ctx, fx.URL, podPath, "eks-auth", body)
			return r, true, err
		}
	}

	var scens []scenario
	if noop != nil {
		scens = append(scens, scenario{name: Noop, target: "noop", proc: noop, src: query(adminSigner, noop.URL, "sts", gciBody),
			note: "the same signed GetCallerIdentity request, answered 200 by an empty handler"},
			scenario{name: NoopC1, target: "noop", workers: 1, proc: noop, src: query(adminSigner, noop.URL, "sts", gciBody), note: "one worker"})
	}
	scens = append(scens,
		scenario{name: GCI, target: "podid", proc: podid, src: query(adminSigner, fx.URL, "sts", gciBody), note: "long-term AKIA key (secret cached 15 s)"},
		scenario{name: GCISession, target: "podid", proc: podid, src: query(sessionSigner, fx.URL, "sts", gciBody), note: "ASIA key + sealed session token"},
		scenario{name: AssumeRole, target: "podid", proc: podid, src: query(adminSigner, fx.URL, "sts", assumeBody(fx))},
		scenario{name: WebIdentity, target: "podid", proc: podid, src: query(unsigned, fx.URL, "sts", webBody(fx)), note: "unsigned; RS256 token verified against the HTTPS issuer's cached JWKS"},
		scenario{name: PodRepeated, target: "podid", proc: podid, src: podSrc(repeatedBody), note: "one pod token reused"},
		scenario{name: PodRepeatedC1, target: "podid", workers: 1, proc: podid, src: podSrc(repeatedBody), note: "one pod token reused; one worker"},
		scenario{name: PodFresh, target: "podid", proc: podid, warm: podSrc(repeatedBody),
			prepare: func(prev map[string]Result) (Source, string, error) {
				n := o.MaxFreshTokens
				if r, ok := prev[PodRepeated]; ok && r.RPS > 0 {
					// Twice the repeated rate; the phase ends early (and
					// says so) if the pool still runs out.
					n = min(n, int(r.RPS*o.Duration.Seconds()*2)+o.Workers)
				}
				t0 := time.Now()
				toks, err := clusterKey.PodTokens(n)
				if err != nil {
					return nil, "", err
				}
				bodies := make([][]byte, n)
				for i, t := range toks {
					bodies[i], _ = json.Marshal(map[string]string{"token": t})
				}
				logf("  signed %d fresh pod tokens in %s (before the timed phase)", n, time.Since(t0).Round(time.Millisecond))
				var next atomic.Int64
				return func(int) (*http.Request, bool, error) {
					i := next.Add(1) - 1
					if i >= int64(len(bodies)) {
						return nil, false, nil
					}
					r, err := adminSigner.JSON(ctx, fx.URL, podPath, "eks-auth", bodies[i])
					return r, true, err
				}, fmt.Sprintf("a distinct pod token per request (pool of %d signed beforehand)", n), nil
			}},
	)
	if motoFx != nil {
		motoSigner := NewSigner(motoFx.Admin)
		note := "moto checks no signature and no token"
		scens = append(scens,
			scenario{name: MotoGCI, target: "moto", proc: moto, src: query(motoSigner, moto.URL, "sts", gciBody), note: note},
			scenario{name: MotoAssumeRole, target: "moto", proc: moto, src: query(motoSigner, moto.URL, "sts", assumeBody(motoFx)), note: note},
			scenario{name: MotoWeb, target: "moto", proc: moto, src: query(unsigned, moto.URL, "sts", webBody(motoFx)), note: note},
		)
	}

	rep.Machine.LoadAvgBefore = LoadAvg()
	done := map[string]Result{}
	for _, sc := range scens {
		if !want(sc.name) {
			continue
		}
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
		res := runScenario(ctx, o, sc, done, logf)
		done[sc.name] = res
		rep.Results = append(rep.Results, res)
	}
	rep.Machine.LoadAvgAfter = LoadAvg()
	rep.Checks = checks(done)
	return rep, nil
}

func pidOf(p *Proc) int {
	if p == nil {
		return 0
	}
	return p.PID
}

func runScenario(ctx context.Context, o Options, sc scenario, prev map[string]Result, logf func(string, ...any)) Result {
	workers := o.Workers
	if sc.workers > 0 {
		workers = sc.workers
	}
	res := Result{Scenario: sc.name, Target: sc.target, Workers: workers, Note: sc.note}
	warm := sc.warm
	if warm == nil {
		warm = sc.src
	}
	// One request first: a scenario that cannot succeed is reported, not timed.
	if err := sanity(ctx, warm); err != nil {
		res.Note = "NOT RUN: sanity request failed: " + err.Error()
		res.Errors = map[string]int64{"sanity": 1}
		res.Failed = 1
		logf("%-40s %s", sc.name, res.Note)
		return res
	}
	client := NewClient(workers)
	defer client.CloseIdleConnections()
	if o.Warmup > 0 {
		if _, err := Run(ctx, Config{Workers: workers, Duration: o.Warmup}, client, warm); err != nil {
			res.Note = "NOT RUN: " + err.Error()
			return res
		}
	}
	src := sc.src
	if sc.prepare != nil {
		s, note, err := sc.prepare(prev)
		if err != nil {
			res.Note = "NOT RUN: " + err.Error()
			return res
		}
		src, res.Note = s, note
	}

	var wg sync.WaitGroup
	var profPath string
	if o.ProfileDir != "" && sc.proc.PprofURL != "" {
		profPath = filepath.Join(o.ProfileDir, sc.name+".pprof")
		wg.Go(func() {
			if err := sc.proc.Profile(ctx, max(1, int(o.Duration.Seconds())), profPath); err != nil {
				logf("  profile %s: %v", sc.name, err)
				profPath = ""
			}
		})
	}
	r, err := Run(ctx, Config{Workers: workers, Duration: o.Duration, ServerPID: sc.proc.PID}, client, src)
	wg.Wait()
	if err != nil {
		res.Note = "NOT RUN: " + err.Error()
		return res
	}
	r.Scenario, r.Target, r.Note, r.Profile = sc.name, sc.target, res.Note, profPath
	if r.Exhausted {
		r.Note += fmt.Sprintf("; TOKEN POOL EXHAUSTED after %.1f s, the phase ended early", r.Seconds)
	}
	logf("%-40s %9.0f req/s  p50 %7.3f ms  p99 %7.3f ms  errors %d  server %.0f µs CPU/req  load %s",
		sc.name, r.RPS, r.P50us/1e3, r.P99us/1e3, r.Failed, r.ServerCPUPerReq, r.LoadAvgAfter)
	if r.Failed > 0 {
		logf("  !!! %d FAILED REQUESTS in %s: %v", r.Failed, sc.name, r.Errors)
	}
	return r
}

func sanity(ctx context.Context, src Source) error {
	req, ok, err := src(0)
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("source empty")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: %s", resp.Status, truncate(b, 400))
	}
	return ctx.Err()
}

// checks judges the issues' targets on this run's figures only.
func checks(r map[string]Result) []Check {
	clean := func(name string) (Result, bool) {
		x, ok := r[name]
		return x, ok && x.OK > 0 && x.Failed == 0
	}
	var out []Check
	ratio := func(name, target string, num, den string, want float64) {
		a, ok1 := clean(num)
		b, ok2 := clean(den)
		c := Check{Name: name, Target: target}
		if !ok1 || !ok2 {
			c.Missing, c.Measured = true, "not measured cleanly in this run"
		} else {
			c.Value = a.RPS / b.RPS
			c.Measured = fmt.Sprintf("%.3f× (%.0f / %.0f req/s)", c.Value, a.RPS, b.RPS)
			c.Met = c.Value >= want
		}
		out = append(out, c)
	}
	ratio("GetCallerIdentity vs do-nothing handler", "≥ 0.5×", GCI, Noop, 0.5)
	ratio("AssumeRoleWithWebIdentity vs moto", "≥ 20×", WebIdentity, MotoWeb, 20)
	p50 := func(name, label string) {
		x, ok := clean(name)
		c := Check{Name: label, Target: "< 1 ms"}
		if !ok {
			c.Missing, c.Measured = true, "not measured cleanly in this run"
		} else {
			c.Value, c.Met = x.P50us/1e3, x.P50us < 1000
			c.Measured = fmt.Sprintf("%.3f ms (%d workers)", c.Value, x.Workers)
		}
		out = append(out, c)
	}
	rps := func(name, label string) {
		x, ok := clean(name)
		c := Check{Name: label, Target: "≥ 5,000 req/s"}
		if !ok {
			c.Missing, c.Measured = true, "not measured cleanly in this run"
		} else {
			c.Value, c.Met = x.RPS, x.RPS >= 5000
			c.Measured = fmt.Sprintf("%.0f req/s (%d workers)", x.RPS, x.Workers)
		}
		out = append(out, c)
	}
	p50(PodRepeatedC1, "AssumeRoleForPodIdentity, repeated token: p50 with one worker")
	p50(PodRepeated, "AssumeRoleForPodIdentity, repeated token: p50 at saturation")
	rps(PodRepeated, "AssumeRoleForPodIdentity, repeated token: throughput")
	p50(PodFresh, "AssumeRoleForPodIdentity, fresh tokens: p50 at saturation")
	rps(PodFresh, "AssumeRoleForPodIdentity, fresh tokens: throughput")
	return out
}

func machine() Machine {
	m := Machine{NumCPU: runtime.NumCPU(), GoVersion: runtime.Version(), Date: time.Now().UTC().Format(time.RFC3339)}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}
