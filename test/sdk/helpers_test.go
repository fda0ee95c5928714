// Package sdk tests the node agent with unmodified AWS SDKs as its clients:
// aws-sdk-go-v2, botocore/boto3 and the AWS SDK for JavaScript v3.
package sdk

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/podid/podid/internal/agent"
	"github.com/podid/podid/internal/agent/eksauth"
	podideks "github.com/podid/podid/internal/eks"
	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/server/servertest"
)

const (
	region     = "us-east-1"
	cluster    = "c1"
	roleName   = "app-role"
	agentToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6cG9kaWQ6YWdlbnQifQ.c2lnbmF0dXJl"
)

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}

func logger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// podToken returns a JWT-shaped pod token (the fake EKS Auth below does
// not verify signatures; the real server path does).
func podToken(n int) string {
	return fmt.Sprintf("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6ZGVmYXVsdDphcHAiLCJuIjoi%d.c2lnbmF0dXJl", n)
}

// roleSession is a real role session from a real podid server: what the
// fake EKS Auth hands out, so that GetCallerIdentity really verifies it.
type roleSession struct {
	Inst      *servertest.Instance
	ServerURL string
	RoleARN   string
	Creds     aws.Credentials
	Arn       string // assumed-role ARN
	RoleID    string
}

func startPodid(t testing.TB) *roleSession {
	t.Helper()
	inst := servertest.Start(t)
	cfg := aws.Config{
		Region:           region,
		Credentials:      credentials.NewStaticCredentialsProvider(inst.AccessKeyID, inst.SecretAccessKey, ""),
		BaseEndpoint:     aws.String(inst.URL),
		RetryMaxAttempts: 1,
	}
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::111122223333:root"},"Action":["sts:AssumeRole","sts:TagSession"]}]}`
	role, err := iam.NewFromConfig(cfg).CreateRole(ctx(t), &iam.CreateRoleInput{RoleName: aws.String(roleName), AssumeRolePolicyDocument: aws.String(trust)})
	if err != nil {
		t.Fatalf("CreateRole: %v", err)
	}
	out, err := sts.NewFromConfig(cfg).AssumeRole(ctx(t), &sts.AssumeRoleInput{
		RoleArn: role.Role.Arn, RoleSessionName: aws.String("eks-c1-app-pod"), DurationSeconds: aws.Int32(3600),
	})
	if err != nil {
		t.Fatalf("AssumeRole: %v", err)
	}
	c := out.Credentials
	return &roleSession{
		Inst:      inst,
		ServerURL: inst.URL,
		RoleARN:   aws.ToString(role.Role.Arn),
		Creds: aws.Credentials{AccessKeyID: aws.ToString(c.AccessKeyId), SecretAccessKey: aws.ToString(c.SecretAccessKey),
			SessionToken: aws.ToString(c.SessionToken), Expires: aws.ToTime(c.Expiration), CanExpire: true},
		Arn:    aws.ToString(out.AssumedRoleUser.Arn),
		RoleID: aws.ToString(out.AssumedRoleUser.AssumedRoleId),
	}
}

// podidCluster is a real podid server with a registered cluster (its
// service-account signing key is the test's), a Pod Identity role and an
// association for default/app: the real AssumeRoleForPodIdentity path.
type podidCluster struct {
	Inst    *servertest.Instance // nil when the server is another process
	URL     string
	Admin   aws.Credentials
	RoleARN string
	key     *rsa.PrivateKey
}

const (
	issuerURL      = "https://oidc.c1.podid.test"
	agentNamespace = "kube-system"
	agentSA        = "podid-agent"
)

func startPodidCluster(t testing.TB) *podidCluster {
	t.Helper()
	inst := servertest.Start(t, func(c *server.Config) { c.AgentServiceAccounts = []string{agentNamespace + "/" + agentSA} })
	c := setupCluster(t, inst.URL, aws.Credentials{AccessKeyID: inst.AccessKeyID, SecretAccessKey: inst.SecretAccessKey}, cluster)
	c.Inst = inst
	return c
}

