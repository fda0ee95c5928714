package agent

import (
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the agent's Prometheus metrics, on their own registry so that
// several agents (tests, `podid up`) can live in one process.
type Metrics struct {
	reg *prometheus.Registry

	requests        *prometheus.CounterVec
	requestsOK      prometheus.Counter // requests{code="200"}, resolved once for the hot path
	hits            prometheus.Counter
	staleHits       prometheus.Counter
	misses          prometheus.Counter
	evictions       prometheus.Counter
	upstreamLatency prometheus.Histogram
	upstreamErrors  *prometheus.CounterVec
	refreshes       *prometheus.CounterVec

	cacheSize atomic.Pointer[func() int]
}

// NewMetrics registers the agent's metrics on reg (nil: a new registry).
func NewMetrics(reg *prometheus.Registry) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	const ns = "podid_agent"
	m := &Metrics{
		reg: reg,
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "requests_total",
			Help: "Credential requests answered, by HTTP status.",
		}, []string{"code"}),
		hits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "cache_hits_total",
			Help: "Requests answered from the cache with fresh credentials.",
		}),
		staleHits: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "cache_stale_hits_total",
			Help: "Requests answered from the cache past the refresh TTL because the server failed or was slow.",
		}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "cache_misses_total",
			Help: "Requests that waited for the server.",
		}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Name: "cache_evictions_total",
			Help: "Entries evicted because the cache was full.",
		}),
		upstreamLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: ns, Name: "upstream_request_duration_seconds",
			Help:    "Latency of AssumeRoleForPodIdentity calls.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		upstreamErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "upstream_errors_total",
			Help: "Failed AssumeRoleForPodIdentity calls, by error code.",
		}, []string{"code"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Name: "fetches_total",
			Help: "Credential fetches (first fetches and refreshes), by result.",
		}, []string{"result"}),
	}
	m.requestsOK = m.requests.WithLabelValues("200")
	size := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: ns, Name: "cache_entries",
		Help: "Entries in the credentials cache.",
	}, func() float64 {
		if f := m.cacheSize.Load(); f != nil {
			return float64((*f)())
		}
		return 0
	})
	reg.MustRegister(m.requests, m.hits, m.staleHits, m.misses, m.evictions,
		m.upstreamLatency, m.upstreamErrors, m.refreshes, size)
	return m
}

func (m *Metrics) setCacheSize(f func() int) { m.cacheSize.Store(&f) }

func (m *Metrics) request(status int) {
	if status == http.StatusOK {
		m.requestsOK.Inc()
		return
	}
	m.requests.WithLabelValues(strconv.Itoa(status)).Inc()
}

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Registry is where the metrics are registered.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }
