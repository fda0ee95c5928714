package webhook

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Outcomes of one admission, the "outcome" label.
const (
	outcomeMutated   = "mutated"   // a patch was returned
	outcomeUnchanged = "unchanged" // the pod has an identity and already carries everything
	outcomeSkipped   = "skipped"   // no identity, not a pod CREATE, or every container skipped
	outcomeError     = "error"     // allowed unmutated because something failed
)

// Metrics are the webhook's Prometheus metrics, on a registry of their own
// so tests can run several webhooks in one process.
type Metrics struct {
	Registry *prometheus.Registry

	admissions    *prometheus.CounterVec
	latency       prometheus.Histogram
	badRequests   prometheus.Counter
	saLookups     *prometheus.CounterVec
	missed        prometheus.Counter
	unmutated     prometheus.Gauge
	associations  *prometheus.GaugeVec
	sourceErrors  *prometheus.CounterVec
	tlsReloads    *prometheus.CounterVec
	caBundleSyncs *prometheus.CounterVec
}

// NewMetrics registers the webhook's metrics on a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podid_webhook_admissions_total",
			Help: "AdmissionReviews answered, by outcome (mutated, unchanged, skipped, error) and mode (irsa, pod_identity, none).",
		}, []string{"outcome", "mode"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "podid_webhook_admission_duration_seconds",
			Help:    "Time to answer one AdmissionReview, from the request body read to the reply written.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		badRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podid_webhook_bad_requests_total",
			Help: "Requests to /mutate that were not an AdmissionReview this webhook can answer (HTTP 4xx).",
		}),
		saLookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podid_webhook_service_account_cache_misses_total",
			Help: "Service accounts not in the informer cache and fetched from the apiserver, by result (found, not_found, error).",
		}, []string{"result"}),
		missed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "podid_webhook_missed_pods_total",
			Help: "Pods seen running without the injection they should have (created while the webhook was unreachable, or before their role or association existed); each pod counted once per webhook process.",
		}),
		unmutated: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "podid_webhook_missed_pods",
			Help: "Pods that currently lack the injection the webhook would give them now; they need a restart to get credentials.",
		}),
		associations: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "podid_webhook_associations",
			Help: "Pod Identity associations (namespace/service account pairs) known, by source.",
		}, []string{"source"}),
		sourceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podid_webhook_association_refresh_errors_total",
			Help: "Failed association refreshes, by source; the last good set stays in use.",
		}, []string{"source"}),
		tlsReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podid_webhook_tls_reloads_total",
			Help: "Serving certificate (re)loads from --tls-cert/--tls-key, by result.",
		}, []string{"result"}),
		caBundleSyncs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "podid_webhook_ca_bundle_updates_total",
			Help: "Updates of the MutatingWebhookConfiguration caBundle under --tls-self-signed, by result.",
		}, []string{"result"}),
	}
	m.Registry.MustRegister(m.admissions, m.latency, m.badRequests, m.saLookups, m.missed, m.unmutated,
		m.associations, m.sourceErrors, m.tlsReloads, m.caBundleSyncs,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
