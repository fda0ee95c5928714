// Package kubetest runs a real kube-apiserver, backed by its own etcd, on
// loopback for tests. There is no controller manager, scheduler or kubelet:
// tests create the service accounts they use, use a fresh namespace each
// (namespaces never finish deleting), and register webhooks by
// clientConfig.url.
//
// The apiserver caches token authentication results for 10 seconds, so a
// token whose pod was deleted still passes TokenReview for up to that long.
//
// The binaries are built from the Go module proxy on first use (11 to 20
// minutes on two cores) and cached; see Binaries. Run
// `go run ./internal/kubetest/cmd/kubebuild` to build them ahead of go test.
// A cluster starts in a few seconds after that.
package kubetest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// DefaultIssuer is the service account issuer when Options.Issuer is empty.
const DefaultIssuer = "https://kubernetes.default.svc"

// SelfIssuer as Options.Issuer makes the issuer the apiserver's own URL
// (Cluster.URL, known only once its port is picked), so that a relying
// party such as IAM finds /.well-known/openid-configuration and the JWKS
// at the issuer itself, over HTTPS with Cluster.CAFile.
const SelfIssuer = "self"

// Options configure a cluster. The zero value is usable.
type Options struct {
	// Issuer is --service-account-issuer; DefaultIssuer if empty. An https
	// URL with a path is allowed, but discovery is served at the root only.
	// SelfIssuer makes the issuer the apiserver's own URL.
	Issuer string
	// APIAudiences is --api-audiences; if nil, the issuer,
	// "pods.eks.amazonaws.com", "sts.amazonaws.com" and "podid".
	APIAudiences []string
	// ExtraArgs are appended to kube-apiserver's arguments, so they override
	// the helper's own.
	ExtraArgs []string
}

// Cluster is a running etcd and kube-apiserver.
type Cluster struct {
	Config         *rest.Config // admin (system:masters client certificate), TLS verified against CAFile
	Kubeconfig     string       // kubeconfig file with the same credential
	URL            string       // https://127.0.0.1:PORT
	CAFile         string       // PEM of the CA that signed the serving (and client) certificates
	Issuer         string       // service account token issuer
	SigningKeyFile string       // service account signing key, PKCS #8 RSA PEM
	Dir            string       // holds the files above, the data and the logs; removed at cleanup
}

const (
	readyTimeout = 2 * time.Minute // generous: two cores, maybe several clusters at once
	stopGrace    = 10 * time.Second
	startTries   = 3 // free ports are picked before use, so another process may take one
)

// Start starts etcd and kube-apiserver on free loopback ports, waits until
// the apiserver is ready and anonymous clients can read the OIDC discovery
// documents, and registers a cleanup that stops both and removes c.Dir, also
// when the test fails (after logging the tails of their logs).
//
// If the binaries cannot be built the test is skipped, or fails when the
// environment variable CI is set.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	etcdBin, apiBin := binaries(t)
	if opts.Issuer == "" {
		opts.Issuer = DefaultIssuer
	}
	var errs []error
	for range startTries {
		c, procs, err := start(etcdBin, apiBin, opts)
		if err == nil {
			t.Cleanup(func() {
				for _, p := range procs {
					if err := p.exited(); err != nil {
						t.Errorf("kubetest: during the test %v", err)
					} else if t.Failed() {
						t.Logf("kubetest: last lines of %s:\n%s", p.log, p.tail(40))
					}
				}
				// The apiserver first, so it does not log etcd errors while
				// shutting down.
				for i := len(procs) - 1; i >= 0; i-- {
					procs[i].stop(stopGrace)
				}
				os.RemoveAll(c.Dir)
			})
			return c
		}
		errs = append(errs, err)
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	t.Fatalf("kubetest: %v", errors.Join(errs...))
	return nil
}

// binaries returns the binaries, or skips or fails t if they cannot be had.
func binaries(t testing.TB) (etcd, apiserver string) {
	t.Helper()
	var err error
	if done, ensureErr := ensured(); done && ensureErr != nil {
		err = ensureErr
	} else {
		etcd, apiserver, err = Binaries(context.Background())
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("no kube-apiserver: %v", err)
		}
		t.Skipf("no kube-apiserver (with CI set this fails): %v", err)
	}
	return etcd, apiserver
}

