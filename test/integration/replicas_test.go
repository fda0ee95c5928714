package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	jose "github.com/go-jose/go-jose/v4"

	podideks "github.com/podid/podid/internal/eks"
	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/server/servertest"
	"github.com/podid/podid/internal/store/pgtest"
)

// buildPodid builds the podid binary for tests that run it as processes.
func buildPodid(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "podid")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/podid/podid/cmd/podid").CombinedOutput(); err != nil {
		t.Fatalf("go build podid: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a loopback address nothing listens on just now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// process is a podid child process; its output goes to a log file that a
// failing test prints.
type process struct {
	name, logPath string
	cmd           *exec.Cmd
	done          chan struct{}
}

func startProcess(t *testing.T, name, bin string, env []string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.Env = env
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); logFile.Close(); close(p.done) }()
	t.Cleanup(func() {
		p.signal(syscall.SIGKILL)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			if len(b) > 4000 {
				b = b[len(b)-4000:]
			}
			t.Logf("--- %s log (tail):\n%s", name, b)
		}
	})
	return p
}

// signal sends sig to the process (by its PID) and waits for it to end.
func (p *process) signal(sig syscall.Signal) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// waitHTTP200 polls url until it answers 200.
func waitHTTP200(t *testing.T, p *process, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("%s exited before %s answered", p.name, url)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: %s not ready after 30 s", p.name, url)
}

// countLines counts the lines of path that contain s.
func countLines(t *testing.T, path, s string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			n++
		}
	}
	return n
}

// replica is one `podid server` process of the three.
type replica struct {
	*servertest.Instance // URL and admin credentials; no in-process server
	addr, dir            string
	proc                 *process
}

