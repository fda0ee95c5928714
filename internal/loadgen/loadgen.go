// Package loadgen is podid's closed-loop load generator: N workers send
// real, freshly signed AWS requests over keep-alive loopback connections for
// a bounded time and record every request's latency, so that the identity
// server, a do-nothing handler and moto_server are measured the same way.
package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"sync"
	"syscall"
	"time"
)

// Bounds on a run, so a typo cannot turn into an hour of load.
const (
	DefaultWorkers  = 64
	MaxWorkers      = 1024
	DefaultDuration = 10 * time.Second
	MaxDuration     = 60 * time.Second
	requestTimeout  = 10 * time.Second
)

// Source returns the next request for a worker, built and signed now (the
// signing cost lands on the client, as for a real SDK). ok=false means the
// source is exhausted (a pool of one-use tokens ran out) and the worker stops.
type Source func(worker int) (req *http.Request, ok bool, err error)

// Config is one timed phase.
type Config struct {
	Workers  int
	Duration time.Duration
	// ServerPID, if set, is the process whose CPU time is charged to the
	// server side (read from /proc).
	ServerPID int
	// ServerPIDs are further server processes (replicas) charged likewise.
	ServerPIDs []int
}

// Result is what one timed phase measured.
type Result struct {
	Scenario string  `json:"scenario"`
	Target   string  `json:"target"` // podid, noop or moto
	Workers  int     `json:"workers"`
	Seconds  float64 `json:"seconds"` // measured length of the timed phase
	OK       int64   `json:"ok"`      // 2xx responses
	Failed   int64   `json:"failed"`  // everything else, by kind in Errors
	RPS      float64 `json:"rps"`     // OK / Seconds
	// Latency of successful requests in microseconds, from just before
	// http.Client.Do to the last byte of the body (signing excluded).
	P50us float64 `json:"p50_us"`
	P90us float64 `json:"p90_us"`
	P99us float64 `json:"p99_us"`
	MaxUs float64 `json:"max_us"`
	// CPU seconds used during the timed phase by the load generator process
	// (signing, HTTP client) and by the server process.
	ClientCPU float64 `json:"client_cpu_s"`
	ServerCPU float64 `json:"server_cpu_s"`
	// Per successful request, in microseconds of CPU.
	ClientCPUPerReq float64           `json:"client_cpu_us_per_req"`
	ServerCPUPerReq float64           `json:"server_cpu_us_per_req"`
	Errors          map[string]int64  `json:"errors,omitempty"`
	ErrorSamples    map[string]string `json:"error_samples,omitempty"`
	Exhausted       bool              `json:"source_exhausted,omitempty"`
	LoadAvgBefore   string            `json:"loadavg_before"`
	LoadAvgAfter    string            `json:"loadavg_after"`
	Note            string            `json:"note,omitempty"`
	Profile         string            `json:"server_profile,omitempty"`
}

// NewClient is a keep-alive client sized for the workers.
func NewClient(workers int) *http.Client {
	tr := &http.Transport{
		MaxIdleConns:        workers,
		MaxIdleConnsPerHost: workers,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}
	return &http.Client{Transport: tr, Timeout: requestTimeout}
}

// workerStats is kept per worker so the hot loop shares nothing.
type workerStats struct {
	lat       []time.Duration
	failed    int64
	errors    map[string]int64
	samples   map[string]string
	exhausted bool
}

