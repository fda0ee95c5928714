package sdk

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podid/podid/internal/agent"
	"github.com/podid/podid/internal/agent/eksauth"
)

// TestServerOutage: the EKS Auth server goes away after the first fetch;
// SDKs keep getting the cached credentials past the refresh TTL; when the
// server comes back the agent refreshes by itself.
func TestServerOutage(t *testing.T) {
	s := startPodid(t)
	up := newFakeEKSAuth(t, s, podToken(1))
	// A 2 s refresh TTL stands in for 3 h.
	ag := startAgent(t, up.URL(), func(c *agent.Config) { c.RefreshTTL = 2 * time.Second })
	env := sdkEnv(ag.URL, writeToken(t, podToken(1)), s.ServerURL)

	if id := goSDK(t, env, true); id.Error != "" || id.Arn != s.Arn {
		t.Fatalf("before the outage: %+v", id)
	}
	up.stop()
	time.Sleep(2200 * time.Millisecond) // past the TTL: every answer now needs a refresh that fails
	for i := 0; i < 3; i++ {
		if id := goSDK(t, env, false); id.Error != "" || id.AccessKeyId != s.Creds.AccessKeyID {
			t.Fatalf("go SDK during the outage (%d): %+v", i, id)
		}
	}
	if id := boto(t, env, false, ""); id.Error != "" || id.AccessKeyId != s.Creds.AccessKeyID {
		t.Fatalf("boto3 during the outage: %+v", id)
	}
	if n := up.calls.Load(); n != 1 {
		t.Fatalf("calls reached a stopped server? %d", n)
	}
	m := metrics(t, ag)
	if !strings.Contains(m, "podid_agent_cache_stale_hits_total") || strings.Contains(m, "podid_agent_cache_stale_hits_total 0") {
		t.Fatalf("no stale hits recorded:\n%s", grep(m, "podid_agent_cache"))
	}

	up.restart()
	deadline := time.Now().Add(15 * time.Second)
	for up.calls.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the agent did not refresh after the server came back")
		}
		if id := goSDK(t, env, false); id.Error != "" {
			t.Fatalf("after the outage: %+v", id)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if id := goSDK(t, env, true); id.Error != "" || id.Arn != s.Arn {
		t.Fatalf("after recovery: %+v", id)
	}
	if m := metrics(t, ag); !strings.Contains(m, `podid_agent_fetches_total{result="success"} 2`) {
		t.Fatalf("refresh not recorded:\n%s", grep(m, "fetches_total"))
	}
}

// TestOneTokenThousandRequests: 1,000 concurrent requests with one token
// make exactly one upstream call.
func TestOneTokenThousandRequests(t *testing.T) {
	s := startPodid(t)
	up := newFakeEKSAuth(t, s, podToken(1))
	up.delay.Store(int64(300 * time.Millisecond)) // make sure they all overlap
	up.mode.Store("slow")
	ag := startAgent(t, up.URL())

	const n = 1000
	client := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: n}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	errs := make(chan string, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			code, body := get(client, ag.URL, podToken(1))
			if code != 200 || !strings.Contains(body, s.Creds.AccessKeyID) {
				errs <- fmt.Sprintf("%d %s", code, body)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatalf("a request failed: %s", e)
	}
	if c := up.calls.Load(); c != 1 {
		t.Fatalf("upstream calls: %d, want 1", c)
	}
}

// TestFailingServerBoundedRetries: a server answering 500 gets at most
// MaxAttempts calls per request, and the SDK gets a 500.
func TestFailingServerBoundedRetries(t *testing.T) {
	s := startPodid(t)
	up := newFakeEKSAuth(t, s, podToken(1))
	up.mode.Store("500")
	ag := startAgent(t, up.URL(), func(c *agent.Config) { c.RetryBase = 10 * time.Millisecond })
	code, body := get(http.DefaultClient, ag.URL, podToken(1))
	if code != 500 || !strings.Contains(body, "InternalServerException") {
		t.Fatalf("got %d %s", code, body)
	}
	if c := up.calls.Load(); c != agent.DefaultMaxAttempts {
		t.Fatalf("upstream calls: %d, want %d", c, agent.DefaultMaxAttempts)
	}
	up.mode.Store("429")
	if code, body := get(http.DefaultClient, ag.URL, podToken(1)); code != 429 {
		t.Fatalf("throttled: %d %s", code, body)
	}
}

// TestSlowServerNoPileUp: a server that never answers in time, hit with
// many distinct tokens: upstream concurrency stays bounded, each token gets
// bounded attempts, requests fail with 503, and no goroutines are left.
func TestSlowServerNoPileUp(t *testing.T) {
	s := startPodid(t)
	up := newFakeEKSAuth(t, s)
	up.delay.Store(int64(time.Minute))
	up.mode.Store("slow")
	const maxConcurrent = 8
	counting := &countingUpstream{}
	ag := startAgent(t, up.URL(), func(c *agent.Config) {
		counting.next = c.Upstream
		c.Upstream = counting
		c.AttemptTimeout = 200 * time.Millisecond
		c.FetchTimeout = 1500 * time.Millisecond
		c.RetryBase = 20 * time.Millisecond
		c.MaxConcurrent = maxConcurrent
	})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200}}
	base := runtime.NumGoroutine()

	const tokens, perToken = 100, 3
	var wg sync.WaitGroup
	var mu sync.Mutex
	codes := map[int]int{}
	startAt := time.Now()
	for i := 0; i < tokens; i++ {
		for j := 0; j < perToken; j++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				code, _ := get(client, ag.URL, podToken(100+i))
				mu.Lock()
				codes[code]++
				mu.Unlock()
			}(i)
		}
	}
	wg.Wait()
	elapsed := time.Since(startAt)
	client.CloseIdleConnections()
	if codes[503] != tokens*perToken {
		t.Fatalf("status codes: %v", codes)
	}
	if m := counting.max.Load(); m > maxConcurrent {
		t.Fatalf("the agent made %d concurrent upstream calls, limit %d", m, maxConcurrent)
	}
	if c := up.calls.Load(); c > tokens*agent.DefaultMaxAttempts {
		t.Fatalf("upstream calls: %d for %d tokens (max %d attempts each)", c, tokens, agent.DefaultMaxAttempts)
	}
	// Everything the burst started must wind down.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base+10 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after\n%s", base, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%d requests, %d tokens: %v; %d upstream calls, max %d concurrent; goroutines %d → %d",
		tokens*perToken, tokens, elapsed.Round(time.Millisecond), up.calls.Load(), counting.max.Load(), base, runtime.NumGoroutine())
}

func get(c *http.Client, url, token string) (int, string) {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", token)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func metrics(t testing.TB, ag *runningAgent) string {
	t.Helper()
	code, body := get(http.DefaultClient, ag.Metrics+"/metrics", "")
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	return body
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// countingUpstream records how many calls the agent makes and how many upstream calls the agent has in flight.
type countingUpstream struct {
	next     agent.Upstream
	calls    atomic.Int64
	inflight atomic.Int64
	max      atomic.Int64
}

func (c *countingUpstream) AssumeRoleForPodIdentity(ctx context.Context, cluster, token string) (*eksauth.Response, error) {
	c.calls.Add(1)
	n := c.inflight.Add(1)
	defer c.inflight.Add(-1)
	for m := c.max.Load(); n > m && !c.max.CompareAndSwap(m, n); m = c.max.Load() {
	}
	return c.next.AssumeRoleForPodIdentity(ctx, cluster, token)
}
