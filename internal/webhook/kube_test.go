package webhook

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/podid/podid/internal/kubetest"
	"github.com/podid/podid/internal/server/servertest"
	"github.com/podid/podid/internal/webhook/webhooktest"
)

const (
	testRole     = "arn:aws:iam::111122223333:role/s3-reader"
	webhookUser  = "system:serviceaccount:podid-system:podid-webhook"
	waitTimeout  = 30 * time.Second
	pollInterval = 50 * time.Millisecond
)

// kubeEnv is a real kube-apiserver with podid's webhook registered on it
// through a MutatingWebhookConfiguration with clientConfig.url.
type kubeEnv struct {
	t       *testing.T
	cluster *kubetest.Cluster
	admin   kubernetes.Interface
	addr    string // 127.0.0.1:PORT the webhook listens on, fixed across restarts
	assoc   string // associations file
	wh      *Webhook
	stop    func()
	extra   func(*Config)
}

func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		time.Sleep(pollInterval)
	}
	t.Fatalf("timed out waiting for %s (last error: %v)", what, last)
}

// applyDeployRBAC creates the ClusterRole and binding from deploy/, so the
// webhook runs with exactly the permissions the manifest grants.
func applyDeployRBAC(t *testing.T, admin kubernetes.Interface) {
	t.Helper()
	ctx := context.Background()
	for _, obj := range webhooktest.Manifest(t) {
		var err error
		switch o := obj.(type) {
		case *rbacv1.ClusterRole:
			_, err = admin.RbacV1().ClusterRoles().Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.ClusterRoleBinding:
			_, err = admin.RbacV1().ClusterRoleBindings().Create(ctx, o, metav1.CreateOptions{})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func newKubeEnv(t *testing.T, extra func(*Config)) *kubeEnv {
	c := kubetest.Start(t, kubetest.Options{})
	e := &kubeEnv{t: t, cluster: c, admin: c.Clientset(t), extra: extra}
	applyDeployRBAC(t, e.admin)
	e.assoc = filepath.Join(t.TempDir(), "identities.json")
	e.writeAssociations()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	ln.Close()

	// Registered from deploy/webhook.yaml, aimed at this process.
	_, err = e.admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(context.Background(),
		webhooktest.Configuration(t, "https://"+e.addr+"/mutate"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e.namespace("probe")
	e.serviceAccount("probe", "probe", map[string]string{"eks.amazonaws.com/role-arn": testRole})
	e.start()
	t.Cleanup(func() {
		if e.stop != nil {
			e.stop()
		}
	})
	return e
}

func (e *kubeEnv) writeAssociations(pairs ...string) {
	var ids []string
	for _, p := range pairs {
		ns, sa, _ := strings.Cut(p, "/")
		ids = append(ids, fmt.Sprintf(`{"namespace":%q,"serviceAccount":%q}`, ns, sa))
	}
	// Write then rename, as a ConfigMap update replaces the file.
	tmp := e.assoc + ".tmp"
	if err := os.WriteFile(tmp, []byte(`{"identities":[`+strings.Join(ids, ",")+`]}`), 0o644); err != nil {
		e.t.Fatal(err)
	}
	if err := os.Rename(tmp, e.assoc); err != nil {
		e.t.Fatal(err)
	}
}

// start runs a webhook on e.addr, as the deploy/ service account, and
// waits until the apiserver demonstrably calls it.
func (e *kubeEnv) start() {
	t := e.t
	t.Helper()
	rc := rest.CopyConfig(e.cluster.Config)
	rc.Impersonate = rest.ImpersonationConfig{UserName: webhookUser}
	var ln net.Listener
	waitFor(t, "the webhook port", func() (bool, error) {
		var err error
		ln, err = net.Listen("tcp", e.addr)
		return err == nil, err
	})
	logw := io.Discard
	if testing.Verbose() {
		logw = os.Stderr
	}
	cfg := Config{
		Cluster:          "kubetest",
		RestConfig:       rc,
		Listener:         ln,
		TLSSelfSigned:    true,
		Region:           "us-west-2",
		AssociationsFile: e.assoc,
		FileInterval:     100 * time.Millisecond,
		RescanInterval:   200 * time.Millisecond,
		Logger:           slog.New(slog.NewTextHandler(logw, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	if e.extra != nil {
		e.extra(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w, err := New(ctx, cfg)
	if err != nil {
		cancel()
		ln.Close()
		t.Fatal(err)
	}
	if err := w.Ready(); err == nil {
		t.Error("ready before its caches synced")
	}
	done := make(chan error, 1)
	go func() { done <- w.Serve(ctx) }()
	e.wh = w
	e.stop = func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("webhook Serve: %v", err)
		}
		e.stop = nil
	}
	e.waitReady()
	// The apiserver picks up the new caBundle asynchronously: probe with
	// dry-run pods until one comes back mutated.
	waitFor(t, "the apiserver to call the webhook", func() (bool, error) {
		p, err := e.createPod("probe", "probe", "probe-", metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			return false, err
		}
		return envValue(p.Spec.Containers[0], "AWS_ROLE_ARN") == testRole, errors.New("dry-run pod not mutated")
	})
}

// httpsClient trusts the webhook's self-signed CA.
func (e *kubeEnv) httpsClient() *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(e.wh.CABundle())
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func (e *kubeEnv) waitReady() {
	c := e.httpsClient()
	waitFor(e.t, "/readyz", func() (bool, error) {
		resp, err := c.Get("https://" + e.addr + "/readyz")
		if err != nil {
			return false, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, fmt.Errorf("%s: %s", resp.Status, b)
	})
}

func (e *kubeEnv) namespace(name string) {
	_, err := e.admin.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *kubeEnv) serviceAccount(ns, name string, ann map[string]string) {
	_, err := e.admin.CoreV1().ServiceAccounts(ns).Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: ann}}, metav1.CreateOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *kubeEnv) createPod(ns, sa, generateName string, opts metav1.CreateOptions) (*corev1.Pod, error) {
	return e.admin.CoreV1().Pods(ns).Create(context.Background(), &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: generateName},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			Containers:         []corev1.Container{{Name: "app", Image: "app:1"}},
		},
	}, opts)
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func podHasVolume(p *corev1.Pod, name string) bool {
	for _, v := range p.Spec.Volumes {
		if v.Name == name {
			return true
		}
	}
	return false
}

func hasPodIdentity(p *corev1.Pod) bool {
	return envValue(p.Spec.Containers[0], envFullURI) == podIDURIv4 && podHasVolume(p, podIDVolume)
}

func hasIRSA(p *corev1.Pod) bool {
	return envValue(p.Spec.Containers[0], envRoleARN) == testRole && podHasVolume(p, irsaVolume)
}

// TestKubeAPIServer drives the webhook through a real kube-apiserver.
func TestKubeAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	e := newKubeEnv(t, nil)
	ctx := context.Background()
	pods := func(ns string) typedPods { return e.admin.CoreV1().Pods(ns) }

	t.Run("caBundle", func(t *testing.T) {
		mwc, err := e.admin.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, DefaultWebhookConfigName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !bundleContains(mwc.Webhooks[0].ClientConfig.CABundle, e.wh.CABundle()) {
			t.Fatal("caBundle lacks the webhook's CA")
		}
	})

	t.Run("IRSA and Pod Identity", func(t *testing.T) {
		e.namespace("apps")
		e.serviceAccount("apps", "irsa", map[string]string{"eks.amazonaws.com/role-arn": testRole})
		e.serviceAccount("apps", "both", map[string]string{"eks.amazonaws.com/role-arn": testRole})
		e.serviceAccount("apps", "pi", nil)
		e.serviceAccount("apps", "plain", nil)
		e.writeAssociations("apps/pi", "apps/both")
		waitFor(t, "the associations file", func() (bool, error) { return e.wh.sources.Associated("apps", "both"), nil })

		always := corev1.ContainerRestartPolicyAlways
		p, err := pods("apps").Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "sidecars"},
			Spec: corev1.PodSpec{
				ServiceAccountName: "irsa",
				InitContainers: []corev1.Container{
					{Name: "init", Image: "init:1"},
					{Name: "proxy", Image: "proxy:1", RestartPolicy: &always,
						StartupProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(15021)}}}},
				},
				Containers: []corev1.Container{{Name: "app", Image: "app:1", Env: []corev1.EnvVar{{Name: "AWS_REGION", Value: "eu-central-1"}}}},
			},
		}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		// What the apiserver stored, not just what it answered.
		if p, err = pods("apps").Get(ctx, p.Name, metav1.GetOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			if envValue(c, envRoleARN) != testRole || envValue(c, envTokenFile) != irsaMountPath+"/token" {
				t.Errorf("container %s: env %v", c.Name, c.Env)
			}
		}
		if got := envValue(p.Spec.Containers[0], envRegion); got != "eu-central-1" {
			t.Errorf("user's AWS_REGION became %q", got)
		}
		if envValue(p.Spec.Containers[0], envDefRegion) != "" {
			t.Error("AWS_DEFAULT_REGION injected beside the user's AWS_REGION")
		}
		if envValue(p.Spec.InitContainers[0], envRegion) != "us-west-2" {
			t.Error("init container lacks --region")
		}
		sc := p.Spec.InitContainers[1]
		if sc.RestartPolicy == nil || *sc.RestartPolicy != always || sc.StartupProbe == nil {
			t.Errorf("sidecar lost restartPolicy or startupProbe: %+v", sc)
		}
		if !hasIRSA(p) {
			t.Errorf("no IRSA: %+v", p.Spec)
		}
		for _, v := range p.Spec.Volumes {
			if v.Name == irsaVolume {
				src := v.Projected.Sources[0].ServiceAccountToken
				if src.Audience != DefaultAudience || *src.ExpirationSeconds != 86400 || src.Path != "token" {
					t.Errorf("token projection %+v", src)
				}
			}
		}

		p, err = e.createPod("apps", "pi", "pi-", metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !hasPodIdentity(p) || p.Labels[PodIdentityLabel] != "enabled" {
			t.Errorf("no Pod Identity: %+v", p)
		}
		for _, v := range p.Spec.Volumes {
			if v.Name == podIDVolume {
				if s := v.Projected.Sources[0].ServiceAccountToken; s.Audience != PodIdentityAudience || *s.ExpirationSeconds < 79200 || *s.ExpirationSeconds > 86400 {
					t.Errorf("Pod Identity projection %+v", s)
				}
			}
		}

		p, err = e.createPod("apps", "both", "both-", metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !hasPodIdentity(p) || envValue(p.Spec.Containers[0], envRoleARN) != "" || podHasVolume(p, irsaVolume) {
			t.Errorf("both modes: want Pod Identity only, got %+v", p.Spec)
		}

		p, err = e.createPod("apps", "plain", "plain-", metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Spec.Containers[0].Env) != 0 || podHasVolume(p, irsaVolume) || podHasVolume(p, podIDVolume) {
			t.Errorf("plain pod mutated: %+v", p.Spec)
		}

		// The opt-out label keeps the apiserver from calling the webhook.
		optOut := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{GenerateName: "optout-", Labels: map[string]string{OptOutLabel: "disabled"}},
			Spec:       corev1.PodSpec{ServiceAccountName: "irsa", Containers: []corev1.Container{{Name: "app", Image: "app:1"}}},
		}
		if p, err = pods("apps").Create(ctx, optOut, metav1.CreateOptions{}); err != nil || hasIRSA(p) {
			t.Errorf("opted-out pod: err=%v mutated=%v", err, err == nil && hasIRSA(p))
		}
	})

	t.Run("service account created just before its pod", func(t *testing.T) {
		e.namespace("fresh")
		before := testutil.ToFloat64(e.wh.metrics.saLookups.WithLabelValues("found"))
		const n = 30
		for i := range n {
			sa := fmt.Sprintf("sa%d", i)
			// No wait at all between the two creates.
			e.serviceAccount("fresh", sa, map[string]string{"eks.amazonaws.com/role-arn": testRole})
			p, err := e.createPod("fresh", sa, "fresh-", metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if !hasIRSA(p) {
				t.Fatalf("pod %d created right after its service account was not mutated", i)
			}
		}
		t.Logf("%d of %d pods needed the synchronous GET (cache miss)", int(testutil.ToFloat64(e.wh.metrics.saLookups.WithLabelValues("found"))-before), n)
	})

	t.Run("cache miss fetches from the apiserver", func(t *testing.T) {
		// A cache that never started: every lookup is a miss, so the GET
		// path is exercised deterministically, with the deploy/ RBAC.
		rc := rest.CopyConfig(e.cluster.Config)
		rc.Impersonate = rest.ImpersonationConfig{UserName: webhookUser}
		m := NewMetrics()
		c := NewServiceAccountCache(kubernetes.NewForConfigOrDie(rc), m, time.Second)
		sa, err := c.ServiceAccount(ctx, "apps", "irsa")
		if err != nil || sa == nil || sa.Annotations["eks.amazonaws.com/role-arn"] != testRole {
			t.Fatalf("found: %v %v", sa, err)
		}
		if sa, err := c.ServiceAccount(ctx, "apps", "nope"); sa != nil || err != nil {
			t.Fatalf("missing: %v %v", sa, err)
		}
		if testutil.ToFloat64(m.saLookups.WithLabelValues("found")) != 1 || testutil.ToFloat64(m.saLookups.WithLabelValues("not_found")) != 1 {
			t.Fatal("cache-miss metrics not counted")
		}
	})

	t.Run("associations file reload", func(t *testing.T) {
		e.namespace("late")
		e.serviceAccount("late", "app", nil)
		e.writeAssociations("apps/pi", "apps/both", "late/app")
		waitFor(t, "the new association", func() (bool, error) { return e.wh.sources.Associated("late", "app"), nil })
		p, err := e.createPod("late", "app", "late-", metav1.CreateOptions{})
		if err != nil || !hasPodIdentity(p) {
			t.Fatalf("pod after the association was added: err=%v", err)
		}
	})

	t.Run("endpoints", func(t *testing.T) {
		c := e.httpsClient()
		for path, want := range map[string]string{
			"/healthz": "ok",
			"/readyz":  "ok",
			"/metrics": `podid_webhook_admissions_total{mode="irsa",outcome="mutated"}`,
		} {
			resp, err := c.Get("https://" + e.addr + path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
				t.Errorf("%s: %s\n%.500s", path, resp.Status, b)
			}
		}
	})

	t.Run("webhook down: pods still create, and the miss is counted", func(t *testing.T) {
		if got := testutil.ToFloat64(e.wh.metrics.missed); got != 0 {
			t.Fatalf("%v pods counted as missed while the webhook was up", got)
		}
		e.stop()
		e.namespace("outage")
		e.serviceAccount("outage", "app", map[string]string{"eks.amazonaws.com/role-arn": testRole})
		start := time.Now()
		p, err := e.createPod("outage", "app", "outage-", metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("pod creation failed with the webhook down (failurePolicy Ignore): %v", err)
		}
		if hasIRSA(p) {
			t.Fatal("mutated with the webhook down?")
		}
		t.Logf("pod created in %v with the webhook down", time.Since(start).Round(time.Millisecond))

		e.start()
		waitFor(t, "the missed pod to be counted", func() (bool, error) {
			return testutil.ToFloat64(e.wh.metrics.missed) == 1 && testutil.ToFloat64(e.wh.metrics.unmutated) == 1, nil
		})
		// Pods created now are mutated and not counted; the old one is
		// counted once however many passes see it.
		p, err = e.createPod("outage", "app", "after-", metav1.CreateOptions{})
		if err != nil || !hasIRSA(p) {
			t.Fatalf("pod after restart: err=%v", err)
		}
		time.Sleep(5 * e.wh.cfg.RescanInterval)
		if got := testutil.ToFloat64(e.wh.metrics.missed); got != 1 {
			t.Fatalf("missed = %v, want 1", got)
		}
		// Deleting the unmutated pod clears the gauge.
		list, _ := pods("outage").List(ctx, metav1.ListOptions{})
		for _, q := range list.Items {
			if !hasIRSA(&q) {
				zero := int64(0)
				pods("outage").Delete(ctx, q.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
			}
		}
		waitFor(t, "the gauge to drop", func() (bool, error) { return testutil.ToFloat64(e.wh.metrics.unmutated) == 0, nil })
	})
}

type typedPods interface {
	Create(context.Context, *corev1.Pod, metav1.CreateOptions) (*corev1.Pod, error)
	Get(context.Context, string, metav1.GetOptions) (*corev1.Pod, error)
	List(context.Context, metav1.ListOptions) (*corev1.PodList, error)
	Delete(context.Context, string, metav1.DeleteOptions) error
}

// TestKubeAPIServerWithPodidServer: associations come from a real podid
// server through the EKS API; a pod of an associated service account gets
// Pod Identity.
func TestKubeAPIServerWithPodidServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a kube-apiserver")
	}
	inst := servertest.Start(t)
	registerCluster(t, inst, "kubetest")
	client := eksClient(inst)
	_, err := client.CreatePodIdentityAssociation(context.Background(), &eks.CreatePodIdentityAssociationInput{
		ClusterName: aws.String("kubetest"), Namespace: aws.String("shop"), ServiceAccount: aws.String("web"), RoleArn: aws.String(testRole),
	})
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	e := newKubeEnv(t, func(c *Config) {
		c.AssociationsFile = ""
		c.EKS = countingLister{client, &calls}
		c.ServerInterval = 200 * time.Millisecond
	})
	e.namespace("shop")
	e.serviceAccount("shop", "web", nil)
	p, err := e.createPod("shop", "web", "web-", metav1.CreateOptions{})
	if err != nil || !hasPodIdentity(p) {
		t.Fatalf("pod of an associated service account: err=%v pod=%+v", err, p)
	}
	if calls.Load() == 0 {
		t.Fatal("server never listed")
	}
	if _, err := e.admin.CoreV1().Pods("shop").Get(context.Background(), p.Name, metav1.GetOptions{}); apierrors.IsNotFound(err) {
		t.Fatal("pod not stored")
	}
}

// countingLister counts the server's list calls.
type countingLister struct {
	eks.ListPodIdentityAssociationsAPIClient
	n *atomic.Int32
}

func (c countingLister) ListPodIdentityAssociations(ctx context.Context, in *eks.ListPodIdentityAssociationsInput, opts ...func(*eks.Options)) (*eks.ListPodIdentityAssociationsOutput, error) {
	c.n.Add(1)
	return c.ListPodIdentityAssociationsAPIClient.ListPodIdentityAssociations(ctx, in, opts...)
}
