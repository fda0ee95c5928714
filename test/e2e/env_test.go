//go:build linux

package e2e

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podid/podid/internal/kubetest"
	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/webhook/webhooktest"
)

const (
	clusterName = "e2e"
	region      = "us-east-1"
	account     = "111122223333"
	nodeName    = "node-1"
	appNS       = "shop"
	piSA        = "pi-app"   // has a Pod Identity association
	irsaSA      = "irsa-app" // annotated eks.amazonaws.com/role-arn
	piRole      = "pi-role"
	irsaRole    = "irsa-role"
	agentNS     = "kube-system"
	agentSA     = "podid-agent"
	// agentTTL is the agent's --refresh-ttl: how long it answers a pod from
	// its cache before asking the server again (3 h by default, as the
	// upstream agent; short here so the association scenario is quick).
	agentTTL = 20 * time.Second
	// image names the "image" of the test's containers; nothing pulls it.
	image = "podid.test/e2e-probe:latest"
)

// env is the whole system: apiserver, server, node, agent, webhook.
type env struct {
	kube    *kubetest.Cluster
	cs      kubernetes.Interface
	net     *network
	srv     *podidServer
	kubelet *kubelet
	agent   *process
	webhook *process
	node    *http.Client // the test's HTTP view from inside the node

	piRoleARN, irsaRoleARN, assocID string
}

// step logs how long a setup step took.
func step(t *testing.T, what string, start time.Time) {
	t.Helper()
	t.Logf("%-58s %6.2fs", what, time.Since(start).Seconds())
}

func setup(t *testing.T) *env {
	t.Helper()
	e := &env{}
	at := time.Now()
	e.kube = kubetest.Start(t, kubetest.Options{Issuer: kubetest.SelfIssuer})
	e.cs = e.kube.Clientset(t)
	step(t, "kube-apiserver + etcd ready, issuer "+e.kube.Issuer, at)

	at = time.Now()
	e.net = newNetwork(t)
	e.node = httpClientIn(e.net.node)
	dataDir := t.TempDir()
	e.srv = startServer(t, server.Config{
		DataDir:   dataDir,
		AccountID: account,
		Region:    region,
		AuditLog:  filepath.Join(dataDir, "audit.log"),
		// IRSA: STS fetches the issuer's discovery document and JWKS from
		// the apiserver itself, over HTTPS signed by the cluster's CA.
		OIDCCAFile:           e.kube.CAFile,
		AgentServiceAccounts: []string{agentNS + "/" + agentSA},
	}, e.net)
	step(t, "namespaces, veth, podid server on "+e.srv.URL()+" and "+e.srv.NodeURL(), at)

	at = time.Now()
	out := e.podidCLI(t, "cluster", "register", "--name", clusterName, "--issuer", e.kube.Issuer,
		"--kubeconfig", e.kube.Kubeconfig, "--token-review")
	if !strings.Contains(out, `"name": "`+clusterName+`"`) {
		t.Fatalf("cluster register printed:\n%s", out)
	}
	step(t, "podid cluster register --kubeconfig --token-review", at)

	at = time.Now()
	e.iamSetup(t)
	step(t, "aws iam/eks: roles, OIDC provider, association", at)

	at = time.Now()
	e.kubeObjects(t)
	e.startAgent(t)
	step(t, "node: setup-network, agent ready", at)

	at = time.Now()
	e.startWebhook(t)
	step(t, "webhook registered and mutating", at)
	return e
}

// awsEnv is the environment of the admin's tools (aws CLI, podid CLI,
// webhook): the server's endpoint and the admin's credentials file, and
// nothing from the host's own AWS configuration.
func (e *env) awsEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env,
		"AWS_ENDPOINT_URL="+e.srv.URL(),
		"AWS_SHARED_CREDENTIALS_FILE="+e.srv.CredentialsFile(),
		"AWS_CONFIG_FILE=/nonexistent/podid-e2e",
		"AWS_DEFAULT_REGION="+region,
		"AWS_REGION="+region,
		"AWS_EC2_METADATA_DISABLED=true",
	)
}

