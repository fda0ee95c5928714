package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/podid/podid/internal/agent/eksauth"
)

// loadConns is the number of concurrent keep-alive connections the load
// generator holds open.
const loadConns = 64

// load sends n GETs over loadConns keep-alive connections and returns the
// throughput and latency percentiles.
func load(b *testing.B, url, token string, n int) (rps float64, p50, p99 time.Duration) {
	b.Helper()
	per := max(n/loadConns, 1)
	lat := make([][]time.Duration, loadConns)
	var wg sync.WaitGroup
	start := time.Now()
	for c := 0; c < loadConns; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			tr := &http.Transport{MaxConnsPerHost: 1, MaxIdleConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			req, _ := http.NewRequest(http.MethodGet, url, nil)
			req.Header.Set("Authorization", token)
			lat[c] = make([]time.Duration, 0, per)
			for i := 0; i < per; i++ {
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}(c)
	}
	wg.Wait()
	elapsed := time.Since(start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return 0, 0, 0
	}
	return float64(len(all)) / elapsed.Seconds(), all[len(all)/2], all[len(all)*99/100]
}

// BenchmarkServe compares a cache hit through the agent with a do-nothing
// net/http handler on the same machine in the same run:
//
//	go test -run '^$' -bench BenchmarkServe -benchtime 300000x ./internal/agent/
func BenchmarkServe(b *testing.B) {
	c := newClock()
	up := &fakeUpstream{}
	up.set(func(string) (*eksauth.Response, error) { return respFor(c, "BENCH", 6*time.Hour), nil })
	a := newTestAgent(b, up, func(cfg *Config) { cfg.Now = c.Now })
	cred, _, _ := serving(b, a, nil)
	tk := tok(1)
	if code, body := fetch(b, cred+"/v1/credentials", tk); code != 200 {
		b.Fatalf("warm-up: %d %s", code, body)
	}

	noop := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go noop.Serve(ln)
	b.Cleanup(func() { noop.Shutdown(context.Background()) })

	// The two targets run in alternating rounds and the medians are
	// compared, so that load from elsewhere on the machine hits both alike.
	targets := []struct{ name, url string }{
		{"noop-handler", "http://" + ln.Addr().String() + "/"},
		{"agent-cache-hit", cred + "/v1/credentials"},
	}
	const rounds = 5
	var rps [2][]float64
	var p50s, p99s [2][]time.Duration
	b.ResetTimer()
	for r := 0; r < rounds; r++ {
		for i, tc := range targets {
			q, p50, p99 := load(b, tc.url, tk, max(b.N/rounds, loadConns))
			rps[i], p50s[i], p99s[i] = append(rps[i], q), append(p50s[i], p50), append(p99s[i], p99)
		}
	}
	b.StopTimer()
	for i, tc := range targets {
		b.Logf("%-16s median of %d rounds: %8.0f req/s  p50 %v  p99 %v  (rounds: %.0f)", tc.name, rounds,
			median(rps[i]), median(p50s[i]), median(p99s[i]), rps[i])
	}
	ratio := median(rps[1]) / median(rps[0])
	b.ReportMetric(median(rps[0]), "noop-req/s")
	b.ReportMetric(median(rps[1]), "agent-req/s")
	b.ReportMetric(100*ratio, "agent-%-of-noop")
	b.ReportMetric(float64(median(p50s[1]).Microseconds()), "agent-p50-µs")
	b.ReportMetric(float64(median(p99s[1]).Microseconds()), "agent-p99-µs")
	if n := up.calls.Load(); n != 1 {
		b.Fatalf("upstream calls: %d", n)
	}
}

func median[T int64 | float64 | time.Duration](v []T) T {
	w := slices.Clone(v)
	slices.Sort(w)
	return w[len(w)/2]
}

// BenchmarkLookupHit is the cache-hit path without HTTP.
func BenchmarkLookupHit(b *testing.B) {
	c := newClock()
	up := &fakeUpstream{}
	up.set(func(string) (*eksauth.Response, error) { return respFor(c, "BENCH", 6*time.Hour), nil })
	a := newTestAgent(b, up, func(cfg *Config) { cfg.Now = c.Now })
	tk := podSizedToken()
	if _, err := a.lookup(context.Background(), tk, ""); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.lookup(context.Background(), tk, ""); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// podSizedToken is a JWT-shaped token as long as a real projected token
// (about 1 KiB).
func podSizedToken() string {
	return "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0." + strings.Repeat("eyJpc3Mi", 90) + "." + strings.Repeat("c2ln", 86)
}

// sessionTokenSize is the length of a session token podid mints for a Pod
// Identity session with its six session tags (measured: see
// docs/BENCHMARKS.md); AWS's are of the same order.
const sessionTokenSize = 1000

// TestCacheMemory measures the heap held per cached entry with 100,000
// entries whose answers carry a realistic session token.
//
//	go test -run TestCacheMemory -v ./internal/agent/
func TestCacheMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short mode")
	}
	const n = 100000
	c := newClock()
	up := &fakeUpstream{}
	session := strings.Repeat("S", sessionTokenSize)
	up.set(func(tk string) (*eksauth.Response, error) {
		r := respFor(c, "MEMORY0000000000", 6*time.Hour)
		r.Credentials.SecretAccessKey = strings.Repeat("k", 40)
		r.Credentials.SessionToken = session
		return r, nil
	})
	a := newTestAgent(t, up, func(cfg *Config) { cfg.Now = c.Now; cfg.MaxEntries = n })
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("%s.%08d", podSizedToken()[:len(podSizedToken())-9], i)
	}
	before := heap()
	for _, tk := range tokens {
		if _, err := a.lookup(context.Background(), tk, ""); err != nil {
			t.Fatal(err)
		}
	}
	after := heap()
	if a.CacheLen() != n {
		t.Fatalf("cache has %d entries", a.CacheLen())
	}
	per := float64(after-before) / n
	bodyLen := len(a.cache.peek(keyOf(tokens[0])).body)
	t.Logf("%d entries: %.1f MiB heap, %.0f bytes per entry (answer body %d bytes, session token %d bytes)",
		n, float64(after-before)/(1<<20), per, bodyLen, sessionTokenSize)
	if per > 2048 {
		t.Errorf("%.0f bytes per entry, want < 2 KiB", per)
	}
	runtime.KeepAlive(tokens)
}

func heap() uint64 {
	var m runtime.MemStats
	for i := 0; i < 3; i++ {
		runtime.GC()
	}
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
