package webhook

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var (
	loadDuration = flag.Duration("webhook.load", 0, "TestLoad: how long to drive each handler in each round (0 skips the test)")
	loadWorkers  = flag.Int("webhook.workers", 16, "TestLoad: concurrent requests in flight")
	loadRounds   = flag.Int("webhook.rounds", 5, "TestLoad: alternating rounds; the report gives medians")
)

// mapSAs is an in-memory service-account store, standing in for the
// informer's lister (also a map lookup).
type mapSAs map[string]*corev1.ServiceAccount

func (m mapSAs) ServiceAccount(_ context.Context, ns, name string) (*corev1.ServiceAccount, error) {
	return m[ns+"/"+name], nil
}

type setAssoc map[assocKey]bool

func (s setAssoc) Associated(ns, sa string) bool { return s[assocKey{ns, sa}] }

// benchReview is the AdmissionReview the apiserver would send for the
// typical pod: one native sidecar and two containers, after the apiserver's
// defaulting and the ServiceAccount admission plugin.
func benchReview(tb testing.TB, sa string) []byte {
	tb.Helper()
	pod, err := os.ReadFile("testdata/bench-pod.json")
	if err != nil {
		tb.Fatal(err)
	}
	pod = bytes.ReplaceAll(pod, []byte(`"checkout"`+",\n    \"serviceAccount\": \"checkout\""), []byte(`"`+sa+`",`+"\n    \"serviceAccount\": \""+sa+`"`))
	b, err := json.Marshal(map[string]any{
		"apiVersion": reviewV1,
		"kind":       "AdmissionReview",
		"request": map[string]any{
			"uid":                "0df28fbd-5f5f-4b4a-8d0f-1b1f2c3d4e5f",
			"kind":               metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			"resource":           metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			"requestKind":        metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
			"requestResource":    metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
			"namespace":          "shop",
			"operation":          "CREATE",
			"userInfo":           map[string]any{"username": "system:serviceaccount:kube-system:replicaset-controller", "uid": "a1b2", "groups": []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}},
			"object":             json.RawMessage(pod),
			"oldObject":          nil,
			"dryRun":             false,
			"options":            map[string]any{"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
			"subResource":        "",
			"requestSubResource": "",
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func benchHandler() *Handler {
	irsa := &corev1.ServiceAccount{}
	irsa.Annotations = map[string]string{"eks.amazonaws.com/role-arn": testRole, "eks.amazonaws.com/sts-regional-endpoints": "true"}
	return &Handler{
		Mutator:         NewMutator(Options{Region: "us-west-2"}),
		ServiceAccounts: mapSAs{"shop/checkout": irsa, "shop/plain": {}},
		Associations:    setAssoc{{"shop", "podid"}: true},
		Metrics:         NewMetrics(),
		Log:             discardLogger(),
	}
}

// noopHandler reads the request and answers a constant allowed review: the
// floor of HTTP, TLS and the load generator on this machine.
var noopHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	io.WriteString(w, `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"0df28fbd-5f5f-4b4a-8d0f-1b1f2c3d4e5f","allowed":true}}`)
})

func BenchmarkReview(b *testing.B) {
	h := benchHandler()
	for _, sa := range []string{"checkout", "podid", "plain"} {
		body := benchReview(b, sa)
		b.Run(sa, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := h.Review(context.Background(), body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// loadResult is one closed-loop run against one handler.
type loadResult struct {
	name          string
	n             int
	elapsed       time.Duration
	p50, p99, max time.Duration
}

func (r loadResult) perSecond() float64 { return float64(r.n) / r.elapsed.Seconds() }

// runLoad serves h over HTTPS (HTTP/2, as the apiserver's webhook client
// negotiates it) on loopback and keeps workers requests in flight for d.
func runLoad(t *testing.T, name string, h http.Handler, body []byte, workers int, d time.Duration) loadResult {
	self, err := NewSelfSigned([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, TLSConfig: &tls.Config{GetCertificate: self.GetCertificate, MinVersion: tls.VersionTLS12}}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(self.CAPEM)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true, MaxIdleConnsPerHost: workers}}
	url := "https://" + ln.Addr().String() + "/mutate"
	do := func() error {
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			return err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s", resp.Status)
		}
		return err
	}
	for range 200 { // warm up: connection, TLS, first allocations
		if err := do(); err != nil {
			t.Fatal(err)
		}
	}
	var (
		mu  sync.Mutex
		all []time.Duration
		wg  sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(d)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, 1<<16)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := do(); err != nil {
					t.Error(err)
					return
				}
				lat = append(lat, time.Since(t0))
			}
			mu.Lock()
			all = append(all, lat...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(all)
	q := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	return loadResult{name: name, n: len(all), elapsed: elapsed, p50: q(0.50), p99: q(0.99), max: all[len(all)-1]}
}

// TestLoad measures AdmissionReviews per second and latency percentiles
// for the typical pod, against the webhook and a do-nothing handler in the
// same run, alternating so that drift on the machine hits both alike:
//
//	go test ./internal/webhook -run TestLoad -webhook.load=4s -v
func TestLoad(t *testing.T) {
	if *loadDuration == 0 {
		t.Skip("set -webhook.load=10s to run")
	}
	h := benchHandler()
	cases := []struct {
		name string
		h    http.Handler
		body []byte
	}{
		{"do-nothing handler", noopHandler, benchReview(t, "checkout")},
		{"webhook, IRSA (mutated)", h, benchReview(t, "checkout")},
		{"webhook, Pod Identity (mutated)", h, benchReview(t, "podid")},
		{"webhook, no identity (allowed as is)", h, benchReview(t, "plain")},
	}
	// Check what the webhook answers before timing it.
	for _, c := range cases[1:] {
		if _, err := h.Review(context.Background(), c.body); err != nil {
			t.Fatal(err)
		}
	}
	results := map[string][]loadResult{}
	for round := range *loadRounds {
		for _, c := range cases {
			r := runLoad(t, c.name, c.h, c.body, *loadWorkers, *loadDuration)
			t.Logf("round %d: %-38s %7.0f/s  p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms", round+1, r.name, r.perSecond(), ms(r.p50), ms(r.p99), ms(r.max))
			results[c.name] = append(results[c.name], r)
		}
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "| handler | AdmissionReviews/s (median) | p50 (median) | p99 (median) | rounds (/s) |\n|---|---:|---:|---:|---|\n")
	for _, c := range cases {
		rs := results[c.name]
		var rates []float64
		var p50s, p99s []time.Duration
		var each []string
		for _, r := range rs {
			rates = append(rates, r.perSecond())
			p50s = append(p50s, r.p50)
			p99s = append(p99s, r.p99)
			each = append(each, fmt.Sprintf("%.0f", r.perSecond()))
		}
		fmt.Fprintf(&out, "| %s | %.0f | %.2f ms | %.2f ms | %s |\n", c.name, median(rates), ms(median(p50s)), ms(median(p99s)), strings.Join(each, " "))
	}
	t.Logf("GOMAXPROCS=%d, %d workers, %d rounds of %v per handler\n%s", runtime.GOMAXPROCS(0), *loadWorkers, *loadRounds, *loadDuration, out.String())
}

func median[T float64 | time.Duration](v []T) T {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