func (e *env) podidCLI(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(bins.podid, args...)
	cmd.Env = e.awsEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("podid %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// awsCLI runs the aws CLI against the server and decodes its JSON output.
func (e *env) awsCLI(t *testing.T, args ...string) map[string]any {
	t.Helper()
	cmd := exec.Command(bins.aws, append(args, "--output", "json")...)
	cmd.Env = e.awsEnv()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("aws %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	m := map[string]any{}
	if len(strings.TrimSpace(string(out))) > 0 {
		if err := json.Unmarshal(out, &m); err != nil {
			t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return m
}

// str digs a string out of decoded JSON.
func str(m map[string]any, keys ...string) string {
	var v any = m
	for _, k := range keys {
		mm, _ := v.(map[string]any)
		v = mm[k]
	}
	s, _ := v.(string)
	return s
}

// iamSetup creates, with the aws CLI as an administrator would: the Pod
// Identity role and its association, the cluster's IAM OIDC provider and
// the IRSA role that trusts it.
func (e *env) iamSetup(t *testing.T) {
	t.Helper()
	piTrust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"pods.eks.amazonaws.com"},"Action":["sts:AssumeRole","sts:TagSession"]}]}`
	e.piRoleARN = str(e.awsCLI(t, "iam", "create-role", "--role-name", piRole, "--assume-role-policy-document", piTrust), "Role", "Arn")
	a := e.awsCLI(t, "eks", "create-pod-identity-association", "--cluster-name", clusterName,
		"--namespace", appNS, "--service-account", piSA, "--role-arn", e.piRoleARN)
	e.assocID = str(a, "association", "associationId")
	if e.assocID == "" {
		t.Fatalf("create-pod-identity-association: %v", a)
	}

	pemBytes, err := os.ReadFile(e.kube.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(pemBytes)
	sum := sha1.Sum(block.Bytes)
	p := e.awsCLI(t, "iam", "create-open-id-connect-provider", "--url", e.kube.Issuer,
		"--client-id-list", "sts.amazonaws.com", "--thumbprint-list", hex.EncodeToString(sum[:]))
	providerARN := str(p, "OpenIDConnectProviderArn")
	host := strings.TrimPrefix(e.kube.Issuer, "https://")
	irsaTrust := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Federated":%q},`+
		`"Action":"sts:AssumeRoleWithWebIdentity","Condition":{"StringEquals":{%q:%q,%q:"sts.amazonaws.com"}}}]}`,
		providerARN, host+":sub", "system:serviceaccount:"+appNS+":"+irsaSA, host+":aud")
	e.irsaRoleARN = str(e.awsCLI(t, "iam", "create-role", "--role-name", irsaRole, "--assume-role-policy-document", irsaTrust), "Role", "Arn")
}

// kubeObjects creates what the controller manager and the nodes would
// have: the Node, the namespace, the service accounts (no controller makes
// them here), and the agent's DaemonSet pod bound to the node.
func (e *env) kubeObjects(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(e.cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: nodeName}}, metav1.CreateOptions{}))
	must(e.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNS}}, metav1.CreateOptions{}))
	must(e.cs.CoreV1().ServiceAccounts(appNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: piSA}}, metav1.CreateOptions{}))
	must(e.cs.CoreV1().ServiceAccounts(appNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: irsaSA,
		Annotations: map[string]string{"eks.amazonaws.com/role-arn": e.irsaRoleARN}}}, metav1.CreateOptions{}))
	must(e.cs.CoreV1().ServiceAccounts(agentNS).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: agentSA}}, metav1.CreateOptions{}))
	e.kubelet = &kubelet{cs: e.cs, node: e.net.node, name: nodeName, dir: t.TempDir()}
}

