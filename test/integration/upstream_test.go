package integration

import (
	"bytes"
	"crypto/rsa"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/podid/podid/internal/cli"
	podideks "github.com/podid/podid/internal/eks"
	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/server/servertest"
)

// The tests of `podid server --upstream aws`: a second podid server (local
// mode) stands in for AWS. The broker reaches it through aws-sdk-go-v2's
// real STS client, pointed at it by AWS_ENDPOINT_URL_STS, with its own
// credentials: a session of the role podid-broker on the stand-in (so the
// broker is itself a role session and STS's 1-hour chaining cap applies).
// A small fault injector sits between them.

const upstreamCluster = "edge"

// faultProxy forwards to the stand-in unless told to throttle, hang or
// drop connections; it counts the STS calls that reach it.
type faultProxy struct {
	srv      *httptest.Server
	calls    atomic.Int64
	throttle atomic.Int64 // answer Throttling to this many more calls
	down     atomic.Bool  // drop every connection
	slow     atomic.Bool  // hold every call until the client gives up
}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &faultProxy{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.calls.Add(1)
		switch {
		case p.down.Load():
			hj, ok := w.(http.Hijacker)
			if !ok {
				t.Error("no hijacker")
				return
			}
			conn, _, err := hj.Hijack()
			if err == nil {
				conn.Close()
			}
			return
		case p.slow.Load():
			// Reading the body lets the server notice the client hang up.
			_, _ = io.Copy(io.Discard, r.Body)
			select {
			case <-r.Context().Done():
			case <-time.After(20 * time.Second):
			}
			return
		case p.throttle.Add(-1) >= 0:
			w.Header().Set("Content-Type", "text/xml")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>fault</RequestId></ErrorResponse>`)
			return
		}
		p.throttle.Store(0)
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

type upstreamFixture struct {
	standIn, broker *servertest.Instance
	proxy           *faultProxy
	brokerRoleARN   string
	key             *rsa.PrivateKey
	issuer          string
	standInIAM      *iam.Client
	brokerEKS       *eks.Client
}

// newUpstreamFixture starts the stand-in, the fault proxy and the broker.
// brokerRoot makes the broker use the stand-in's long-term root keys
// instead of a role session.
func newUpstreamFixture(t *testing.T, brokerRoot bool, mutate ...func(*server.Config)) *upstreamFixture {
	t.Helper()
	f := &upstreamFixture{standIn: servertest.Start(t), key: rsaKey(t), issuer: "https://upstream.issuer.test"}
	f.proxy = newFaultProxy(t, f.standIn.URL)
	ic, sc := adminClients(f.standIn)
	f.standInIAM = ic
	f.brokerRoleARN = createRole(t, ic, "podid-broker", trustAccount())
	if _, err := ic.PutRolePolicy(ctx(t), &iam.PutRolePolicyInput{RoleName: aws.String("podid-broker"), PolicyName: aws.String("assume"),
		PolicyDocument: aws.String(policyDoc(stmt("Allow", []string{"sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity", "iam:GetRole"}, "*")))}); err != nil {
		t.Fatal(err)
	}
	creds := adminCreds(f.standIn)
	if !brokerRoot {
		out, err := sc.AssumeRole(ctx(t), &sts.AssumeRoleInput{RoleArn: &f.brokerRoleARN, RoleSessionName: aws.String("broker")})
		if err != nil {
			t.Fatal(err)
		}
		c := out.Credentials
		creds = aws.Credentials{AccessKeyID: *c.AccessKeyId, SecretAccessKey: *c.SecretAccessKey, SessionToken: *c.SessionToken}
	}
	// The broker's whole AWS world is this environment: loopback only.
	isolateEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", creds.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", creds.SecretAccessKey)
	t.Setenv("AWS_SESSION_TOKEN", creds.SessionToken)
	t.Setenv("AWS_ENDPOINT_URL_STS", f.proxy.srv.URL)
	t.Setenv("AWS_ENDPOINT_URL", f.proxy.srv.URL) // anything else the SDK might reach: the proxy too
	f.broker = servertest.Start(t, func(c *server.Config) {
		c.Upstream = "aws"
		c.AccountID = "444455556666"
		for _, m := range mutate {
			m(c)
		}
	})
	registerCluster(t, f.broker, podideks.RegisterClusterInput{Name: upstreamCluster, Issuer: f.issuer,
		JWKS: jwksOf(jose.JSONWebKey{Key: &f.key.PublicKey, KeyID: "k", Algorithm: "RS256", Use: "sig"})})
	f.brokerEKS = eksClient(f.broker)
	// Concurrent calls leave dialled-but-unused keep-alive connections that
	// a server's graceful shutdown would wait 5 s for: close them first.
	t.Cleanup(http.DefaultClient.CloseIdleConnections)
	return f
}

// brokerTrust is the trust policy `podid trust-policy` prints: the
// broker's role may assume, tag and set the source identity, for this
// cluster only.
func (f *upstreamFixture) brokerTrust() map[string]any {
	return map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{
		"Effect": "Allow", "Principal": map[string]any{"AWS": f.brokerRoleARN},
		"Action":    []string{"sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"},
		"Condition": map[string]any{"StringEquals": map[string]any{"aws:RequestTag/eks-cluster-name": upstreamCluster}},
	}}}
}

func (f *upstreamFixture) associate(t *testing.T, ns, sa, roleARN string, mutate ...func(*eks.CreatePodIdentityAssociationInput)) *eks.CreatePodIdentityAssociationOutput {
	t.Helper()
	in := &eks.CreatePodIdentityAssociationInput{ClusterName: aws.String(upstreamCluster), Namespace: &ns, ServiceAccount: &sa, RoleArn: &roleARN}
	for _, m := range mutate {
		m(in)
	}
	out, err := f.brokerEKS.CreatePodIdentityAssociation(ctx(t), in)
	if err != nil {
		t.Fatalf("associate %s/%s: %v", ns, sa, err)
	}
	return out
}

func (f *upstreamFixture) token(t *testing.T, ns, sa, pod string) string {
	c := podClaims(f.issuer, ns, sa, pod)
	c["kubernetes.io"].(map[string]any)["pod"].(map[string]any)["uid"] = "uid-" + ns + "-" + sa + "-" + pod
	return signJWT(t, f.key, "k", jose.RS256, c)
}

type podCreds struct {
	AccessKeyID, SecretAccessKey, SessionToken string
	Expiration                                 int64
}

// assume calls the broker's EKS Auth; it returns the answer and, on
// success, the credentials.
func (f *upstreamFixture) assume(t *testing.T, token string) (restAnswer, podCreds) {
	t.Helper()
	a := podAssume(t, f.broker, upstreamCluster, token)
	var out struct {
		Credentials struct {
			AccessKeyID     string `json:"accessKeyId"`
			SecretAccessKey string `json:"secretAccessKey"`
			SessionToken    string `json:"sessionToken"`
			Expiration      int64  `json:"expiration"`
		} `json:"credentials"`
	}
	if a.status == http.StatusOK {
		if err := json.Unmarshal(a.body, &out); err != nil {
			t.Fatal(err)
		}
	}
	c := out.Credentials
	return a, podCreds{c.AccessKeyID, c.SecretAccessKey, c.SessionToken, c.Expiration}
}

// whoami is GetCallerIdentity on the stand-in with the pod's credentials.
func (f *upstreamFixture) whoami(t *testing.T, c podCreds) string {
	t.Helper()
	out, err := sts.NewFromConfig(awsConfig(f.standIn, c.AccessKeyID, c.SecretAccessKey, c.SessionToken)).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatalf("pod credentials against the stand-in: %v", err)
	}
	return aws.ToString(out.Arn)
}

type auditRecord struct {
	EventName    string `json:"eventName"`
	ErrorCode    string `json:"errorCode"`
	UserIdentity struct {
		ARN string `json:"arn"`
	} `json:"userIdentity"`
	RequestParameters map[string]any `json:"requestParameters"`
}

// assumeRoleCalls returns the stand-in's AssumeRole records for roleARN.
func (f *upstreamFixture) assumeRoleCalls(t *testing.T, roleARN string) []auditRecord {
	t.Helper()
	var recs []auditRecord
	for _, line := range strings.Split(strings.TrimSpace(f.standIn.AuditLog(t)), "\n") {
		var r auditRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if r.EventName == "AssumeRole" && r.RequestParameters["roleArn"] == roleARN {
			recs = append(recs, r)
		}
	}
	return recs
}

func (r auditRecord) param(k string) string { s, _ := r.RequestParameters[k].(string); return s }

// tags reads Tags.member.N.Key/Value back into a map, and the transitive keys sorted.
func (r auditRecord) tags() (map[string]string, []string) {
	tags := map[string]string{}
	var transitive []string
	for i := 1; ; i++ {
		k := r.param(fmt.Sprintf("tags.member.%d.Key", i))
		if k == "" {
			break
		}
		tags[k] = r.param(fmt.Sprintf("tags.member.%d.Value", i))
	}
	for i := 1; ; i++ {
		k := r.param(fmt.Sprintf("transitiveTagKeys.member.%d", i))
		if k == "" {
			break
		}
		transitive = append(transitive, k)
	}
	sort.Strings(transitive)
	return tags, transitive
}

var uuidPattern = `[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`

// The whole path through the real STS client: AssumeRole with the session
// name, six tags, transitive keys and source identity; the target role
// with the association's external ID; the 1-hour cap of a broker that is
// itself a role session; credentials that work at the stand-in; the cache.
func TestUpstreamAWSAssumeRole(t *testing.T) {
	f := newUpstreamFixture(t, false)
	appARN := createRole(t, f.standInIAM, "app", f.brokerTrust())
	targetARN := createRole(t, f.standInIAM, "target", trustAccount())
	if _, err := f.standInIAM.PutRolePolicy(ctx(t), &iam.PutRolePolicyInput{RoleName: aws.String("app"), PolicyName: aws.String("chain"),
		PolicyDocument: aws.String(policyDoc(stmt("Allow", []string{"sts:AssumeRole", "sts:TagSession"}, targetARN)))}); err != nil {
		t.Fatal(err)
	}
	f.associate(t, "team-a", "app", appARN)
	chain := f.associate(t, "team-a", "chain", appARN, func(in *eks.CreatePodIdentityAssociationInput) { in.TargetRoleArn = &targetARN })
	externalID := aws.ToString(chain.Association.ExternalId)
	if externalID == "" {
		t.Fatal("no external ID on the target-role association")
	}
	// The target trusts the first role, with the association's external ID.
	trust := map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{
		"Effect": "Allow", "Principal": map[string]any{"AWS": appARN}, "Action": []string{"sts:AssumeRole", "sts:TagSession"},
		"Condition": map[string]any{"StringEquals": map[string]any{"sts:ExternalId": externalID}},
	}}}
	if _, err := f.standInIAM.UpdateAssumeRolePolicy(ctx(t), &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("target"), PolicyDocument: aws.String(mustJSON(trust))}); err != nil {
		t.Fatal(err)
	}

	// One pod, one role.
	start := time.Now()
	tok := f.token(t, "team-a", "app", "web-1")
	a, c := f.assume(t, tok)
	if a.status != http.StatusOK {
		t.Fatalf("AssumeRoleForPodIdentity: HTTP %d %s: %s", a.status, a.code, a.body)
	}
	who := f.whoami(t, c)
	if !regexp.MustCompile(`^arn:aws:sts::111122223333:assumed-role/app/eks-edge-web-1-` + uuidPattern + `$`).MatchString(who) {
		t.Errorf("pod credentials are %s, want a session of the stand-in's role app", who)
	}
	if exp := time.Unix(c.Expiration, 0); exp.Before(start.Add(59*time.Minute)) || exp.After(start.Add(61*time.Minute)) {
		t.Errorf("expiration %v: a broker that is a role session gets 1 h", exp)
	}
	calls := f.assumeRoleCalls(t, appARN)
	if len(calls) != 1 {
		t.Fatalf("stand-in saw %d AssumeRole calls on app, want 1", len(calls))
	}
	r := calls[0]
	if r.ErrorCode != "" || !strings.HasPrefix(r.UserIdentity.ARN, "arn:aws:sts::111122223333:assumed-role/podid-broker/") {
		t.Errorf("AssumeRole by %s (error %q), want the broker's session", r.UserIdentity.ARN, r.ErrorCode)
	}
	if name := r.param("roleSessionName"); !strings.HasSuffix(who, "/"+name) {
		t.Errorf("roleSessionName %q is not the session the pod got (%s)", name, who)
	}
	if got := r.param("durationSeconds"); got != "3600" {
		t.Errorf("durationSeconds = %q, want 3600 (role chaining cap)", got)
	}
	if got := r.param("sourceIdentity"); got != "app@team-a.edge" {
		t.Errorf("sourceIdentity = %q, want app@team-a.edge", got)
	}
	tags, transitive := r.tags()
	wantTags := map[string]string{
		"eks-cluster-arn": "arn:aws:eks:us-east-1:444455556666:cluster/edge", "eks-cluster-name": "edge",
		"kubernetes-namespace": "team-a", "kubernetes-service-account": "app",
		"kubernetes-pod-name": "web-1", "kubernetes-pod-uid": "uid-team-a-app-web-1",
	}
	if mustJSON(tags) != mustJSON(wantTags) {
		t.Errorf("tags = %v, want %v", tags, wantTags)
	}
	wantKeys := []string{"eks-cluster-arn", "eks-cluster-name", "kubernetes-namespace", "kubernetes-pod-name", "kubernetes-pod-uid", "kubernetes-service-account"}
	if mustJSON(transitive) != mustJSON(wantKeys) {
		t.Errorf("transitive keys = %v, want %v", transitive, wantKeys)
	}

	// The same pod again (an agent restart, an SDK retry): the cached session.
	if a2, c2 := f.assume(t, tok); a2.status != http.StatusOK || c2.AccessKeyID != c.AccessKeyID {
		t.Errorf("repeat: HTTP %d, key %s, want the cached %s", a2.status, c2.AccessKeyID, c.AccessKeyID)
	}
	if n := len(f.assumeRoleCalls(t, appARN)); n != 1 {
		t.Errorf("after a repeat the stand-in saw %d AssumeRole calls, want 1", n)
	}

	// A target role: the second AssumeRole signed by the first session.
	a, c = f.assume(t, f.token(t, "team-a", "chain", "batch-1"))
	if a.status != http.StatusOK {
		t.Fatalf("target role: HTTP %d %s: %s", a.status, a.code, a.body)
	}
	if who := f.whoami(t, c); !regexp.MustCompile(`^arn:aws:sts::111122223333:assumed-role/target/eks-edge-batch-1-` + uuidPattern + `$`).MatchString(who) {
		t.Errorf("chained pod credentials are %s, want a session of target", who)
	}
	tc := f.assumeRoleCalls(t, targetARN)
	if len(tc) != 1 {
		t.Fatalf("stand-in saw %d AssumeRole calls on target, want 1", len(tc))
	}
	if got := tc[0].param("externalId"); got != externalID {
		t.Errorf("externalId = %q, want the association's %q", got, externalID)
	}
	if !strings.HasPrefix(tc[0].UserIdentity.ARN, "arn:aws:sts::111122223333:assumed-role/app/eks-edge-batch-1-") {
		t.Errorf("target AssumeRole signed by %s, want the first session", tc[0].UserIdentity.ARN)
	}

	// A role that does not trust the broker: AccessDeniedException naming
	// the role and the statement it lacks.
	deniedARN := createRole(t, f.standInIAM, "denied", podIdentityTrust())
	f.associate(t, "team-b", "app", deniedARN)
	a, _ = f.assume(t, f.token(t, "team-b", "app", "web-1"))
	if a.status != http.StatusBadRequest || a.code != "AccessDeniedException" ||
		!strings.Contains(string(a.body), deniedARN) || !strings.Contains(string(a.body), f.brokerRoleARN) || !strings.Contains(string(a.body), "sts:SetSourceIdentity") {
		t.Errorf("untrusted role: HTTP %d %s: %s", a.status, a.code, a.body)
	}
}

// A broker with long-term keys asks for 6 h; a role whose MaxSessionDuration
// is shorter gets the 1-hour retry.
func TestUpstreamAWSDuration(t *testing.T) {
	f := newUpstreamFixture(t, true)
	f.brokerRoleARN = "arn:aws:iam::111122223333:root"
	longARN := createRole(t, f.standInIAM, "long", f.brokerTrust())
	if _, err := f.standInIAM.UpdateRole(ctx(t), &iam.UpdateRoleInput{RoleName: aws.String("long"), MaxSessionDuration: aws.Int32(43200)}); err != nil {
		t.Fatal(err)
	}
	shortARN := createRole(t, f.standInIAM, "short", f.brokerTrust())
	f.associate(t, "ns", "long", longARN)
	f.associate(t, "ns", "short", shortARN)
	for _, tc := range []struct {
		sa, role  string
		want      time.Duration
		durations []string
	}{{"long", longARN, 6 * time.Hour, []string{"21600"}}, {"short", shortARN, time.Hour, []string{"21600", "3600"}}} {
		start := time.Now()
		a, c := f.assume(t, f.token(t, "ns", tc.sa, "p"))
		if a.status != http.StatusOK {
			t.Fatalf("%s: HTTP %d %s: %s", tc.sa, a.status, a.code, a.body)
		}
		if exp := time.Unix(c.Expiration, 0); exp.Before(start.Add(tc.want-time.Minute)) || exp.After(start.Add(tc.want+time.Minute)) {
			t.Errorf("%s: expires %v, want in %v", tc.sa, time.Until(exp), tc.want)
		}
		var got []string
		for _, r := range f.assumeRoleCalls(t, tc.role) {
			got = append(got, r.param("durationSeconds"))
		}
		if mustJSON(got) != mustJSON(tc.durations) {
			t.Errorf("%s: durations asked %v, want %v", tc.sa, got, tc.durations)
		}
	}
}

// Throttling is retried within the budget; an STS that is down or hangs
// costs a new pod a clear 503-class error within the agent's 5 s, and a
// pod whose session is cached keeps getting it.
func TestUpstreamAWSFaults(t *testing.T) {
	f := newUpstreamFixture(t, false)
	appARN := createRole(t, f.standInIAM, "app", f.brokerTrust())
	f.associate(t, "ns", "app", appARN)
	const budget = 5 * time.Second

	timed := func(what, token string) (restAnswer, podCreds) {
		t.Helper()
		start := time.Now()
		a, c := f.assume(t, token)
		if d := time.Since(start); d > budget {
			t.Errorf("%s took %v, more than the agent's %v", what, d, budget)
		}
		return a, c
	}

	// Two throttled answers, then success: one request, three STS calls.
	f.proxy.throttle.Store(2)
	before := f.proxy.calls.Load()
	a, cached := timed("throttled twice", f.token(t, "ns", "app", "p1"))
	if a.status != http.StatusOK {
		t.Fatalf("throttled twice: HTTP %d %s: %s", a.status, a.code, a.body)
	}
	if n := f.proxy.calls.Load() - before; n != 3 {
		t.Errorf("throttled twice: %d STS calls, want 3", n)
	}

	// Throttled past the retry budget: ThrottlingException, bounded calls.
	f.proxy.throttle.Store(100)
	before = f.proxy.calls.Load()
	a, _ = timed("throttled", f.token(t, "ns", "app", "p2"))
	if a.status != http.StatusTooManyRequests || a.code != "ThrottlingException" {
		t.Errorf("throttled: HTTP %d %s: %s, want 429 ThrottlingException", a.status, a.code, a.body)
	}
	if n := f.proxy.calls.Load() - before; n > 3 {
		t.Errorf("throttled: %d STS calls, want at most 3", n)
	}
	f.proxy.throttle.Store(0)

	for i, fault := range []*atomic.Bool{&f.proxy.down, &f.proxy.slow} {
		name := []string{"down", "slow"}[i]
		pod := fmt.Sprintf("new-%d", i)
		fault.Store(true)
		// The cached pod is served without STS.
		if a, c := timed(name+", cached pod", f.token(t, "ns", "app", "p1")); a.status != http.StatusOK || c.AccessKeyID != cached.AccessKeyID {
			t.Errorf("%s, cached pod: HTTP %d %s: %s", name, a.status, a.code, a.body)
		}
		// A new pod gets a clear error.
		before := f.proxy.calls.Load()
		a, _ := timed(name+", new pod", f.token(t, "ns", "app", pod))
		if a.status != http.StatusServiceUnavailable || a.code != "ServiceUnavailableException" || !strings.Contains(string(a.body), "STS") {
			t.Errorf("%s, new pod: HTTP %d %s: %s, want 503 ServiceUnavailableException", name, a.status, a.code, a.body)
		}
		if f.proxy.calls.Load() == before {
			t.Errorf("%s, new pod: STS was not called", name)
		}
		// Asked again at once: the failure stands, STS is not called again.
		before = f.proxy.calls.Load()
		if a, _ := timed(name+", new pod again", f.token(t, "ns", "app", pod)); a.code != "ServiceUnavailableException" || f.proxy.calls.Load() != before {
			t.Errorf("%s, new pod again: HTTP %d %s, %d more STS calls; want the held 503 and none", name, a.status, a.code, f.proxy.calls.Load()-before)
		}
		fault.Store(false)
	}
	// Recovered: a new pod at once, a failed one once its failure lapsed.
	if a, _ := timed("recovered", f.token(t, "ns", "app", "p4")); a.status != http.StatusOK {
		t.Errorf("recovered: HTTP %d %s: %s", a.status, a.code, a.body)
	}
	time.Sleep(2100 * time.Millisecond)
	if a, _ := timed("recovered, failed pod", f.token(t, "ns", "app", "new-1")); a.status != http.StatusOK {
		t.Errorf("recovered, failed pod: HTTP %d %s: %s", a.status, a.code, a.body)
	}
}

// A restart storm: 1,000 AssumeRoleForPodIdentity calls for 50 service
// accounts (two pods each, every pod asking ten times, concurrently) make
// one upstream AssumeRole per role session — here per pod — and no more.
func TestUpstreamAWSRestartStorm(t *testing.T) {
	f := newUpstreamFixture(t, false)
	appARN := createRole(t, f.standInIAM, "app", f.brokerTrust())
	const sas, podsPerSA, repeats = 50, 2, 10
	var tokens []string
	for i := range sas {
		sa := fmt.Sprintf("sa-%02d", i)
		f.associate(t, "storm", sa, appARN)
		for p := range podsPerSA {
			tokens = append(tokens, f.token(t, "storm", sa, fmt.Sprintf("pod-%d", p)))
		}
	}
	work := make(chan string)
	var wg sync.WaitGroup
	var mu sync.Mutex
	keys := map[string]map[string]bool{} // token → access keys handed out
	failures := 0
	for range 64 {
		wg.Go(func() {
			for tok := range work {
				a, c := f.assume(t, tok)
				mu.Lock()
				if a.status != http.StatusOK {
					failures++
				} else {
					if keys[tok] == nil {
						keys[tok] = map[string]bool{}
					}
					keys[tok][c.AccessKeyID] = true
				}
				mu.Unlock()
			}
		})
	}
	for range repeats {
		for _, tok := range tokens {
			work <- tok
		}
	}
	close(work)
	wg.Wait()
	if failures > 0 {
		t.Fatalf("%d of %d calls failed", failures, sas*podsPerSA*repeats)
	}
	calls := f.assumeRoleCalls(t, appARN)
	if len(calls) != sas*podsPerSA {
		t.Errorf("%d calls for %d pods made %d upstream AssumeRole calls, want %d (one per role session)", sas*podsPerSA*repeats, sas*podsPerSA, len(calls), sas*podsPerSA)
	}
	sessions := map[string]bool{}
	for _, r := range calls {
		tags, _ := r.tags()
		sessions[tags["kubernetes-pod-uid"]] = true
	}
	if len(sessions) != sas*podsPerSA {
		t.Errorf("upstream sessions cover %d pods, want %d", len(sessions), sas*podsPerSA)
	}
	for tok, ks := range keys {
		if len(ks) != 1 {
			t.Errorf("one pod got %d different sessions: %v (token %.20s…)", len(ks), ks, tok)
		}
	}
}

// `podid trust-policy` asks STS (through the standard chain, here the
// broker's environment) who the server is and prints a trust policy that
// works as printed: the namespace it names gets credentials, another does not.
func TestUpstreamAWSTrustPolicyCommand(t *testing.T) {
	f := newUpstreamFixture(t, false)
	root := cli.NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"trust-policy", "--cluster", upstreamCluster, "--namespace", "team-a"})
	if err := root.ExecuteContext(ctx(t)); err != nil {
		t.Fatalf("podid trust-policy: %v", err)
	}
	var doc struct {
		Statement []struct {
			Principal struct{ AWS string }
			Action    []string
		}
	}
	if err := json.Unmarshal(out.Bytes(), &doc); err != nil || len(doc.Statement) != 1 {
		t.Fatalf("printed %s (%v)", out.Bytes(), err)
	}
	if st := doc.Statement[0]; st.Principal.AWS != f.brokerRoleARN || mustJSON(st.Action) != `["sts:AssumeRole","sts:TagSession","sts:SetSourceIdentity"]` {
		t.Errorf("statement %+v, want the broker's role %s and the three actions", st, f.brokerRoleARN)
	}
	out2, err := f.standInIAM.CreateRole(ctx(t), &iam.CreateRoleInput{RoleName: aws.String("printed"), AssumeRolePolicyDocument: aws.String(out.String())})
	if err != nil {
		t.Fatal(err)
	}
	arn := aws.ToString(out2.Role.Arn)
	f.associate(t, "team-a", "app", arn)
	f.associate(t, "team-b", "app", arn)
	if a, _ := f.assume(t, f.token(t, "team-a", "app", "p")); a.status != http.StatusOK {
		t.Errorf("team-a: HTTP %d %s: %s", a.status, a.code, a.body)
	}
	if a, _ := f.assume(t, f.token(t, "team-b", "app", "p")); a.code != "AccessDeniedException" {
		t.Errorf("team-b: HTTP %d %s: %s, want AccessDeniedException", a.status, a.code, a.body)
	}
}

// --validate-roles: iam:GetRole (at the stand-in) refuses an association
// whose role does not exist in the server's account; roles elsewhere pass.
func TestUpstreamAWSValidateRoles(t *testing.T) {
	f := newUpstreamFixture(t, false, func(c *server.Config) { c.ValidateRoles = true })
	appARN := createRole(t, f.standInIAM, "app", f.brokerTrust())
	f.associate(t, "ns", "app", appARN)
	f.associate(t, "ns", "elsewhere", "arn:aws:iam::999988887777:role/not-checked")
	missing := "arn:aws:iam::111122223333:role/missing"
	_, err := f.brokerEKS.CreatePodIdentityAssociation(ctx(t), &eks.CreatePodIdentityAssociationInput{ClusterName: aws.String(upstreamCluster),
		Namespace: aws.String("ns"), ServiceAccount: aws.String("missing"), RoleArn: &missing})
	wantAPIError(t, "missing role", err, "InvalidParameterException", http.StatusBadRequest)
	if err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("error %v does not name the role", err)
	}
	list, err := f.brokerEKS.ListPodIdentityAssociations(ctx(t), &eks.ListPodIdentityAssociationsInput{ClusterName: aws.String(upstreamCluster)})
	if err != nil || len(list.Associations) != 2 {
		t.Errorf("associations stored: %v (%v), want the two valid ones", list, err)
	}
}
