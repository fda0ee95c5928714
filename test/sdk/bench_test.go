package sdk

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"testing"
	"time"
)

// BenchmarkColdPath measures a cache miss end to end: SDK-style GET →
// agent → the real server's AssumeRoleForPodIdentity (token verification,
// association lookup, role session with six session tags) → answer. Each
// request carries a token the agent has not seen.
//
//	go test -run '^$' -bench BenchmarkColdPath -benchtime 300x ./test/sdk/
func BenchmarkColdPath(b *testing.B) {
	c := startPodidCluster(b)
	ag := startAgentWith(b, c.agentUpstream(b, "node-1"))
	tokens := make([]string, b.N)
	for i := range tokens {
		tokens[i] = c.podToken(b, fmt.Sprintf("pod-%d", i), "node-1")
	}
	lat := make([]time.Duration, 0, b.N)
	var tokenLen int
	b.ResetTimer()
	for _, tk := range tokens {
		t0 := time.Now()
		code, body := get(http.DefaultClient, ag.URL, tk)
		lat = append(lat, time.Since(t0))
		if code != 200 {
			b.Fatalf("%d %s", code, body)
		}
		if tokenLen == 0 {
			var a struct{ Token string }
			_ = json.Unmarshal([]byte(body), &a)
			tokenLen = len(a.Token)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
	b.ReportMetric(float64(tokenLen), "session-token-bytes")
}
