package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/podid/podid/internal/agent/eksauth"
)

// fakeUpstream is an in-process EKS Auth for unit tests of the cache logic.
type fakeUpstream struct {
	calls atomic.Int32
	mu    sync.Mutex
	fn    func(token string) (*eksauth.Response, error)
}

func (f *fakeUpstream) AssumeRoleForPodIdentity(ctx context.Context, cluster, token string) (*eksauth.Response, error) {
	f.calls.Add(1)
	f.mu.Lock()
	fn := f.fn
	f.mu.Unlock()
	return fn(token)
}

func (f *fakeUpstream) set(fn func(token string) (*eksauth.Response, error)) {
	f.mu.Lock()
	f.fn = fn
	f.mu.Unlock()
}

// clock is a settable test clock.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}
func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

func respFor(c *clock, id string, life time.Duration) *eksauth.Response {
	var r eksauth.Response
	r.AssumedRoleUser.ARN = "arn:aws:sts::111122223333:assumed-role/app-role/eks-c1-app-" + id
	r.AssumedRoleUser.AssumeRoleID = "AROAEXAMPLE:eks-c1-app-" + id
	r.Credentials.AccessKeyID = "ASIA" + id
	r.Credentials.SecretAccessKey = "secret-" + id
	r.Credentials.SessionToken = "session-" + id
	r.Credentials.Expiration = eksauth.Timestamp{Time: c.Now().Add(life).Truncate(time.Second)}
	return &r
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func newTestAgent(t testing.TB, up Upstream, mutate ...func(*Config)) *Agent {
	t.Helper()
	cfg := Config{Cluster: "c1", Upstream: up, Logger: testLogger(t), RetryBase: time.Millisecond}
	for _, m := range mutate {
		m(&cfg)
	}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	a.AllowAddrs(&net.TCPAddr{IP: net.IPv4(169, 254, 170, 23), Port: 80}, &net.TCPAddr{IP: net.ParseIP("fd00:ec2::23"), Port: 80}, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2701})
	return a
}

func tok(n int) string { return fmt.Sprintf("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ%d.c2ln", n) }

type result struct {
	status int
	body   map[string]string
	header http.Header
}

func get(a http.Handler, host, path, token string) result {
	r := httptest.NewRequest(http.MethodGet, "http://"+host+path, nil)
	if token != "" {
		r.Header.Set("Authorization", token)
	}
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)
	var body map[string]string
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	return result{w.Code, body, w.Header()}
}

func TestAnswerShape(t *testing.T) {
	c := newClock()
	up := &fakeUpstream{}
	up.set(func(string) (*eksauth.Response, error) { return respFor(c, "ONE", 6*time.Hour), nil })
	a := newTestAgent(t, up, func(cfg *Config) { cfg.Now = c.Now })
	for _, host := range []string{"169.254.170.23", "169.254.170.23:80", "[fd00:ec2::23]", "[FD00:EC2:0::23]:80", "127.0.0.1:2701", "localhost:2701"} {
		for _, path := range []string{"/v1/credentials", "/v1/credentials/"} {
			res := get(a, host, path, tok(1))
			if res.status != 200 {
				t.Fatalf("%s%s: %d %v", host, path, res.status, res.body)
			}
			want := map[string]string{
				"AccessKeyId": "ASIAONE", "SecretAccessKey": "secret-ONE", "Token": "session-ONE",
				"AccountId": "111122223333", "Expiration": "2026-01-01T06:00:00Z",
			}
			if fmt.Sprint(res.body) != fmt.Sprint(want) || res.header.Get("Content-Type") != "application/json" {
				t.Fatalf("answer %v %v", res.body, res.header)
			}
		}
	}
	if n := up.calls.Load(); n != 1 {
		t.Fatalf("upstream calls: %d, want 1", n)
	}
}