// Three `podid server` processes on one PostgreSQL database, with three
// `podid agent` processes given all three URLs, under steady load of
// credential requests (each with a fresh pod token, so every one reaches a
// server). One replica is killed with SIGKILL mid-load, then another is
// stopped and restarted on its address; no credential request may fail.
// Associations created on one replica are honoured by the others within
// 1 s, and their deletion too.
func TestReplicasOnPostgres(t *testing.T) {
	dsn := pgtest.Start(t)
	bin := buildPodid(t)
	keyFile := servertest.MasterKeyFile(t)
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true"}

	startReplica := func(r *replica, i int) {
		t.Helper()
		r.proc = startProcess(t, fmt.Sprintf("server-%d", i), bin, env, "server", "--listen", r.addr, "--data-dir", r.dir,
			"--store", dsn, "--master-key-file", keyFile, "--account-id", account)
		waitHTTP200(t, r.proc, "http://"+r.addr+"/readyz")
	}
	// One at a time: the first creates the sealing key and the admin key
	// the others load.
	replicas := make([]*replica, 3)
	for i := range replicas {
		r := &replica{addr: freeAddr(t), dir: t.TempDir()}
		startReplica(r, i)
		id, secret, err := server.ReadAdminCredentials(filepath.Join(r.dir, "admin-credentials"))
		if err != nil {
			t.Fatal(err)
		}
		r.Instance = &servertest.Instance{URL: "http://" + r.addr, DataDir: r.dir, AccessKeyID: id, SecretAccessKey: secret,
			AuditPath: filepath.Join(r.dir, "audit.log")}
		if i > 0 && id != replicas[0].AccessKeyID {
			t.Fatalf("replicas disagree on the admin key: %s vs %s", id, replicas[0].AccessKeyID)
		}
		replicas[i] = r
	}

	a := replicas[0].Instance
	rsa, issuer := rsaKey(t), "https://replicas.issuer.test"
	registerCluster(t, a, podideks.RegisterClusterInput{Name: "rep", Issuer: issuer,
		JWKS: jwksOf(jose.JSONWebKey{Key: &rsa.PublicKey, KeyID: "k", Algorithm: "RS256", Use: "sig"})})
	ic, _ := adminClients(a)
	roleARN := createRole(t, ic, "app", podIdentityTrust())
	associate := func(inst *servertest.Instance, sa string) string {
		t.Helper()
		out, err := eksClient(inst).CreatePodIdentityAssociation(ctx(t), &eks.CreatePodIdentityAssociationInput{ClusterName: aws.String("rep"),
			Namespace: aws.String("default"), ServiceAccount: aws.String(sa), RoleArn: &roleARN})
		if err != nil {
			t.Fatalf("associate %s on %s: %v", sa, inst.URL, err)
		}
		return aws.ToString(out.Association.AssociationId)
	}
	associate(a, "app")

	var podSeq atomic.Int64
	token := func(sa string) string {
		return signJWT(t, rsa, "k", jose.RS256, podClaims(issuer, "default", sa, fmt.Sprintf("pod-%d", podSeq.Add(1))))
	}

	for _, r := range replicas {
		if got := podAssume(t, r.Instance, "rep", token("app")); got.status != http.StatusOK {
			t.Fatalf("replica %s before the load: HTTP %d %s: %s", r.addr, got.status, got.code, got.body)
		}
	}

	// Agents: real `podid agent` processes, each given the three URLs.
	urls := make([]string, len(replicas))
	for i, r := range replicas {
		urls[i] = r.URL
	}
	agentEnv := append(env[:len(env):len(env)], "AWS_ACCESS_KEY_ID="+a.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+a.SecretAccessKey)
	const agents = 3
	agentURLs := make([]string, agents)
	for k := range agents {
		bind, health := freeAddr(t), freeAddr(t)
		p := startProcess(t, fmt.Sprintf("agent-%d", k), bin, agentEnv, "agent", "--server", strings.Join(urls, ","),
			"--cluster", "rep", "--region", region, "--bind", bind, "--health-addr", health, "--metrics-addr", "",
			"--upstream-timeout", "2s")
		waitHTTP200(t, p, "http://"+health+"/readyz")
		agentURLs[k] = "http://" + bind + "/v1/credentials"
	}

	// Steady load: two pods' SDKs per agent, each asking every 10 ms.
	var ok, failed atomic.Int64
	var errMu sync.Mutex
	var errs []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 15 * time.Second}
	for k := range agents * 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				req, _ := http.NewRequest(http.MethodGet, agentURLs[k%agents], nil)
				req.Header.Set("Authorization", token("app"))
				resp, err := client.Do(req)
				var body []byte
				if err == nil {
					body, _ = io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK && strings.Contains(string(body), `"AccessKeyId"`) {
						ok.Add(1)
						continue
					}
					err = fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
				}
				failed.Add(1)
				errMu.Lock()
				if len(errs) < 10 {
					errs = append(errs, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), err))
				}
				errMu.Unlock()
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad)

	// served counts, per replica, the pod credential calls its audit log has.
	served := func() []int {
		out := make([]int, len(replicas))
		for i, r := range replicas {
			out[i] = countLines(t, r.AuditPath, `"AssumeRoleForPodIdentity"`)
		}
		return out
	}
	waitServed := func(what string, which ...int) {
		t.Helper()
		before := served()
		deadline := time.Now().Add(15 * time.Second)
		for {
			now, all := served(), true
			for _, i := range which {
				all = all && now[i] > before[i]
			}
			if all {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: calls per replica stayed at %v (were %v)", what, now, before)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// within polls every 100 ms until to's answer for sa is ok (or not).
	// changed is taken before the change was made, so the times are upper
	// bounds. No answer may show the old state later than 1 s after the
	// change (plus 50 ms for a cache fill that raced the commit).
	within := func(what string, to *servertest.Instance, sa string, changed time.Time, wantOK bool) {
		t.Helper()
		lastOld := time.Duration(-1)
		for {
			start := time.Now()
			r := podAssume(t, to, "rep", token(sa))
			if (r.status == http.StatusOK) != wantOK {
				lastOld = start.Sub(changed)
				if lastOld > 5*time.Second {
					t.Fatalf("%s: not seen on %s after 5 s: HTTP %d %s: %s", what, to.URL, r.status, r.code, r.body)
				}
				time.Sleep(100 * time.Millisecond)
				continue
			}
			seen := start.Sub(changed)
			old := "none"
			if lastOld >= 0 {
				old = "+" + lastOld.Round(time.Millisecond).String()
			}
			t.Logf("%s: on %s, last old answer %s, first new +%v", what, to.URL, old, seen.Round(time.Millisecond))
			if lastOld > time.Second+50*time.Millisecond {
				t.Errorf("%s: %s answered from the old state %v after the change, want ≤ 1 s", what, to.URL, lastOld)
			}
			return
		}
	}
	// honoured checks that an association made on from works on to within
	// 1 s, and that its deletion on from is honoured there within 1 s too
	// (to has it cached by then, so a stale cache would show).
	honoured := func(from, to *replica, sa string) {
		t.Helper()
		if r := podAssume(t, to.Instance, "rep", token(sa)); r.status == http.StatusOK {
			t.Fatalf("%s: answered before its association exists", sa)
		}
		changed := time.Now()
		id := associate(from.Instance, sa)
		within(sa+" created on "+from.addr, to.Instance, sa, changed, true)
		changed = time.Now()
		if _, err := eksClient(from.Instance).DeletePodIdentityAssociation(ctx(t), &eks.DeletePodIdentityAssociationInput{
			ClusterName: aws.String("rep"), AssociationId: &id}); err != nil {
			t.Fatal(err)
		}
		within(sa+" deleted on "+from.addr, to.Instance, sa, changed, false)
	}

	waitServed("steady load over every replica", 0, 1, 2)
	honoured(replicas[0], replicas[1], "late-1")

	// SIGKILL replica 0 mid-load: its agents move to the others.
	replicas[0].proc.signal(syscall.SIGKILL)
	waitServed("after replica 0 was killed", 1, 2)
	time.Sleep(time.Second)

	// Stop replica 1 and start it again on its address, on the same store.
	replicas[1].proc.signal(syscall.SIGTERM)
	time.Sleep(500 * time.Millisecond)
	startReplica(replicas[1], 1)
	waitServed("after replica 1 restarted", 1, 2)
	honoured(replicas[2], replicas[1], "late-2")
	honoured(replicas[1], replicas[2], "late-3")

	stopLoad()
	t.Logf("credential requests through the agents: %d ok, %d failed; pod credential calls per replica %v", ok.Load(), failed.Load(), served())
	if failed.Load() != 0 {
		t.Errorf("%d credential requests failed, want 0; first: %s", failed.Load(), strings.Join(errs, "\n"))
	}
	if ok.Load() < 300 {
		t.Errorf("only %d credential requests made", ok.Load())
	}
}