// start makes one attempt; on error it has stopped whatever it started and
// removed its directory.
func start(etcdBin, apiBin string, opts Options) (c *Cluster, procs []*proc, err error) {
	dir, err := os.MkdirTemp("", "kubetest-")
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			for i := len(procs) - 1; i >= 0; i-- {
				procs[i].stop(stopGrace)
			}
			os.RemoveAll(dir)
		}
	}()

	keys, err := newPKI()
	if err != nil {
		return nil, nil, err
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	err = writeFiles(map[string][]byte{
		path("ca.crt"):      keys.caCert,
		path("ca.key"):      keys.caKeyPEM,
		path("serving.crt"): keys.servingCert,
		path("serving.key"): keys.servingKey,
		path("admin.crt"):   keys.adminCert,
		path("admin.key"):   keys.adminKey,
		path("sa.key"):      keys.signingKey,
	})
	if err != nil {
		return nil, nil, err
	}

	ports, err := freePorts(3)
	if err != nil {
		return nil, nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	etcdArgs := []string{
		"--name=kubetest",
		"--data-dir=" + path("etcd"),
		"--listen-client-urls=" + etcdURL,
		"--advertise-client-urls=" + etcdURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=kubetest=" + peerURL,
		"--logger=zap",
		"--log-level=warn",
	}
	if etcdHasNoFsync(etcdBin) {
		// Durability is worthless to a test and fsync is most of etcd's latency.
		etcdArgs = append(etcdArgs, "--unsafe-no-fsync")
	}
	p, err := startProc("etcd", etcdBin, path("etcd.log"), etcdArgs)
	if err != nil {
		return nil, nil, err
	}
	procs = append(procs, p)

	if opts.Issuer == SelfIssuer {
		opts.Issuer = "https://127.0.0.1:" + strconv.Itoa(ports[2])
	}
	if opts.APIAudiences == nil {
		opts.APIAudiences = []string{opts.Issuer, "pods.eks.amazonaws.com", "sts.amazonaws.com", "podid"}
	}

	// The apiserver retries etcd until it answers, so both start at once.
	c = &Cluster{
		URL:            "https://127.0.0.1:" + strconv.Itoa(ports[2]),
		CAFile:         path("ca.crt"),
		Issuer:         opts.Issuer,
		SigningKeyFile: path("sa.key"),
		Kubeconfig:     path("kubeconfig"),
		Dir:            dir,
	}
	apiArgs := []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1", // else jwks_uri names a non-loopback address
		"--secure-port=" + strconv.Itoa(ports[2]),
		"--cert-dir=" + path("apiserver"),
		"--tls-cert-file=" + path("serving.crt"),
		"--tls-private-key-file=" + path("serving.key"),
		"--client-ca-file=" + path("ca.crt"),
		"--service-account-issuer=" + opts.Issuer,
		"--service-account-key-file=" + path("sa.key"),
		"--service-account-signing-key-file=" + path("sa.key"),
		"--api-audiences=" + strings.Join(opts.APIAudiences, ","),
		"--authorization-mode=Node,RBAC",
		"--endpoint-reconciler-type=none", // nothing would serve the endpoints
		"--service-cluster-ip-range=10.0.0.0/24",
		"--allow-privileged=true",
		"--profiling=false",
	}
	apiArgs = append(apiArgs, opts.ExtraArgs...)
	p, err = startProc("kube-apiserver", apiBin, path("kube-apiserver.log"), apiArgs)
	if err != nil {
		return nil, nil, err
	}
	procs = append(procs, p)

	c.Config = &rest.Config{
		Host: c.URL,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   keys.caCert,
			CertData: keys.adminCert,
			KeyData:  keys.adminKey,
		},
		// Client-side throttling only slows tests down.
		QPS:   200,
		Burst: 400,
	}
	if err := os.WriteFile(c.Kubeconfig, kubeconfig(c.URL, keys), 0o600); err != nil {
		return nil, procs, err
	}

	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := c.waitReady(ctx, procs); err != nil {
		return nil, procs, err
	}
	if err := c.allowAnonymousDiscovery(ctx, procs); err != nil {
		return nil, procs, err
	}
	return c, procs, nil
}