func TestBadRequests(t *testing.T) {
	up := &fakeUpstream{}
	up.set(func(string) (*eksauth.Response, error) { return nil, errors.New("must not be called") })
	a := newTestAgent(t, up)
	cases := []struct {
		name, method, host, path, token string
		status                          int
	}{
		{"missing header", "GET", "169.254.170.23", "/v1/credentials", "", 400},
		{"garbage", "GET", "169.254.170.23", "/v1/credentials", "hello world", 400},
		{"two segments", "GET", "169.254.170.23", "/v1/credentials", "a.b", 400},
		{"empty segment", "GET", "169.254.170.23", "/v1/credentials", "a..c", 400},
		{"bearer prefix", "GET", "169.254.170.23", "/v1/credentials", "Bearer " + tok(1), 400},
		{"huge", "GET", "169.254.170.23", "/v1/credentials", strings.Repeat("a", 20000) + ".b.c", 400},
		{"wrong host", "GET", "attacker.example", "/v1/credentials", tok(1), 400},
		{"rebinding name", "GET", "169.254.170.23.nip.io", "/v1/credentials", tok(1), 400},
		{"wrong port", "GET", "169.254.170.23:8080", "/v1/credentials", tok(1), 400},
		{"zone", "GET", "[fe80::1%25eth0]", "/v1/credentials", tok(1), 400},
		{"wrong path", "GET", "169.254.170.23", "/latest/meta-data/", tok(1), 404},
		{"v2 path", "GET", "169.254.170.23", "/v2/credentials/abc", tok(1), 404},
		{"post", "POST", "169.254.170.23", "/v1/credentials", tok(1), 405},
		{"delete", "DELETE", "169.254.170.23", "/v1/credentials", tok(1), 405},
	}
	for _, tc := range cases {
		r := httptest.NewRequest(tc.method, "http://169.254.170.23"+tc.path, nil)
		r.Host = tc.host
		if tc.token != "" {
			r.Header.Set("Authorization", tc.token)
		}
		w := httptest.NewRecorder()
		a.ServeHTTP(w, r)
		var body struct{ Code, Message string }
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body.Code == "" || body.Message == "" {
			t.Errorf("%s: body %q is not {code,message}", tc.name, w.Body)
		}
		if w.Code != tc.status || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s: status %d (want %d), content type %q", tc.name, w.Code, tc.status, w.Header().Get("Content-Type"))
		}
	}
	r := httptest.NewRequest("GET", "http://169.254.170.23/v1/credentials", nil)
	r.Header.Add("Authorization", tok(1))
	r.Header.Add("Authorization", tok(2))
	w := httptest.NewRecorder()
	a.ServeHTTP(w, r)
	if w.Code != 400 {
		t.Errorf("two Authorization headers: %d", w.Code)
	}
	if n := up.calls.Load(); n != 0 {
		t.Fatalf("upstream called %d times for malformed requests", n)
	}
}

func TestUpstreamErrorsPassThrough(t *testing.T) {
	cases := []struct {
		err    *eksauth.Error
		status int
	}{
		{&eksauth.Error{StatusCode: 400, Code: "AccessDeniedException", Message: "node binding: token belongs to another node"}, 403},
		{&eksauth.Error{StatusCode: 400, Code: "InvalidTokenException", Message: "signature invalid"}, 400},
		{&eksauth.Error{StatusCode: 400, Code: "ExpiredTokenException", Message: "token expired"}, 400},
		{&eksauth.Error{StatusCode: 404, Code: "ResourceNotFoundException", Message: "no association"}, 404},
		{&eksauth.Error{StatusCode: 429, Code: "ThrottlingException", Message: "slow down"}, 429},
		{&eksauth.Error{StatusCode: 500, Code: "InternalServerException", Message: "oops"}, 500},
		{&eksauth.Error{StatusCode: 503, Code: "ServiceUnavailableException", Message: "later"}, 503},
	}
	for i, tc := range cases {
		up := &fakeUpstream{}
		up.set(func(string) (*eksauth.Response, error) { return nil, tc.err })
		a := newTestAgent(t, up)
		res := get(a, "169.254.170.23", "/v1/credentials", tok(i))
		if res.status != tc.status || res.body["code"] != tc.err.Code || res.body["message"] != tc.err.Message {
			t.Errorf("%s: got %d %v", tc.err.Code, res.status, res.body)
		}
		wantCalls := int32(1)
		if tc.err.Temporary() {
			wantCalls = DefaultMaxAttempts
		}
		if n := up.calls.Load(); n != wantCalls {
			t.Errorf("%s: %d upstream calls, want %d", tc.err.Code, n, wantCalls)
		}
	}
	up := &fakeUpstream{}
	up.set(func(string) (*eksauth.Response, error) {
		return nil, &net.OpError{Op: "dial", Err: errors.New("connection refused")}
	})
	a := newTestAgent(t, up)
	if res := get(a, "169.254.170.23", "/v1/credentials", tok(1)); res.status != 503 {
		t.Errorf("unreachable server: %d %v", res.status, res.body)
	}
}