// Run sends requests from src with cfg.Workers concurrent workers until
// cfg.Duration has passed (or src is exhausted) and reports what it saw.
func Run(ctx context.Context, cfg Config, client *http.Client, src Source) (Result, error) {
	if cfg.Workers <= 0 || cfg.Workers > MaxWorkers {
		return Result{}, fmt.Errorf("loadgen: workers must be 1..%d", MaxWorkers)
	}
	if cfg.Duration <= 0 || cfg.Duration > MaxDuration {
		return Result{}, fmt.Errorf("loadgen: duration must be in (0, %s]", MaxDuration)
	}
	res := Result{Workers: cfg.Workers, LoadAvgBefore: LoadAvg()}
	clientBefore := selfCPU()
	serverBefore, _ := serversCPU(cfg)

	stats := make([]*workerStats, cfg.Workers)
	start := time.Now()
	end := start.Add(cfg.Duration)
	var wg sync.WaitGroup
	for w := range cfg.Workers {
		st := &workerStats{lat: make([]time.Duration, 0, 4096), errors: map[string]int64{}, samples: map[string]string{}}
		stats[w] = st
		wg.Go(func() { work(ctx, w, end, client, src, st) })
	}
	wg.Wait()
	elapsed := time.Since(start)

	res.ClientCPU = (selfCPU() - clientBefore).Seconds()
	if cfg.ServerPID > 0 || len(cfg.ServerPIDs) > 0 {
		if after, err := serversCPU(cfg); err == nil {
			res.ServerCPU = (after - serverBefore).Seconds()
		}
	}
	res.LoadAvgAfter = LoadAvg()
	res.Seconds = elapsed.Seconds()

	var all []time.Duration
	for _, st := range stats {
		all = append(all, st.lat...)
		res.Failed += st.failed
		res.Exhausted = res.Exhausted || st.exhausted
		for k, n := range st.errors {
			if res.Errors == nil {
				res.Errors, res.ErrorSamples = map[string]int64{}, map[string]string{}
			}
			res.Errors[k] += n
			if _, ok := res.ErrorSamples[k]; !ok {
				res.ErrorSamples[k] = st.samples[k]
			}
		}
	}
	res.OK = int64(len(all))
	res.RPS = float64(res.OK) / res.Seconds
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	res.P50us = micros(Percentile(all, 50))
	res.P90us = micros(Percentile(all, 90))
	res.P99us = micros(Percentile(all, 99))
	if len(all) > 0 {
		res.MaxUs = micros(all[len(all)-1])
	}
	if res.OK > 0 {
		res.ClientCPUPerReq = res.ClientCPU / float64(res.OK) * 1e6
		res.ServerCPUPerReq = res.ServerCPU / float64(res.OK) * 1e6
	}
	return res, nil
}

// serversCPU is the CPU time of every server process of cfg.
func serversCPU(cfg Config) (time.Duration, error) {
	pids := cfg.ServerPIDs
	if cfg.ServerPID > 0 {
		pids = append([]int{cfg.ServerPID}, pids...)
	}
	var sum time.Duration
	for _, pid := range pids {
		d, err := ProcessCPU(pid)
		if err != nil {
			return 0, err
		}
		sum += d
	}
	return sum, nil
}

func work(ctx context.Context, w int, end time.Time, client *http.Client, src Source, st *workerStats) {
	for ctx.Err() == nil && time.Now().Before(end) {
		req, ok, err := src(w)
		if !ok {
			st.exhausted = true
			return
		}
		if err != nil {
			st.fail("client: "+err.Error(), "")
			continue
		}
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			st.fail("transport: "+transportKind(err), err.Error())
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		d := time.Since(t0)
		switch {
		case err != nil:
			st.fail("transport: reading body", err.Error())
		case resp.StatusCode/100 != 2:
			st.fail(fmt.Sprintf("HTTP %d %s", resp.StatusCode, ErrorCode(body)), string(truncate(body, 400)))
		default:
			st.lat = append(st.lat, d)
		}
	}
}

func (st *workerStats) fail(kind, sample string) {
	st.failed++
	st.errors[kind]++
	if _, ok := st.samples[kind]; !ok {
		st.samples[kind] = sample
	}
}

// transportKind keeps error keys few: the message without addresses.
func transportKind(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "EOF"
	}
	return "other"
}

var xmlCodeRE = regexp.MustCompile(`<Code>([^<]{1,100})</Code>`)

// ErrorCode finds the AWS error code in a query (XML) or restJson body.
func ErrorCode(body []byte) string {
	if b := bytes.TrimSpace(body); len(b) > 0 && b[0] == '{' {
		var e struct {
			Type string `json:"__type"`
			Code string `json:"code"`
		}
		if json.Unmarshal(b, &e) == nil {
			if e.Type != "" {
				return e.Type
			}
			if e.Code != "" {
				return e.Code
			}
		}
	}
	if m := xmlCodeRE.FindSubmatch(body); m != nil {
		return string(m[1])
	}
	return "(no code)"
}

// Percentile of sorted latencies, nearest-rank.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted))+0.999999999) - 1
	rank = max(0, min(rank, len(sorted)-1))
	return sorted[rank]
}

func micros(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}
