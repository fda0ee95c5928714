package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"slices"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// FileCertificate serves the key pair in two PEM files and reloads it when
// either changes, so a cert-manager rotation needs no restart. It polls the
// contents rather than watching inodes: a Secret volume swaps a ..data
// symlink, which inotify on the file itself does not see.
type FileCertificate struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
	lastCert, lastKey []byte
	metrics           *Metrics
	log               *slog.Logger
}

// LoadFileCertificate loads the pair once; it fails if the first load does.
func LoadFileCertificate(certFile, keyFile string, m *Metrics, log *slog.Logger) (*FileCertificate, error) {
	f := &FileCertificate{certFile: certFile, keyFile: keyFile, metrics: m, log: log}
	if _, err := f.reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// GetCertificate is for tls.Config.
func (f *FileCertificate) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f.cur.Load(), nil
}

// reload re-reads both files and swaps the certificate if they changed and
// parse; on any error the previous certificate stays in use.
func (f *FileCertificate) reload() (changed bool, err error) {
	cert, err := os.ReadFile(f.certFile)
	if err != nil {
		return false, fmt.Errorf("read --tls-cert: %w", err)
	}
	key, err := os.ReadFile(f.keyFile)
	if err != nil {
		return false, fmt.Errorf("read --tls-key: %w", err)
	}
	if bytes.Equal(cert, f.lastCert) && bytes.Equal(key, f.lastKey) {
		return false, nil
	}
	pair, err := tls.X509KeyPair(cert, key)
	if err != nil {
		// Likely caught between the writes of the two files; the next poll
		// sees the matching pair.
		f.metrics.tlsReloads.WithLabelValues("error").Inc()
		return false, fmt.Errorf("load TLS key pair: %w", err)
	}
	f.lastCert, f.lastKey = cert, key
	f.cur.Store(&pair)
	f.metrics.tlsReloads.WithLabelValues("ok").Inc()
	return true, nil
}

// Run polls the files every interval until ctx ends.
func (f *FileCertificate) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		changed, err := f.reload()
		if err != nil {
			f.log.Warn("TLS certificate not reloaded; serving the previous one", "err", err)
		} else if changed {
			f.log.Info("TLS certificate reloaded", "cert", f.certFile)
		}
	}
}

// caCommonName marks CAs made by --tls-self-signed, so replicas keep each
// other's CAs in the shared caBundle and drop only their own old ones.
const caCommonName = "podid-webhook-ca"

// maxBundleCAs bounds the caBundle: a few replicas, plus restarts.
const maxBundleCAs = 6

// SelfSigned is a CA made at start and a serving certificate it signed.
type SelfSigned struct {
	CAPEM []byte
	cert  tls.Certificate
}

// NewSelfSigned creates a CA and a serving certificate for hosts (DNS names
// or IP addresses), both valid for a year.
func NewSelfSigned(hosts []string) (*SelfSigned, error) {
	now := time.Now()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          randSerial(),
		Subject:               pkix.Name{CommonName: caCommonName, Organization: []string{"podid"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create CA: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate serving key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: randSerial(),
		Subject:      pkix.Name{CommonName: "podid-webhook"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("create serving certificate: %w", err)
	}
	return &SelfSigned{
		CAPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		cert:  tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key},
	}, nil
}

func randSerial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	return n
}

// GetCertificate is for tls.Config.
func (s *SelfSigned) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return &s.cert, nil
}

// webhookHosts returns the names the serving certificate must cover: the
// host of every clientConfig.url and the DNS names of every clientConfig
// service in the configuration, plus loopback.
func webhookHosts(cfg *admissionregistrationv1.MutatingWebhookConfiguration, fallbackService, fallbackNamespace string) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	svc := func(name, ns string) {
		hosts = append(hosts, name, name+"."+ns, name+"."+ns+".svc", name+"."+ns+".svc.cluster.local")
	}
	svc(fallbackService, fallbackNamespace)
	if cfg != nil {
		for _, w := range cfg.Webhooks {
			if w.ClientConfig.URL != nil {
				if u, err := url.Parse(*w.ClientConfig.URL); err == nil && u.Hostname() != "" {
					hosts = append(hosts, u.Hostname())
				}
			}
			if s := w.ClientConfig.Service; s != nil {
				svc(s.Name, s.Namespace)
			}
		}
	}
	slices.Sort(hosts)
	return slices.Compact(hosts)
}

// mergeBundle returns a caBundle holding ca first, then the other still
// valid podid CAs from old (other replicas' CAs), at most maxBundleCAs.
// Certificates that are not podid's are dropped: under --tls-self-signed
// podid owns the bundle.
func mergeBundle(old, ca []byte, now time.Time) []byte {
	out := bytes.Clone(ca)
	n := 1
	for rest := old; n < maxBundleCAs; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil || c.Subject.CommonName != caCommonName || now.After(c.NotAfter) {
			continue
		}
		p := pem.EncodeToMemory(b)
		if bytes.Contains(out, p) {
			continue
		}
		out = append(out, p...)
		n++
	}
	return out
}

// syncCABundle puts ca into every webhook of the named configuration. It
// returns whether the configuration changed.
func syncCABundle(ctx context.Context, client kubernetes.Interface, name string, ca []byte) (bool, error) {
	api := client.AdmissionregistrationV1().MutatingWebhookConfigurations()
	for attempt := 0; ; attempt++ {
		cfg, err := api.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, fmt.Errorf("get MutatingWebhookConfiguration %s: %w", name, err)
		}
		changed := false
		for i := range cfg.Webhooks {
			cc := &cfg.Webhooks[i].ClientConfig
			if bundleContains(cc.CABundle, ca) {
				continue
			}
			cc.CABundle = mergeBundle(cc.CABundle, ca, time.Now())
			changed = true
		}
		if !changed {
			return false, nil
		}
		_, err = api.Update(ctx, cfg, metav1.UpdateOptions{})
		if err == nil {
			return true, nil
		}
		if !apierrors.IsConflict(err) || attempt >= 5 {
			return false, fmt.Errorf("update MutatingWebhookConfiguration %s: %w", name, err)
		}
	}
}

// bundleContains reports whether the bundle already contains ca (order
// does not matter to the apiserver).
func bundleContains(bundle, ca []byte) bool {
	return bytes.Contains(bundle, bytes.TrimSpace(ca))
}

// runCABundleSync keeps the configuration's caBundle containing ca: at
// once, then every interval, so a re-applied manifest that blanks it is
// repaired.
func runCABundleSync(ctx context.Context, client kubernetes.Interface, name string, ca []byte, interval time.Duration, m *Metrics, log *slog.Logger) {
	for {
		changed, err := syncCABundle(ctx, client, name, ca)
		switch {
		case err != nil && ctx.Err() == nil:
			m.caBundleSyncs.WithLabelValues("error").Inc()
			log.Warn("caBundle not updated", "webhookConfiguration", name, "err", err)
		case changed:
			m.caBundleSyncs.WithLabelValues("ok").Inc()
			log.Info("caBundle updated", "webhookConfiguration", name)
		}
		wait := interval
		if err != nil {
			wait = min(interval, 5*time.Second)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// getWebhookConfig fetches the configuration for its hosts; missing is not
// an error (it may be applied after the webhook starts).
func getWebhookConfig(ctx context.Context, client kubernetes.Interface, name string) (*admissionregistrationv1.MutatingWebhookConfiguration, error) {
	cfg, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get MutatingWebhookConfiguration %s: %w", name, err)
	}
	return cfg, nil
}

var errNoCert = errors.New("no serving certificate: set --tls-cert and --tls-key, or --tls-self-signed")
