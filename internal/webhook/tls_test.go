package webhook

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
)

// writePair writes a fresh self-signed pair for host into dir and returns
// the certificate's serial, to tell pairs apart.
func writePair(t *testing.T, certFile, keyFile, host string) string {
	t.Helper()
	s, err := NewSelfSigned([]string{host})
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.cert.Certificate[0]})
	keyDER, err := x509.MarshalPKCS8PrivateKey(s.cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(s.cert.Certificate[0])
	return c.SerialNumber.String()
}

// servedSerial does a TLS handshake with a server using get and returns
// the serial of the certificate it presented.
func servedSerial(t *testing.T, get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: get})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
}

func TestFileCertificateReload(t *testing.T) {
	dir := t.TempDir()
	// Files behind a ..data symlink, as in a Secret volume.
	for _, d := range []string{"v1", "v2"} {
		os.Mkdir(filepath.Join(dir, d), 0o755)
	}
	s1 := writePair(t, filepath.Join(dir, "v1", "tls.crt"), filepath.Join(dir, "v1", "tls.key"), "a.example")
	if err := os.Symlink("v1", filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.Symlink("..data/tls.crt", certFile)
	os.Symlink("..data/tls.key", keyFile)

	m := NewMetrics()
	f, err := LoadFileCertificate(certFile, keyFile, m, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	if got := servedSerial(t, f.GetCertificate); got != s1 {
		t.Fatalf("served %s, want %s", got, s1)
	}

	// A half-written rotation (new cert, old key) keeps the old pair.
	s2 := writePair(t, filepath.Join(dir, "v2", "tls.crt"), filepath.Join(dir, "v2", "tls.key"), "b.example")
	b, _ := os.ReadFile(filepath.Join(dir, "v2", "tls.crt"))
	os.WriteFile(filepath.Join(dir, "v1", "tls.crt"), b, 0o644)
	if _, err := f.reload(); err == nil {
		t.Fatal("mismatched pair loaded")
	}
	if got := servedSerial(t, f.GetCertificate); got != s1 {
		t.Fatalf("after a bad reload served %s, want the old %s", got, s1)
	}

	// The atomic symlink swap, as the kubelet does it.
	tmp := filepath.Join(dir, "..data_tmp")
	os.Symlink("v2", tmp)
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	changed, err := f.reload()
	if err != nil || !changed {
		t.Fatalf("reload after swap: changed=%v err=%v", changed, err)
	}
	if got := servedSerial(t, f.GetCertificate); got != s2 {
		t.Fatalf("served %s, want the new %s", got, s2)
	}
	if changed, _ := f.reload(); changed {
		t.Fatal("unchanged files reloaded")
	}
}

func TestSelfSignedVerifies(t *testing.T) {
	s, err := NewSelfSigned([]string{"127.0.0.1", "podid-webhook.podid-system.svc"})
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(s.CAPEM) {
		t.Fatal("CA PEM does not parse")
	}
	leaf, _ := x509.ParseCertificate(s.cert.Certificate[0])
	for _, name := range []string{"127.0.0.1", "podid-webhook.podid-system.svc"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "other.example"}); err == nil {
		t.Error("verified for a name it does not hold")
	}
}

func TestWebhookHosts(t *testing.T) {
	u := "https://10.1.2.3:8443/mutate"
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{Webhooks: []admissionregistrationv1.MutatingWebhook{
		{ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &u}},
		{ClientConfig: admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Name: "wh", Namespace: "ops"}}},
	}}
	hosts := webhookHosts(cfg, "podid-webhook", "podid-system")
	want := []string{"10.1.2.3", "wh.ops.svc", "podid-webhook.podid-system.svc.cluster.local", "127.0.0.1", "localhost"}
	for _, w := range want {
		found := false
		for _, h := range hosts {
			found = found || h == w
		}
		if !found {
			t.Errorf("hosts %v lack %s", hosts, w)
		}
	}
}

func TestMergeBundle(t *testing.T) {
	var cas [][]byte
	for range maxBundleCAs + 2 {
		s, err := NewSelfSigned([]string{"x"})
		if err != nil {
			t.Fatal(err)
		}
		cas = append(cas, s.CAPEM)
	}
	foreign := pemOf(t, "foreign")
	old := append(append([]byte{}, foreign...), cas[1]...)
	got := mergeBundle(old, cas[0], time.Now())
	if n := countPEM(got); n != 2 {
		t.Fatalf("bundle has %d certificates, want own + the other replica's", n)
	}
	// Idempotent, and bounded.
	if n := countPEM(mergeBundle(got, cas[0], time.Now())); n != 2 {
		t.Fatalf("re-merge: %d", n)
	}
	var all []byte
	for _, c := range cas[1:] {
		all = append(all, c...)
	}
	if n := countPEM(mergeBundle(all, cas[0], time.Now())); n != maxBundleCAs {
		t.Fatalf("bundle of %d, want the cap %d", n, maxBundleCAs)
	}
	// Expired CAs are dropped.
	if n := countPEM(mergeBundle(cas[1], cas[0], time.Now().Add(400*24*time.Hour))); n != 1 {
		t.Fatalf("expired CA kept: %d", n)
	}
}

func pemOf(t *testing.T, cn string) []byte {
	t.Helper()
	s, err := NewSelfSigned([]string{cn})
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.cert.Certificate[0]})
}

func countPEM(b []byte) int {
	n := 0
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return n
		}
		n++
	}
}