// Clientset returns a clientset for c.Config.
func (c *Cluster) Clientset(t testing.TB) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatalf("kubetest: clientset: %v", err)
	}
	return cs
}

// waitReady polls /readyz until it answers ok, a process exits or ctx ends.
func (c *Cluster) waitReady(ctx context.Context, procs []*proc) error {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	var last error
	for {
		if err := exited(procs); err != nil {
			return err
		}
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		cancel()
		if err == nil && string(body) == "ok" {
			return nil
		}
		last = err
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return fmt.Errorf("kube-apiserver not ready at %s (last: %v); last lines of %s:\n%s",
				c.URL, last, procs[len(procs)-1].log, procs[len(procs)-1].tail(30))
		}
	}
}

// discoveryBinding makes the issuer's discovery documents public, as
// relying parties such as IAM read them without credentials.
const discoveryBinding = "kubetest:anonymous-service-account-issuer-discovery"

// allowAnonymousDiscovery binds system:service-account-issuer-discovery to
// unauthenticated clients and waits until the JWKS is readable without
// credentials (RBAC sees new bindings through an informer, a little later).
func (c *Cluster) allowAnonymousDiscovery(ctx context.Context, procs []*proc) error {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	crb := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: discoveryBinding},
		RoleRef: rbacv1.RoleRef{
			APIGroup: rbacv1.GroupName,
			Kind:     "ClusterRole",
			Name:     "system:service-account-issuer-discovery",
		},
		Subjects: []rbacv1.Subject{{
			APIGroup: rbacv1.GroupName,
			Kind:     rbacv1.GroupKind,
			Name:     "system:unauthenticated",
		}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, crb, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("grant anonymous OIDC discovery: %w", err)
	}
	// Discovery is served only for an https issuer (or with an explicit
	// --service-account-jwks-uri); otherwise there is nothing to wait for.
	if u, err := url.Parse(c.Issuer); err != nil || u.Scheme != "https" {
		return nil
	}
	client, err := c.anonymousClient()
	if err != nil {
		return err
	}
	var last string
	for {
		if err := exited(procs); err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/openid/v1/jwks", nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("anonymous GET /openid/v1/jwks never succeeded (last: %s)", last)
		}
	}
}

// anonymousClient returns an HTTP client that trusts the cluster's CA and
// presents no credentials.
func (c *Cluster) anonymousClient() (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.Config.CAData) {
		return nil, errors.New("no CA certificate")
	}
	return &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		Timeout:   10 * time.Second,
	}, nil
}

func exited(procs []*proc) error {
	for _, p := range procs {
		if err := p.exited(); err != nil {
			return err
		}
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// freePorts returns n distinct loopback ports that were free a moment ago.
// Holding all listeners until the end keeps the ports distinct.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

var (
	noFsyncMu sync.Mutex
	noFsync   = map[string]bool{}
)

// etcdHasNoFsync reports whether etcd knows --unsafe-no-fsync (3.5 and
// later; Debian's 3.4 does not).
func etcdHasNoFsync(bin string) bool {
	noFsyncMu.Lock()
	defer noFsyncMu.Unlock()
	has, ok := noFsync[bin]
	if !ok {
		out, _ := exec.Command(bin, "--help").CombinedOutput()
		has = bytes.Contains(out, []byte("--unsafe-no-fsync"))
		noFsync[bin] = has
	}
	return has
}

// kubeconfig renders a kubeconfig for the admin credential. It is written by
// hand to spare client-go's clientcmd and its dependencies.
func kubeconfig(server string, keys *pki) []byte {
	b64 := base64.StdEncoding.EncodeToString
	return fmt.Appendf(nil, `apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: kubetest-admin
  user:
    client-certificate-data: %s
    client-key-data: %s
contexts:
- name: kubetest
  context:
    cluster: kubetest
    user: kubetest-admin
current-context: kubetest
`, server, b64(keys.caCert), b64(keys.adminCert), b64(keys.adminKey))
}
