package integration

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/podid/podid/internal/cli"
	"github.com/podid/podid/internal/kubetest"
	"github.com/podid/podid/internal/server/servertest"
)

// seedCLIOutput is the `aws eks-auth assume-role-for-pod-identity` output
// of the seed (a field report from a real EKS cluster), values shortened.
const seedCLIOutput = `{
    "subject": {"namespace": "default", "serviceAccount": "test-irsa"},
    "audience": "pods.eks.amazonaws.com",
    "podIdentityAssociation": {
        "associationArn": "arn:aws-cn:eks:cn-north-1:xxxxxxxxxxx:podidentityassociation/test127/a-ljfzpyuh61pknjtiq",
        "associationId": "a-ljfzpyuh61pknjtiq"
    },
    "assumedRoleUser": {
        "arn": "arn:aws-cn:sts::xxxxxxxxxxx:assumed-role/myPIArole/eks-test127-test-irsa--b95c1a6e-74b2-4da5-97e0-4b105da0638f",
        "assumeRoleId": "AROAQxxxx4IEQW2:eks-test127-test-irsa--b95c1a6e-74b2-4da5-97e0-4b105da0638f"
    },
    "credentials": {
        "sessionToken": "FwoDYXdztjf4=",
        "secretAccessKey": "wNqAp8xxxxxxxxxxxyoa+zpWJ",
        "accessKeyId": "ASIAQRIBWRJKFSMXKL5U",
        "expiration": "2024-05-09T12:23:23+00:00"
    }
}`

// shape is v with every leaf replaced by its JSON type, to compare the
// structure of two documents.
func shape(v any) any {
	switch t := v.(type) {
	case map[string]any:
		m := map[string]any{}
		for k, e := range t {
			m[k] = shape(e)
		}
		return m
	case []any:
		return "array"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "bool"
	}
	return "null"
}

// runPodid runs the podid CLI in-process against inst as its administrator
// and decodes the JSON it prints.
func runPodid(t *testing.T, inst *servertest.Instance, args ...string) map[string]any {
	t.Helper()
	isolateEnv(t)
	t.Setenv("AWS_ACCESS_KEY_ID", inst.AccessKeyID)
	t.Setenv("AWS_SECRET_ACCESS_KEY", inst.SecretAccessKey)
	root := cli.NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(append(args, "--endpoint-url", inst.URL))
	if err := root.ExecuteContext(ctx(t)); err != nil {
		t.Fatalf("podid %s: %v", strings.Join(args, " "), err)
	}
	var v map[string]any
	if err := json.Unmarshal(out.Bytes(), &v); err != nil {
		t.Fatalf("podid %s printed %q: %v", strings.Join(args, " "), out.Bytes(), err)
	}
	return v
}

// kubePod is a pod (on a node, so its tokens carry node claims) of a
// fresh namespace with service account "app".
type kubePod struct {
	cs        kubernetes.Interface
	namespace string
}

