package kubetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

func TestMain(m *testing.M) {
	EnsureBinaries()
	os.Exit(m.Run())
}

const podAudience = "pods.eks.amazonaws.com"

// k8sClaims is the private claim of service account tokens.
type k8sClaims struct {
	Namespace      string `json:"namespace"`
	ServiceAccount ref    `json:"serviceaccount"`
	Pod            *ref   `json:"pod"`
	Node           *ref   `json:"node"`
}

type ref struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

func TestPodBoundToken(t *testing.T) {
	t.Parallel()
	start := time.Now()
	c := Start(t, Options{})
	t.Logf("cluster at %s ready in %s", c.URL, time.Since(start).Round(time.Millisecond))
	cs := c.Clientset(t)
	ctx := t.Context()
	defer func() { t.Logf("test body took %s", time.Since(start).Round(time.Millisecond)) }()

	// Node info lands in the token only if the Node object exists.
	node, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "node-1"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns := newNamespace(t, cs)
	sa, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "app"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod, err := cs.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "app"},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa.Name,
			NodeName:           node.Name,
			Containers:         []corev1.Container{{Name: "app", Image: "example.invalid/app"}},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa.Name, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{
			Audiences: []string{podAudience},
			BoundObjectRef: &authnv1.BoundObjectReference{
				Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID,
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := tr.Status.Token

	parsed, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("parse token: %v", err)
	}
	var claims jwt.Claims
	var private struct {
		K8s k8sClaims `json:"kubernetes.io"`
	}
	if err := parsed.UnsafeClaimsWithoutVerification(&claims, &private); err != nil {
		t.Fatal(err)
	}
	if claims.Issuer != DefaultIssuer || c.Issuer != DefaultIssuer {
		t.Errorf("iss = %q, Cluster.Issuer = %q, want %q", claims.Issuer, c.Issuer, DefaultIssuer)
	}
	if !slices.Equal(claims.Audience, jwt.Audience{podAudience}) {
		t.Errorf("aud = %q, want [%s]", claims.Audience, podAudience)
	}
	if want := "system:serviceaccount:" + ns + ":app"; claims.Subject != want {
		t.Errorf("sub = %q, want %q", claims.Subject, want)
	}
	k := private.K8s
	if k.Namespace != ns || k.ServiceAccount != (ref{sa.Name, string(sa.UID)}) {
		t.Errorf("kubernetes.io = %+v, want namespace %s and service account %s/%s", k, ns, sa.Name, sa.UID)
	}
	if k.Pod == nil || *k.Pod != (ref{pod.Name, string(pod.UID)}) {
		t.Errorf("kubernetes.io.pod = %+v, want %s/%s", k.Pod, pod.Name, pod.UID)
	}
	if k.Node == nil || *k.Node != (ref{node.Name, string(node.UID)}) {
		t.Errorf("kubernetes.io.node = %+v, want %s/%s", k.Node, node.Name, node.UID)
	}

	// The signature checks out against the JWKS, read without credentials
	// as IAM would.
	client := caClient(t, c.CAFile)
	var disco struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	getJSON(t, client, c.URL+"/.well-known/openid-configuration", &disco)
	if disco.Issuer != c.Issuer || disco.JWKSURI != c.URL+"/openid/v1/jwks" {
		t.Errorf("discovery = %+v, want issuer %s and jwks_uri at %s", disco, c.Issuer, c.URL)
	}
	var jwks jose.JSONWebKeySet
	getJSON(t, client, disco.JWKSURI, &jwks)
	keys := jwks.Key(parsed.Headers[0].KeyID)
	if len(keys) != 1 {
		t.Fatalf("JWKS has %d keys with kid %q: %+v", len(keys), parsed.Headers[0].KeyID, jwks)
	}
	var verified jwt.Claims
	if err := parsed.Claims(keys[0].Key, &verified); err != nil {
		t.Fatalf("verify token against JWKS: %v", err)
	}
	err = verified.Validate(jwt.Expected{Issuer: c.Issuer, AnyAudience: jwt.Audience{podAudience}})
	if err != nil {
		t.Errorf("validate claims: %v", err)
	}

	review := func() *authnv1.TokenReviewStatus {
		t.Helper()
		r, err := cs.AuthenticationV1().TokenReviews().Create(ctx, &authnv1.TokenReview{
			Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{podAudience}},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return &r.Status
	}
	st := review()
	if !st.Authenticated || st.User.Username != claims.Subject {
		t.Fatalf("TokenReview = %+v, want authenticated as %s", st, claims.Subject)
	}
	if got := st.User.Extra["authentication.kubernetes.io/pod-name"]; !slices.Equal(got, authnv1.ExtraValue{pod.Name}) {
		t.Errorf("pod-name extra = %q, want %q", got, pod.Name)
	}

	// Without a kubelet a graceful delete never completes, so force it.
	err = cs.CoreV1().Pods(ns).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)})
	if err != nil {
		t.Fatal(err)
	}
	// The authenticator reads pods through an informer, so allow it a moment.
	deleted := time.Now()
	deadline := deleted.Add(30 * time.Second)
	for st = review(); st.Authenticated; st = review() {
		if time.Now().After(deadline) {
			t.Fatalf("token of deleted pod still authenticates: %+v", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s after deleting the pod: %s", time.Since(deleted).Round(time.Millisecond), st.Error)
}

// TestIssuerWithPath checks that an issuer URL with a path is used in tokens
// and discovery, while discovery is still served at the root.
func TestIssuerWithPath(t *testing.T) {
	t.Parallel()
	const issuer = "https://oidc.example.test/id/CLUSTER1"
	c := Start(t, Options{Issuer: issuer})
	cs := c.Clientset(t)
	ns := newNamespace(t, cs)
	if _, err := cs.CoreV1().ServiceAccounts(ns).Create(t.Context(), &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "app"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(t.Context(), "app", &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{Audiences: []string{"sts.amazonaws.com"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := jwt.ParseSigned(tr.Status.Token, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	var claims jwt.Claims
	if err := parsed.UnsafeClaimsWithoutVerification(&claims); err != nil {
		t.Fatal(err)
	}
	if claims.Issuer != issuer {
		t.Errorf("iss = %q, want %q", claims.Issuer, issuer)
	}
	var disco struct {
		Issuer string `json:"issuer"`
	}
	getJSON(t, caClient(t, c.CAFile), c.URL+"/.well-known/openid-configuration", &disco)
	if disco.Issuer != issuer {
		t.Errorf("discovery issuer = %q, want %q", disco.Issuer, issuer)
	}
	if data, err := os.ReadFile(c.Kubeconfig); err != nil || !strings.Contains(string(data), c.URL) {
		t.Errorf("kubeconfig %s does not name %s (%v)", c.Kubeconfig, c.URL, err)
	}
}

func newNamespace(t *testing.T, cs kubernetes.Interface) string {
	t.Helper()
	ns, err := cs.CoreV1().Namespaces().Create(t.Context(), &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "kubetest-"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// caClient returns a client trusting only the cluster CA, without credentials.
func caClient(t *testing.T, caFile string) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatalf("no certificate in %s", caFile)
	}
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		Timeout:   10 * time.Second,
	}
}

func getJSON(t *testing.T, client *http.Client, url string, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(fmt.Errorf("GET %s: %w", url, err))
	}
}