// setupCluster registers clusterName on the server at url with a fresh
// signing key, and creates the role and the association for default/app.
func setupCluster(t testing.TB, url string, admin aws.Credentials, clusterName string) *podidCluster {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	c := &podidCluster{URL: url, Admin: admin, key: key}
	jwks := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}}
	body, _ := json.Marshal(podideks.RegisterClusterInput{Name: clusterName, Issuer: issuerURL, JWKS: mustJSON(jwks)})
	req, _ := http.NewRequestWithContext(ctx(t), http.MethodPost, url+"/podid/clusters", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx(t), admin, req, hex.EncodeToString(sum[:]), "eks", region, time.Now()); err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("register cluster: %d %s", resp.StatusCode, b)
	}

	cfg := aws.Config{Region: region, Credentials: credentials.StaticCredentialsProvider{Value: admin},
		BaseEndpoint: aws.String(url), RetryMaxAttempts: 1}
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"pods.eks.amazonaws.com"},"Action":["sts:AssumeRole","sts:TagSession"]}]}`
	role, err := iam.NewFromConfig(cfg).CreateRole(ctx(t), &iam.CreateRoleInput{RoleName: aws.String(roleName), AssumeRolePolicyDocument: aws.String(trust)})
	if err != nil {
		t.Fatalf("CreateRole: %v", err)
	}
	c.RoleARN = aws.ToString(role.Role.Arn)
	if _, err := eks.NewFromConfig(cfg).CreatePodIdentityAssociation(ctx(t), &eks.CreatePodIdentityAssociationInput{
		ClusterName: aws.String(clusterName), Namespace: aws.String("default"), ServiceAccount: aws.String("app"), RoleArn: role.Role.Arn,
	}); err != nil {
		t.Fatalf("CreatePodIdentityAssociation: %v", err)
	}
	return c
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// token mints a projected service-account token as a kube-apiserver would,
// bound to a pod on node.
func (c *podidCluster) token(t testing.TB, aud, namespace, sa, pod, node string) string {
	t.Helper()
	now := time.Now()
	claims := map[string]any{
		"iss": issuerURL, "sub": "system:serviceaccount:" + namespace + ":" + sa, "aud": []string{aud},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(24 * time.Hour).Unix(),
		"kubernetes.io": map[string]any{
			"namespace":      namespace,
			"serviceaccount": map[string]any{"name": sa, "uid": "5d0c2f4e-0000-4000-8000-000000000001"},
			"pod":            map[string]any{"name": pod, "uid": "5d0c2f4e-0000-4000-8000-" + fmt.Sprintf("%012d", len(pod))},
			"node":           map[string]any{"name": node, "uid": "5d0c2f4e-0000-4000-8000-0000000000ff"},
		},
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: c.key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// podToken is the pod's token (audience pods.eks.amazonaws.com) for
// default/app on node.
func (c *podidCluster) podToken(t testing.TB, pod, node string) string {
	return c.token(t, "pods.eks.amazonaws.com", "default", "app", pod, node)
}

// agentUpstream is an EKS Auth client for the real server authenticated
// with the agent's own token (mode 2), bound to node.
func (c *podidCluster) agentUpstream(t testing.TB, node string) *eksauth.Client {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "agent-token")
	tok := c.token(t, "podid", agentNamespace, agentSA, "podid-agent-"+node, node)
	if err := os.WriteFile(tokenFile, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	return &eksauth.Client{Endpoint: c.URL, Auth: &eksauth.BearerTokenFile{Path: tokenFile}, HTTPClient: &http.Client{}}
}

// sigv4Upstream is an EKS Auth client for the real server signed with the
// administrator's keys (mode 1).
func (c *podidCluster) sigv4Upstream() *eksauth.Client {
	return &eksauth.Client{Endpoint: c.URL, HTTPClient: &http.Client{}, Auth: &eksauth.SigV4{
		Credentials: credentials.StaticCredentialsProvider{Value: c.Admin}, Region: region}}
}

// fakeEKSAuth is the server side of AssumeRoleForPodIdentity as documented
// (restJson1 shapes, error codes and statuses), handing out a real role
// session of a real podid server for the pod tokens it knows. The fault
// tests use it because it can be stopped and restarted on the same address,
// made to fail or to stall, while the real server keeps verifying the
// credentials; everything else runs against the real server's EKS Auth.
type fakeEKSAuth struct {
	t       testing.TB
	session *roleSession
	addr    string

	calls  atomic.Int64
	mode   atomic.Value // "", "500", "503", "429", "slow"
	delay  atomic.Int64 // ns, for "slow"
	mu     sync.Mutex
	tokens map[string]bool
	srv    *http.Server
	ln     net.Listener
}

func newFakeEKSAuth(t testing.TB, s *roleSession, tokens ...string) *fakeEKSAuth {
	f := &fakeEKSAuth{t: t, session: s, tokens: map[string]bool{}}
	for _, tk := range tokens {
		f.tokens[tk] = true
	}
	f.mode.Store("")
	f.start("127.0.0.1:0")
	t.Cleanup(f.stop)
	return f
}

func (f *fakeEKSAuth) URL() string { return "http://" + f.addr }

func (f *fakeEKSAuth) start(addr string) {
	f.t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the old socket may linger briefly
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		f.t.Fatalf("fake EKS Auth listen: %v", err)
	}
	f.mu.Lock()
	f.ln, f.addr = ln, ln.Addr().String()
	f.srv = &http.Server{Handler: f}
	srv := f.srv
	f.mu.Unlock()
	go srv.Serve(ln)
}

func (f *fakeEKSAuth) stop() {
	f.mu.Lock()
	srv := f.srv
	f.srv = nil
	f.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// restart brings the server back on the same address.
func (f *fakeEKSAuth) restart() { f.start(f.addr) }

func (f *fakeEKSAuth) fail(code, msg string, status int, w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-ErrorType", code)
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": code, "message": msg})
}

func (f *fakeEKSAuth) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	if r.Method != http.MethodPost || len(parts) != 3 || parts[0] != "clusters" || parts[2] != "assume-role-for-pod-identity" {
		f.fail("UnknownOperationException", "no such operation", http.StatusNotFound, w)
		return
	}
	// Read the body first: only then does net/http notice a client that
	// hangs up (and cancel r.Context) while the handler stalls.
	var in struct {
		Token string `json:"token"`
	}
	decodeErr := json.NewDecoder(r.Body).Decode(&in)
	_, _ = io.Copy(io.Discard, r.Body)
	switch f.mode.Load().(string) {
	case "500":
		f.fail("InternalServerException", "injected failure", 500, w)
		return
	case "503":
		f.fail("ServiceUnavailableException", "injected failure", 503, w)
		return
	case "429":
		f.fail("ThrottlingException", "Rate exceeded", 429, w)
		return
	case "slow":
		select {
		case <-time.After(time.Duration(f.delay.Load())):
		case <-r.Context().Done():
			return
		}
	}
	if r.Header.Get("Authorization") != "Bearer "+agentToken {
		f.fail("AccessDeniedException", "agent not authenticated", 400, w)
		return
	}
	if decodeErr != nil || in.Token == "" {
		f.fail("InvalidParameterException", "token is required", 400, w)
		return
	}
	if parts[1] != cluster {
		f.fail("ResourceNotFoundException", "No cluster found for name: "+parts[1], 404, w)
		return
	}
	f.mu.Lock()
	known := f.tokens[in.Token]
	f.mu.Unlock()
	if !known {
		f.fail("InvalidTokenException", "The service account token is not valid", 400, w)
		return
	}
	s := f.session
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{
		"subject":                map[string]string{"namespace": "default", "serviceAccount": "app"},
		"audience":               "pods.eks.amazonaws.com",
		"podIdentityAssociation": map[string]string{"associationArn": "arn:aws:eks:us-east-1:111122223333:podidentityassociation/c1/a-0123456789abcdefg", "associationId": "a-0123456789abcdefg"},
		"assumedRoleUser":        map[string]string{"arn": s.Arn, "assumeRoleId": s.RoleID},
		"credentials": map[string]any{
			"sessionToken": s.Creds.SessionToken, "secretAccessKey": s.Creds.SecretAccessKey,
			"accessKeyId": s.Creds.AccessKeyID, "expiration": s.Creds.Expires.Unix(),
		},
	})
}

// newUpstream is the agent's EKS Auth client, authenticated with an agent
// token file (mode 2).
func newUpstream(t testing.TB, url string) *eksauth.Client {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "agent-token")
	if err := os.WriteFile(tokenFile, []byte(agentToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return &eksauth.Client{Endpoint: url, Auth: &eksauth.BearerTokenFile{Path: tokenFile}, HTTPClient: &http.Client{}}
}

// runningAgent is an in-process agent on a loopback port.
type runningAgent struct {
	*agent.Agent
	URL     string // http://127.0.0.1:PORT/v1/credentials
	Health  string
	Metrics string
	stop    func()
}

func startAgent(t testing.TB, upstreamURL string, mutate ...func(*agent.Config)) *runningAgent {
	t.Helper()
	return startAgentWith(t, newUpstream(t, upstreamURL), mutate...)
}

func startAgentWith(t testing.TB, up agent.Upstream, mutate ...func(*agent.Config)) *runningAgent {
	t.Helper()
	cfg := agent.Config{Cluster: cluster, Upstream: up, Logger: logger(t)}
	for _, m := range mutate {
		m(&cfg)
	}
	a, err := agent.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	lns, err := agent.Listen([]string{"127.0.0.1:0"}, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(c, lns, nil) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("agent: %v", err)
			}
			lns.Close()
		})
	}
	t.Cleanup(stop)
	return &runningAgent{Agent: a, URL: "http://" + lns.Credentials[0].Addr().String() + "/v1/credentials",
		Health: "http://" + lns.Health.Addr().String(), Metrics: "http://" + lns.Metrics.Addr().String(), stop: stop}
}

// writeToken writes a pod token file as the kubelet would.
func writeToken(t testing.TB, token string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "eks-pod-identity-token")
	if err := os.WriteFile(p, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// sdkEnv is the environment the webhook injects, plus the STS endpoint.
func sdkEnv(credsURL, tokenFile, stsURL string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"AWS_CONTAINER_CREDENTIALS_FULL_URI="+credsURL,
		"AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE="+tokenFile,
		"AWS_REGION="+region,
		"AWS_DEFAULT_REGION="+region,
		"AWS_ENDPOINT_URL_STS="+stsURL,
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_CONFIG_FILE=/nonexistent/podid-test-config",
		"AWS_SHARED_CREDENTIALS_FILE=/nonexistent/podid-test-credentials",
	)
}

// identity is what an SDK reports.
type identity struct {
	Arn, Account, AccessKeyId, Expiration, Error string
}

// goSDK runs aws-sdk-go-v2's default chain in-process with env applied.
func goSDK(t testing.TB, env []string, callSTS bool) identity {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, v)
		}
	}
	cfg, err := config.LoadDefaultConfig(ctx(t))
	if err != nil {
		return identity{Error: err.Error()}
	}
	creds, err := cfg.Credentials.Retrieve(ctx(t))
	if err != nil {
		return identity{Error: err.Error()}
	}
	id := identity{AccessKeyId: creds.AccessKeyID, Expiration: creds.Expires.UTC().Format(time.RFC3339)}
	if callSTS {
		out, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
		if err != nil {
			return identity{Error: err.Error()}
		}
		id.Arn, id.Account = aws.ToString(out.Arn), aws.ToString(out.Account)
	}
	return id
}

// sdkDir is this directory, where the SDK probes are.
func sdkDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(file)
}

// boto runs boto3 (botocore's default chain) in a python3 subprocess,
// optionally inside a network namespace.
func boto(t testing.TB, env []string, callSTS bool, netns string) identity {
	t.Helper()
	args := []string{"python3", filepath.Join(sdkDir(), "probe.py")}
	if callSTS {
		args = append(args, "sts")
	}
	if netns != "" {
		args = append([]string{"ip", "netns", "exec", netns}, args...)
	}
	return runJSON(t, exec.Command(args[0], args[1:]...), env)
}

// tmpDir holds what the tests build once (the gosdk binary).
var tmpDir string

func TestMain(m *testing.M) {
	var err error
	if tmpDir, err = os.MkdirTemp("", "podid-sdk-test-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(tmpDir)
	os.Exit(code)
}

var (
	buildMu  sync.Mutex
	binaries = map[string]string{}
)

// build compiles a main package of this module once per test run.
func build(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := binaries[pkg]; ok {
		return bin
	}
	bin := filepath.Join(tmpDir, filepath.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	binaries[pkg] = bin
	return bin
}

// goSDKProcess runs test/sdk/gosdk (aws-sdk-go-v2's default chain) in a
// subprocess, optionally inside a network namespace.
func goSDKProcess(t testing.TB, env []string, callSTS bool, netns string) identity {
	t.Helper()
	bin := build(t, "github.com/podid/podid/test/sdk/gosdk")
	args := []string{bin}
	if callSTS {
		args = append(args, "sts")
	}
	if netns != "" {
		args = append([]string{"ip", "netns", "exec", netns}, args...)
	}
	return runJSON(t, exec.Command(args[0], args[1:]...), env)
}

var npmOnce sync.Once

// jsSDK runs the AWS SDK for JavaScript v3 (default Node.js chain) in a node
// subprocess. It installs test/sdk/js/node_modules with npm if missing.
func jsSDK(t testing.TB, env []string, netns string) identity {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node is not installed; the JavaScript SDK test needs Node.js ≥ 18 and npm")
	}
	dir := filepath.Join(sdkDir(), "js")
	npmOnce.Do(func() {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", "@aws-sdk", "client-sts")); err == nil {
			return
		}
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("npm ci in %s: %v\n%s", dir, err, out)
		}
	})
	args := []string{"node", "probe.mjs", "sts"}
	if netns != "" {
		args = append([]string{"ip", "netns", "exec", netns}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	return runJSON(t, cmd, env)
}

func runJSON(t testing.TB, cmd *exec.Cmd, env []string) identity {
	t.Helper()
	cmd.Env = env
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var id identity
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if jerr := json.Unmarshal([]byte(lines[len(lines)-1]), &id); jerr != nil {
		t.Fatalf("%s: %v; output %q, stderr:\n%s", cmd.Args[0], errors.Join(err, jerr), out, stderr.String())
	}
	return id
}