func newKubePod(t *testing.T, cs kubernetes.Interface) *kubePod {
	t.Helper()
	c := ctx(t)
	if _, err := cs.CoreV1().Nodes().Create(c, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ns, err := cs.CoreV1().Namespaces().Create(c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "podid-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ServiceAccounts(ns.Name).Create(c, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "app"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return &kubePod{cs: cs, namespace: ns.Name}
}

func (k *kubePod) createPod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	p, err := k.cs.CoreV1().Pods(k.namespace).Create(ctx(t), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{ServiceAccountName: "app", NodeName: "node-1",
			Containers: []corev1.Container{{Name: "app", Image: "example.invalid/app"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// token asks the apiserver's TokenRequest API for a token of service
// account "app", bound to pod if it is not nil.
func (k *kubePod) token(t *testing.T, audience string, pod *corev1.Pod) string {
	t.Helper()
	req := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: aws.Int64(3600)}}
	if pod != nil {
		req.Spec.BoundObjectRef = &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := k.cs.CoreV1().ServiceAccounts(k.namespace).CreateToken(ctx(t), "app", req, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// TestPodIdentityWithKubeAPIServer exchanges tokens from a real
// kube-apiserver's TokenRequest API: the cluster registered with its
// kubeconfig (the server reads /openid/v1/jwks), the role and association
// made with the podid CLI, the exchange made by botocore's eks-auth client
// and by the aws CLI; then TokenReview mode rejects a deleted pod's token.
func TestPodIdentityWithKubeAPIServer(t *testing.T) {
	requireBoto3(t)
	kc := kubetest.Start(t, kubetest.Options{})
	k := newKubePod(t, kc.Clientset(t))
	inst := servertest.Start(t)

	// Without --issuer the CLI asks the apiserver's discovery document.
	registered := runPodid(t, inst, "cluster", "register", "--name", "kube", "--kubeconfig", kc.Kubeconfig)
	if got := registered["cluster"].(map[string]any)["identity"].(map[string]any)["oidc"].(map[string]any)["issuer"]; got != kc.Issuer {
		t.Errorf("registered issuer = %v, want %s", got, kc.Issuer)
	}
	runPodid(t, inst, "cluster", "register", "--name", "kube-tr", "--issuer", kc.Issuer, "--kubeconfig", kc.Kubeconfig, "--token-review")
	role := runPodid(t, inst, "role", "create", "--name", "kube-app", "--pod-identity")["Role"].(map[string]any)
	roleARN := role["Arn"].(string)
	var assocID, assocARN string
	for _, cluster := range []string{"kube", "kube-tr"} {
		a := runPodid(t, inst, "association", "create", "--cluster", cluster, "--namespace", k.namespace, "--service-account", "app", "--role-arn", roleARN)["association"].(map[string]any)
		if cluster == "kube" {
			assocID, assocARN = a["associationId"].(string), a["associationArn"].(string)
		}
	}

	pod := k.createPod(t, "app")
	doomed := k.createPod(t, "doomed")
	podToken, doomedToken := k.token(t, podAudience, pod), k.token(t, podAudience, doomed)
	irsaToken, unboundToken := k.token(t, "sts.amazonaws.com", pod), k.token(t, podAudience, nil)
	res := botoAssume(t, inst,
		podCall{Cluster: "kube", Token: podToken},
		// A live pod's token passes TokenReview. (The doomed pod's token is
		// not reviewed before its pod goes: the apiserver caches successes.)
		podCall{Cluster: "kube-tr", Token: podToken},
		podCall{Cluster: "kube", Token: irsaToken},
		podCall{Cluster: "kube", Token: unboundToken},
	)
	r := res[0]
	if r.Code != "" {
		t.Fatalf("AssumeRoleForPodIdentity: %s (HTTP %d): %s", r.Code, r.Status, r.Message)
	}
	var seed map[string]any
	if err := json.Unmarshal([]byte(seedCLIOutput), &seed); err != nil {
		t.Fatal(err)
	}
	if got, want := mustJSON(shape(r.Response)), mustJSON(shape(seed)); got != want {
		t.Errorf("response shape\n got %s\nwant %s", got, want)
	}
	sessionRE := regexp.MustCompile(`^eks-kube-app-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	user := r.Response["assumedRoleUser"].(map[string]any)
	arn, _ := user["arn"].(string)
	session := strings.TrimPrefix(arn, "arn:aws:sts::111122223333:assumed-role/kube-app/")
	id, _ := user["assumeRoleId"].(string)
	if !sessionRE.MatchString(session) || !strings.HasPrefix(id, "AROA") || !strings.HasSuffix(id, ":"+session) {
		t.Errorf("assumedRoleUser = %v", user)
	}
	want := map[string]any{"namespace": k.namespace, "serviceAccount": "app"}
	if got := r.Response["subject"].(map[string]any); !equalJSON(got, want) || r.Response["audience"] != podAudience {
		t.Errorf("subject = %v audience = %v", got, r.Response["audience"])
	}
	if got := r.Response["podIdentityAssociation"].(map[string]any); got["associationId"] != assocID || got["associationArn"] != assocARN {
		t.Errorf("podIdentityAssociation = %v, want %s %s", got, assocID, assocARN)
	}
	exp, err := time.Parse("2006-01-02T15:04:05-07:00", r.Response["credentials"].(map[string]any)["expiration"].(string))
	if d := time.Until(exp); err != nil || d < 6*time.Hour-time.Minute || d > 6*time.Hour+time.Minute {
		t.Errorf("expiration %v (%v), want in 6 h", exp, err)
	}
	c := r.credsOf(t)
	who, err := sts.NewFromConfig(awsConfig(inst, c.AccessKeyID, c.SecretAccessKey, c.SessionToken)).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	if err != nil || aws.ToString(who.Arn) != arn {
		t.Errorf("GetCallerIdentity = %v (%v), want %s", aws.ToString(who.Arn), err, arn)
	}
	if res[1].Code != "" {
		t.Errorf("TokenReview mode, live pod: %s: %s", res[1].Code, res[1].Message)
	}
	for what, r := range map[string]podResult{"IRSA token (audience sts.amazonaws.com)": res[2], "token bound to no pod": res[3]} {
		if r.Code != "InvalidTokenException" || r.Status != 400 || r.Response != nil {
			t.Errorf("%s: %s (HTTP %d), want InvalidTokenException", what, r.Code, r.Status)
		}
	}

	// The aws CLI itself, printing timestamps as the seed shows them (v2's
	// default; v1 needs cli_timestamp_format).
	cfgFile := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(cfgFile, []byte("[default]\ncli_timestamp_format = iso8601\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("aws", "eks-auth", "assume-role-for-pod-identity", "--cluster-name", "kube", "--token", podToken)
	cmd.Env = append(cleanEnv(), "AWS_CONFIG_FILE="+cfgFile, "AWS_ACCESS_KEY_ID="+inst.AccessKeyID, "AWS_SECRET_ACCESS_KEY="+inst.SecretAccessKey,
		"AWS_ENDPOINT_URL="+inst.URL, "AWS_DEFAULT_REGION="+region, "TZ=UTC")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("aws eks-auth assume-role-for-pod-identity: %v\n%s", err, out)
	}
	var awsOut map[string]any
	if err := json.Unmarshal(out, &awsOut); err != nil {
		t.Fatalf("aws CLI printed %s: %v", out, err)
	}
	if got, want := mustJSON(shape(awsOut)), mustJSON(shape(seed)); got != want {
		t.Errorf("aws CLI output shape\n got %s\nwant %s", got, want)
	}
	if e, _ := awsOut["credentials"].(map[string]any)["expiration"].(string); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$`).MatchString(e) {
		t.Errorf("aws CLI expiration = %q, want the seed's form 2024-05-09T12:23:23+00:00", e)
	}

	// TokenReview mode: once the pod is gone its token is refused, though
	// its signature is still good (the cluster without TokenReview takes it).
	if err := k.cs.CoreV1().Pods(k.namespace).Delete(ctx(t), doomed.Name, metav1.DeleteOptions{GracePeriodSeconds: aws.Int64(0)}); err != nil {
		t.Fatal(err)
	}
	waitGone(t, k, doomed.Name)
	waitReviewFails(t, k, doomedToken)
	res = botoAssume(t, inst, podCall{Cluster: "kube-tr", Token: doomedToken}, podCall{Cluster: "kube", Token: doomedToken})
	if r := res[0]; r.Code != "InvalidTokenException" || r.Status != 400 || r.Response != nil {
		t.Errorf("deleted pod, TokenReview mode: %s (HTTP %d) %v, want InvalidTokenException", r.Code, r.Status, r.Response)
	}
	if r := res[1]; r.Code != "" {
		t.Errorf("deleted pod, signature only: %s: %s", r.Code, r.Message)
	}

	secrets := []string{podToken, doomedToken, irsaToken, unboundToken, c.SecretAccessKey, c.SessionToken}
	kubeconfig, err := os.ReadFile(kc.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(kubeconfig), "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "client-key-data: "); ok {
			secrets = append(secrets, v, v[:40])
		}
	}
	checkPodAudit(t, inst, "kube", 5, secrets)
}

func equalJSON(a, b any) bool { return mustJSON(a) == mustJSON(b) }

// waitGone waits until the apiserver no longer has the pod (deletion with
// no kubelet is immediate, but a finalizer could hold it).
func waitGone(t *testing.T, k *kubePod, name string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		pods, err := k.cs.CoreV1().Pods(k.namespace).List(ctx(t), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.ContainsFunc(pods.Items, func(p corev1.Pod) bool { return p.Name == name }) {
			return
		}
	}
	t.Fatalf("pod %s still exists", name)
}

// waitReviewFails waits until the apiserver's own TokenReview refuses the
// token: it checks the bound pod through an informer cache, which may lag
// the deletion a little.
func waitReviewFails(t *testing.T, k *kubePod, token string) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < 10*time.Second {
		tr, err := k.cs.AuthenticationV1().TokenReviews().Create(ctx(t), &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{podAudience}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !tr.Status.Authenticated {
			t.Logf("TokenReview refused the token after %v: %s", time.Since(start), tr.Status.Error)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the apiserver's TokenReview still accepts the deleted pod's token")
}