// startAgent runs `podid agent setup-network`, then the agent, inside the
// node's namespace, as the DaemonSet's init container and container would.
// The agent authenticates with its own projected token (audience "podid",
// bound to its pod on this node), so the server also checks that pod
// tokens come from this node.
func (e *env) startAgent(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	no := false
	agentPod, err := e.cs.CoreV1().Pods(agentNS).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "podid-agent-" + nodeName},
		Spec: corev1.PodSpec{NodeName: nodeName, ServiceAccountName: agentSA, AutomountServiceAccountToken: &no, HostNetwork: true,
			Containers: []corev1.Container{{Name: "agent", Image: image}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	exp := int64(3600)
	tokenFile := filepath.Join(t.TempDir(), "agent-token")
	if err := os.WriteFile(tokenFile, []byte(e.kubelet.tokenRequest(t, agentPod, "podid", &exp)), 0o600); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command("ip", "netns", "exec", e.net.node.Name, bins.podid, "agent", "setup-network").CombinedOutput()
	if err != nil {
		t.Fatalf("podid agent setup-network: %v\n%s", err, out)
	}
	t.Logf("podid agent setup-network: %s", strings.TrimSpace(string(out)))

	e.agent = startProcess(t, "agent", []string{"PATH=" + os.Getenv("PATH")},
		"ip", "netns", "exec", e.net.node.Name, bins.podid, "agent",
		"--server", e.srv.NodeURL(), "--cluster", clusterName, "--token-file", tokenFile,
		"--refresh-ttl", agentTTL.String(), "--log-level", "info")
	waitFor(t, "the agent's /readyz inside the node", 20*time.Second, 100*time.Millisecond, func() (bool, error) {
		if e.agent.exited() {
			t.Fatalf("agent exited:\n%s", e.agent.tail(30))
		}
		resp, err := e.node.Get("http://localhost:2703/readyz")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("status %s", resp.Status)
	})
}

// startWebhook registers the webhook (clientConfig.url; the webhook puts
// its self-signed CA in caBundle) and runs `podid webhook`, which lists
// associations from the server with the admin's credentials.
func (e *env) startWebhook(t *testing.T) {
	t.Helper()
	port := freePort(t)
	// Registered from deploy/webhook.yaml, aimed at this process.
	_, err := e.cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(context.Background(),
		webhooktest.Configuration(t, "https://127.0.0.1:"+port+"/mutate"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.webhook = startProcess(t, "webhook", e.awsEnv(), bins.podid, "webhook",
		"--listen", "127.0.0.1:"+port, "--cluster", clusterName, "--server", e.srv.URL(),
		"--kubeconfig", e.kube.Kubeconfig, "--tls-self-signed", "--region", region)
	// Ready when the apiserver demonstrably calls it: a dry-run pod of the
	// associated service account comes back mutated.
	waitFor(t, "the webhook to mutate pods", 30*time.Second, 200*time.Millisecond, func() (bool, error) {
		if e.webhook.exited() {
			t.Fatalf("webhook exited:\n%s", e.webhook.tail(30))
		}
		p, err := e.dryRun(piSA)
		if err != nil {
			return false, err
		}
		return envOf(p.Spec.Containers[0])["AWS_CONTAINER_CREDENTIALS_FULL_URI"] != "", fmt.Errorf("not mutated yet")
	})
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := listenLocal()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, port, _ := strings.Cut(ln.Addr().String(), ":")
	return port
}

// podSpec is a pod of sa on the node with the given containers. The test
// adds two env vars to each container, as a podid user would:
// AWS_ENDPOINT_URL (the SDKs' STS is the podid server, not sts.amazonaws.com)
// and AWS_EC2_METADATA_DISABLED (no IMDS exists; it only makes a failing
// chain fail faster).
func (e *env) podSpec(name, sa string, containers ...corev1.Container) *corev1.Pod {
	no := false
	for i := range containers {
		c := &containers[i]
		if c.Name == "" {
			c.Name = "app"
		}
		c.Image = image
		c.Env = append(c.Env,
			corev1.EnvVar{Name: "AWS_ENDPOINT_URL", Value: e.srv.NodeURL()},
			corev1.EnvVar{Name: "AWS_EC2_METADATA_DISABLED", Value: "true"})
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: appNS},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			NodeName:           nodeName, // no scheduler: bound to the node at creation
			// Only the AWS token volumes the webhook injects: the apiserver
			// token would need kube-root-ca.crt, which no controller makes.
			AutomountServiceAccountToken: &no,
			RestartPolicy:                corev1.RestartPolicyNever,
			Containers:                   containers,
		},
	}
}

// createPod creates the pod through the apiserver (admission runs the
// webhook) and returns the stored, mutated pod.
func (e *env) createPod(t *testing.T, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	out, err := e.cs.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create pod %s: %v", p.Name, err)
	}
	return out
}

