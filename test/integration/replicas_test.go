package integration

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/podid/podid/internal/agent/eksauth"
	podideks "github.com/podid/podid/internal/eks"
	"github.com/podid/podid/internal/secretbox"
	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/server/servertest"
	"github.com/podid/podid/internal/store/pgtest"
)

// hostCounter counts the requests sent to each host.
type hostCounter struct {
	next http.RoundTripper
	mu   sync.Mutex
	n    map[string]int
}

func (h *hostCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	h.mu.Lock()
	h.n[r.URL.Host]++
	h.mu.Unlock()
	return h.next.RoundTrip(r)
}

func (h *hostCounter) snapshot() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]int, len(h.n))
	for k, v := range h.n {
		out[k] = v
	}
	return out
}

// Three replicas on one PostgreSQL database under steady
// AssumeRoleForPodIdentity load from agents' failover clients: one replica
// is killed, then another restarted on the same address and store; the
// clients see no failed request. An association created on one replica is
// honoured by another within the caches' 1 s.
func TestReplicasOnPostgres(t *testing.T) {
	dsn := pgtest.Start(t)
	keyFile := filepath.Join(t.TempDir(), "master.key")
	key := make([]byte, secretbox.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	withStore := func(c *server.Config) {
		c.Store, c.MasterKeyFile, c.AccountID = dsn, keyFile, account
	}
	// One at a time: the first creates the sealing key and the admin key the
	// others then load.
	replicas := make([]*servertest.Instance, 3)
	for i := range replicas {
		replicas[i] = servertest.Start(t, withStore)
	}
	for _, r := range replicas[1:] {
		if r.AccessKeyID != replicas[0].AccessKeyID {
			t.Fatalf("replicas disagree on the admin key: %s vs %s", r.AccessKeyID, replicas[0].AccessKeyID)
		}
	}

	a := replicas[0]
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

	// Agents: each a failover client over the three replicas, the first
	// choice spread over them.
	urls := make([]string, len(replicas))
	for i, r := range replicas {
		urls[i] = r.URL
	}
	counter := &hostCounter{next: http.DefaultTransport.(*http.Transport).Clone(), n: map[string]int{}}
	proto := eksauth.Client{
		HTTPClient: &http.Client{Transport: counter},
		Auth:       &eksauth.SigV4{Credentials: credentials.NewStaticCredentialsProvider(a.AccessKeyID, a.SecretAccessKey, ""), Region: region},
	}
	const agents = 6
	var ok, failed atomic.Int64
	var errMu sync.Mutex
	var errs []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for k := range agents {
		f := eksauth.NewFailover(proto, urls...)
		f.Prefer(k % len(urls))
		f.TryTimeout = 2 * time.Second
		f.HoldDown = time.Second // so agents return to the restarted replica soon
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
				_, err := f.AssumeRoleForPodIdentity(t.Context(), "rep", token("app"))
				if err == nil {
					ok.Add(1)
					continue
				}
				failed.Add(1)
				errMu.Lock()
				if len(errs) < 10 {
					errs = append(errs, err.Error())
				}
				errMu.Unlock()
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	t.Cleanup(stopLoad)

	host := func(inst *servertest.Instance) string {
		u, _ := url.Parse(inst.URL)
		return u.Host
	}
	waitServed := func(what string, insts ...*servertest.Instance) {
		t.Helper()
		before := counter.snapshot()
		deadline := time.Now().Add(10 * time.Second)
		for {
			now, all := counter.snapshot(), true
			for _, in := range insts {
				if now[host(in)] <= before[host(in)] {
					all = false
				}
			}
			if all {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: requests per replica stayed at %v", what, now)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// within polls to every 100 ms until its answer is ok (or not). changed
	// is taken before the change was made, so the times below are upper
	// bounds. No answer may show the old state later than the caches' 1 s
	// after the change (plus 50 ms for a cache fill that raced the commit);
	// the new state must show by the next polls.
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
			if seen > 1500*time.Millisecond {
				t.Errorf("%s: %s first showed the change after %v", what, to.URL, seen)
			}
			return
		}
	}
	// honoured checks that an association made on from works on to within
	// 1 s, and that its deletion on from is honoured there within 1 s too
	// (to has it cached by then, so a stale cache would show).
	honoured := func(from, to *servertest.Instance, sa string) {
		t.Helper()
		if r := podAssume(t, to, "rep", token(sa)); r.status == http.StatusOK {
			t.Fatalf("%s: answered before its association exists", sa)
		}
		changed := time.Now()
		id := associate(from, sa)
		within(sa+" created on "+from.URL, to, sa, changed, true)
		changed = time.Now()
		if _, err := eksClient(from).DeletePodIdentityAssociation(ctx(t), &eks.DeletePodIdentityAssociationInput{
			ClusterName: aws.String("rep"), AssociationId: &id}); err != nil {
			t.Fatal(err)
		}
		within(sa+" deleted on "+from.URL, to, sa, changed, false)
	}

	waitServed("steady load", replicas...)
	honoured(replicas[0], replicas[1], "late-1")

	// Kill replica 0: its agents move to the others.
	replicas[0].Stop()
	time.Sleep(500 * time.Millisecond)
	waitServed("after replica 0 died", replicas[1], replicas[2])

	// Restart replica 1 on the same address and store.
	addr1 := host(replicas[1])
	replicas[1].Stop()
	time.Sleep(300 * time.Millisecond)
	replicas[1] = servertest.StartAt(t, addr1, withStore)
	time.Sleep(500 * time.Millisecond)
	waitServed("after replica 1 restarted", replicas[1], replicas[2])
	honoured(replicas[2], replicas[1], "late-2")
	honoured(replicas[1], replicas[2], "late-3")

	stopLoad()
	t.Logf("credential requests: %d ok, %d failed; per replica %v", ok.Load(), failed.Load(), counter.snapshot())
	if failed.Load() != 0 {
		t.Errorf("%d credential requests failed, want 0; first: %s", failed.Load(), strings.Join(errs, "\n"))
	}
	if ok.Load() < 100 {
		t.Errorf("only %d credential requests made", ok.Load())
	}
}