func TestCacheLifecycle(t *testing.T) {
	c := newClock()
	up := &fakeUpstream{}
	var gen atomic.Int32
	up.set(func(string) (*eksauth.Response, error) {
		return respFor(c, fmt.Sprint("G", gen.Add(1)), 6*time.Hour), nil
	})
	a := newTestAgent(t, up, func(cfg *Config) { cfg.Now = c.Now })
	key := func() string { return get(a, "169.254.170.23", "/v1/credentials", tok(1)).body["AccessKeyId"] }
	waitCalls := func(n int32) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); up.calls.Load() < n; {
			if time.Now().After(deadline) {
				t.Fatalf("upstream calls %d, want %d", up.calls.Load(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if k := key(); k != "ASIAG1" {
		t.Fatal(k)
	}
	c.Advance(2 * time.Hour) // before the refresh window (≥ 2h15m)
	if k := key(); k != "ASIAG1" || up.calls.Load() != 1 {
		t.Fatalf("%s after 2h, %d calls", k, up.calls.Load())
	}
	c.Advance(36 * time.Minute) // 2h36m: in the refresh window; answered from cache, refreshed behind
	if k := key(); k != "ASIAG1" {
		t.Fatalf("refresh window answered %s", k)
	}
	waitCalls(2)
	time.Sleep(10 * time.Millisecond)
	if k := key(); k != "ASIAG2" {
		t.Fatalf("after background refresh: %s", k)
	}

	// Server starts failing: past the 3 h TTL the stale entry is still served
	// until 15 min before expiry, never after.
	up.set(func(string) (*eksauth.Response, error) {
		return nil, &eksauth.Error{StatusCode: 500, Code: "InternalServerException", Message: "down"}
	})
	c.Advance(3*time.Hour + time.Minute) // 3h01m after G2: stale
	if k := key(); k != "ASIAG2" {
		t.Fatalf("stale entry not served during outage: %q", k)
	}
	c.Advance(2*time.Hour + 30*time.Minute) // 5h31m: still within expiry − 15 min
	if k := key(); k != "ASIAG2" {
		t.Fatalf("stale entry not served at 5h31m: %q", k)
	}
	c.Advance(15 * time.Minute) // 5h46m: inside the margin
	if res := get(a, "169.254.170.23", "/v1/credentials", tok(1)); res.status != 500 {
		t.Fatalf("credentials 14 min from expiry handed out: %d %v", res.status, res.body)
	}
	if a.CacheLen() != 0 {
		t.Fatalf("expired entry kept")
	}

	// Server back: a fresh fetch.
	up.set(func(string) (*eksauth.Response, error) { return respFor(c, "BACK", 6*time.Hour), nil })
	if k := key(); k != "ASIABACK" {
		t.Fatalf("after recovery: %q", k)
	}

	// The server withdraws the association: past the TTL, stop serving.
	up.set(func(string) (*eksauth.Response, error) {
		return nil, &eksauth.Error{StatusCode: 404, Code: "ResourceNotFoundException", Message: "association deleted"}
	})
	c.Advance(3*time.Hour + time.Minute)
	if res := get(a, "169.254.170.23", "/v1/credentials", tok(1)); res.status != 404 {
		t.Fatalf("revoked association still served: %d %v", res.status, res.body)
	}
}

func TestShortLivedCredentials(t *testing.T) {
	c := newClock()
	up := &fakeUpstream{}
	up.set(func(string) (*eksauth.Response, error) { return respFor(c, "S", 20*time.Minute), nil })
	a := newTestAgent(t, up, func(cfg *Config) { cfg.Now = c.Now })
	get(a, "169.254.170.23", "/v1/credentials", tok(1))
	e := a.cache.peek(keyOf(tok(1)))
	if got := time.Duration(e.expiry - e.usable); got != 5*time.Minute {
		t.Fatalf("margin for 20-minute credentials: %v", got)
	}
	if time.Duration(e.staleAt-e.fetched) != 15*time.Minute || e.refreshAt >= e.staleAt {
		t.Fatalf("deadlines: %+v", e)
	}
}

func TestStaleWaitSlowServer(t *testing.T) {
	c := newClock()
	up := &fakeUpstream{}
	up.set(func(string) (*eksauth.Response, error) { return respFor(c, "OLD", 6*time.Hour), nil })
	a := newTestAgent(t, up, func(cfg *Config) { cfg.Now = c.Now; cfg.StaleWait = 50 * time.Millisecond })
	get(a, "169.254.170.23", "/v1/credentials", tok(1))
	release := make(chan struct{})
	up.set(func(string) (*eksauth.Response, error) { <-release; return respFor(c, "NEW", 6*time.Hour), nil })
	c.Advance(3*time.Hour + time.Minute)
	start := time.Now()
	if k := get(a, "169.254.170.23", "/v1/credentials", tok(1)).body["AccessKeyId"]; k != "ASIAOLD" {
		t.Fatalf("slow refresh: got %q", k)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("stale answer took %v", d)
	}
	close(release)
	for deadline := time.Now().Add(5 * time.Second); ; {
		if k := get(a, "169.254.170.23", "/v1/credentials", tok(1)).body["AccessKeyId"]; k == "ASIANEW" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("refresh never landed")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLRUEviction(t *testing.T) {
	c := newClock()
	up := &fakeUpstream{}
	up.set(func(tk string) (*eksauth.Response, error) { return respFor(c, "X", 6*time.Hour), nil })
	a := newTestAgent(t, up, func(cfg *Config) { cfg.Now = c.Now; cfg.MaxEntries = 3 })
	for i := 1; i <= 3; i++ {
		get(a, "169.254.170.23", "/v1/credentials", tok(i))
	}
	get(a, "169.254.170.23", "/v1/credentials", tok(1)) // 1 is now the most recent
	get(a, "169.254.170.23", "/v1/credentials", tok(4)) // evicts 2
	if a.CacheLen() != 3 || a.cache.peek(keyOf(tok(2))) != nil || a.cache.peek(keyOf(tok(1))) == nil {
		t.Fatalf("eviction order wrong: len %d", a.CacheLen())
	}
	if n := up.calls.Load(); n != 4 {
		t.Fatalf("calls %d", n)
	}
}

func TestCacheHoldsNoRawToken(t *testing.T) {
	c := newClock()
	up := &fakeUpstream{}
	up.set(func(string) (*eksauth.Response, error) { return respFor(c, "X", 6*time.Hour), nil })
	a := newTestAgent(t, up, func(cfg *Config) { cfg.Now = c.Now })
	get(a, "169.254.170.23", "/v1/credentials", tok(7))
	for k, e := range a.cache.m {
		if strings.Contains(string(e.body), tok(7)) || strings.Contains(string(k[:]), tok(7)) {
			t.Fatal("raw token in cache")
		}
	}
}