// dryRun creates a pod of sa with dryRun=All: admission (the webhook)
// runs, nothing is stored.
func (e *env) dryRun(sa string) (*corev1.Pod, error) {
	p := e.podSpec("dry-run", sa, corev1.Container{Command: []string{"true"}})
	return e.cs.CoreV1().Pods(appNS).Create(context.Background(), p, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
}

func envOf(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

// tokenVolume returns the projected token source of the named volume.
func tokenVolume(p *corev1.Pod, name string) *corev1.ServiceAccountTokenProjection {
	for _, v := range p.Spec.Volumes {
		if v.Name == name && v.Projected != nil && len(v.Projected.Sources) == 1 {
			return v.Projected.Sources[0].ServiceAccountToken
		}
	}
	return nil
}

func mountOf(c corev1.Container, volume string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].Name == volume {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

// Injected values, as the seeds show them.
const (
	piURI       = "http://169.254.170.23/v1/credentials"
	piTokenDir  = "/var/run/secrets/pods.eks.amazonaws.com/serviceaccount"
	piTokenFile = piTokenDir + "/eks-pod-identity-token"
	irsaDir     = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
	irsaFile    = irsaDir + "/token"
)

// checkPodIdentityMutation asserts seed step 1 for every container.
func checkPodIdentityMutation(t *testing.T, p *corev1.Pod) {
	t.Helper()
	v := tokenVolume(p, "eks-pod-identity-token")
	switch {
	case v == nil:
		t.Fatalf("pod %s has no eks-pod-identity-token volume: %+v", p.Name, p.Spec.Volumes)
	case v.Audience != "pods.eks.amazonaws.com" || v.Path != "eks-pod-identity-token":
		t.Errorf("pod %s token projection: %+v", p.Name, v)
	case v.ExpirationSeconds == nil || *v.ExpirationSeconds < 86400-7200 || *v.ExpirationSeconds > 86400:
		t.Errorf("pod %s token expirationSeconds: %v", p.Name, v.ExpirationSeconds)
	}
	if p.Labels["eks.amazonaws.com/pod-identity"] != "enabled" {
		t.Errorf("pod %s labels: %v", p.Name, p.Labels)
	}
	for _, c := range p.Spec.Containers {
		env := envOf(c)
		if env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] != piURI || env["AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"] != piTokenFile ||
			env["AWS_REGION"] != region || env["AWS_DEFAULT_REGION"] != region || env["AWS_ROLE_ARN"] != "" {
			t.Errorf("pod %s container %s env: %v", p.Name, c.Name, env)
		}
		if m := mountOf(c, "eks-pod-identity-token"); m == nil || strings.TrimSuffix(m.MountPath, "/") != piTokenDir || !m.ReadOnly {
			t.Errorf("pod %s container %s mount: %+v", p.Name, c.Name, m)
		}
	}
}

// checkIRSAMutation asserts the IRSA injection for every container.
func checkIRSAMutation(t *testing.T, p *corev1.Pod, roleARN string) {
	t.Helper()
	v := tokenVolume(p, "aws-iam-token")
	if v == nil || v.Audience != "sts.amazonaws.com" || v.Path != "token" || v.ExpirationSeconds == nil || *v.ExpirationSeconds != 86400 {
		t.Fatalf("pod %s aws-iam-token projection: %+v (volumes %+v)", p.Name, v, p.Spec.Volumes)
	}
	for _, c := range p.Spec.Containers {
		env := envOf(c)
		if env["AWS_ROLE_ARN"] != roleARN || env["AWS_WEB_IDENTITY_TOKEN_FILE"] != irsaFile || env["AWS_CONTAINER_CREDENTIALS_FULL_URI"] != "" {
			t.Errorf("pod %s container %s env: %v", p.Name, c.Name, env)
		}
		if m := mountOf(c, "aws-iam-token"); m == nil || strings.TrimSuffix(m.MountPath, "/") != irsaDir || !m.ReadOnly {
			t.Errorf("pod %s container %s mount: %+v", p.Name, c.Name, m)
		}
	}
}

// checkNoMutation asserts that the webhook left the pod alone.
func checkNoMutation(t *testing.T, p *corev1.Pod) {
	t.Helper()
	if len(p.Spec.Volumes) != 0 || p.Labels["eks.amazonaws.com/pod-identity"] != "" {
		t.Errorf("pod %s was mutated: volumes %+v labels %v", p.Name, p.Spec.Volumes, p.Labels)
	}
	for _, c := range p.Spec.Containers {
		for k := range envOf(c) {
			if k != "AWS_ENDPOINT_URL" && k != "AWS_EC2_METADATA_DISABLED" {
				t.Errorf("pod %s container %s: unexpected env %s", p.Name, c.Name, k)
			}
		}
	}
}

// podIdentityARN matches the seed's assumed-role ARN for a pod:
// assumed-role/<role>/eks-<cluster>-<pod>-<uuid>.
func podIdentityARN(pod string) *regexp.Regexp {
	return regexp.MustCompile(`^arn:aws:sts::` + account + `:assumed-role/` + piRole + `/eks-` + clusterName + `-` +
		regexp.QuoteMeta(pod) + `-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
}

// auditHas reports whether the server's audit log has a line with all of
// the given substrings.
func (e *env) auditHas(subs ...string) bool {
	f, err := os.Open(e.srv.cfg.AuditLog)
	if err != nil {
		return false
	}
	defer f.Close()
	b, _ := io.ReadAll(f)
	for _, line := range strings.Split(string(b), "\n") {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			return true
		}
	}
	return false
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
