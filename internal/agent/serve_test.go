package agent

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/podid/podid/internal/agent/eksauth"
)

// serving runs a on loopback listeners until the test ends and returns
// the credentials, health and metrics base URLs.
func serving(t testing.TB, a *Agent, probe func(context.Context) error) (creds, health, metrics string) {
	t.Helper()
	l, err := Listen([]string{"127.0.0.1:0"}, "127.0.0.1:0", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, l, probe) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		l.Close()
	})
	return "http://" + l.Credentials[0].Addr().String(), "http://" + l.Health.Addr().String(), "http://" + l.Metrics.Addr().String()
}

func fetch(t testing.TB, url, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealthReadyMetrics(t *testing.T) {
	c := newClock()
	up := &fakeUpstream{}
	up.set(func(string) (*eksauth.Response, error) { return respFor(c, "M", 6*time.Hour), nil })
	a := newTestAgent(t, up, func(cfg *Config) { cfg.Now = c.Now })
	serverUp := make(chan struct{})
	probe := func(ctx context.Context) error {
		select {
		case <-serverUp:
			return nil
		default:
			return errors.New("connection refused")
		}
	}
	creds, health, metrics := serving(t, a, probe)

	if code, _ := fetch(t, health+"/healthz", ""); code != 200 {
		t.Fatalf("healthz %d", code)
	}
	if code, body := fetch(t, health+"/readyz", ""); code != 503 || !strings.Contains(body, "not answered") {
		t.Fatalf("readyz before the server answered: %d %s", code, body)
	}
	close(serverUp)
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, _ := fetch(t, health+"/readyz", "")
		if code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(20 * time.Millisecond)
	}

	for i := 0; i < 3; i++ {
		if code, body := fetch(t, creds+"/v1/credentials", tok(1)); code != 200 {
			t.Fatalf("credentials: %d %s", code, body)
		}
	}
	fetch(t, creds+"/v1/credentials", "")
	_, m := fetch(t, metrics+"/metrics", "")
	for _, want := range []string{
		`podid_agent_requests_total{code="200"} 3`,
		`podid_agent_requests_total{code="400"} 1`,
		`podid_agent_cache_hits_total 2`,
		`podid_agent_cache_misses_total 1`,
		`podid_agent_cache_entries 1`,
		`podid_agent_fetches_total{result="success"} 1`,
		`podid_agent_upstream_request_duration_seconds_count 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if t.Failed() {
		t.Log(m)
	}
}

// TestHugeHeader sends a 1 MB Authorization header over a real connection:
// the server refuses it before the handler runs.
func TestHugeHeader(t *testing.T) {
	up := &fakeUpstream{}
	up.set(func(string) (*eksauth.Response, error) { return nil, errors.New("must not be called") })
	a := newTestAgent(t, up)
	creds, _, _ := serving(t, a, nil)
	code, _ := fetch(t, creds+"/v1/credentials", strings.Repeat("a", 1<<20)+".b.c")
	if code != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("1 MB header: %d", code)
	}
	if up.calls.Load() != 0 {
		t.Fatal("upstream called")
	}
	// Host check on a real listener: the listener's own address passes, a
	// name does not.
	req, _ := http.NewRequest("GET", creds+"/v1/credentials", nil)
	req.Host = "evil.example:" + strings.Split(creds, ":")[2]
	req.Header.Set("Authorization", tok(1))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("foreign Host: %d", resp.StatusCode)
	}
}

func TestListenErrorNamesSetupNetwork(t *testing.T) {
	_, err := Listen([]string{"192.0.2.1:80"}, "", "")
	if err == nil || !strings.Contains(err.Error(), "setup-network") {
		t.Fatalf("got %v", err)
	}
}
