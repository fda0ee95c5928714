package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// MaxReviewBytes bounds a request body. The apiserver caps an object at
// 3 MiB of JSON; a review carries it once on CREATE, plus envelope.
const MaxReviewBytes = 8 << 20

// ServiceAccounts finds a service account. It returns nil, nil when the
// account does not exist.
type ServiceAccounts interface {
	ServiceAccount(ctx context.Context, namespace, name string) (*corev1.ServiceAccount, error)
}

// Associations says whether a namespace/service account pair has a Pod
// Identity association on this cluster.
type Associations interface {
	Associated(namespace, serviceAccount string) bool
}

// Handler answers AdmissionReviews on /mutate.
type Handler struct {
	Mutator         *Mutator
	ServiceAccounts ServiceAccounts // nil: no IRSA
	Associations    Associations    // nil: no Pod Identity
	Metrics         *Metrics
	Log             *slog.Logger
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "use POST with an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxReviewBytes))
	if err != nil {
		h.Metrics.badRequests.Inc()
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("AdmissionReview larger than %d bytes", MaxReviewBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	out, err := h.Review(r.Context(), body)
	if err != nil {
		h.Metrics.badRequests.Inc()
		h.Log.Warn("rejected request", "remote", r.RemoteAddr, "err", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(out)
	h.Metrics.latency.Observe(time.Since(start).Seconds())
}

// Review answers one AdmissionReview body. An error means the body is not
// a review it can answer; every other problem yields an allowed, unmutated
// response, because a webhook that blocks pods blocks the cluster.
func (h *Handler) Review(ctx context.Context, body []byte) ([]byte, error) {
	rev, err := DecodeReview(body)
	if err != nil {
		return nil, err
	}
	patch, outcome, mode, warning := h.admit(ctx, rev)
	h.Metrics.admissions.WithLabelValues(outcome, string(mode)).Inc()
	var warnings []string
	if warning != "" {
		warnings = []string{warning}
	}
	return encodeResponse(rev, patch, warnings)
}

func (h *Handler) admit(ctx context.Context, rev *Review) (patch []byte, outcome string, mode Mode, warning string) {
	if !rev.isPodCreate() {
		return nil, outcomeSkipped, ModeNone, ""
	}
	q := rev.Request
	pod, err := rev.decodedPod()
	if err != nil {
		h.Log.Warn("pod not mutated: undecodable object", "uid", q.UID, "namespace", q.Namespace, "err", err)
		return nil, outcomeError, ModeNone, "podid webhook: pod not mutated: " + err.Error()
	}
	// At CREATE the object may lack its namespace (and, with generateName,
	// its name); the request always has the namespace.
	ns := q.Namespace
	saName := pod.Spec.ServiceAccountName
	if saName == "" {
		saName = "default"
	}

	associated := h.Associations != nil && h.Associations.Associated(ns, saName)
	var sa *corev1.ServiceAccount
	if !associated && h.ServiceAccounts != nil {
		sa, err = h.ServiceAccounts.ServiceAccount(ctx, ns, saName)
		if err != nil {
			h.Log.Error("pod not mutated: service account lookup failed", "namespace", ns, "pod", podName(pod), "serviceAccount", saName, "err", err)
			return nil, outcomeError, ModeNone, fmt.Sprintf("podid webhook: pod created without AWS credentials: service account %s/%s: %v", ns, saName, err)
		}
	}
	id := h.Mutator.Decide(pod, sa, associated)
	if id.Mode == ModeNone {
		return nil, outcomeSkipped, ModeNone, ""
	}
	ops := h.Mutator.Patch(pod, id)
	if len(ops) == 0 {
		return nil, outcomeUnchanged, id.Mode, ""
	}
	patch, err = json.Marshal(ops)
	if err != nil {
		h.Log.Error("pod not mutated: encode patch", "namespace", ns, "pod", podName(pod), "err", err)
		return nil, outcomeError, id.Mode, "podid webhook: pod not mutated: " + err.Error()
	}
	if h.Log.Enabled(ctx, slog.LevelDebug) {
		h.Log.Debug("pod mutated", "namespace", ns, "pod", podName(pod), "serviceAccount", saName, "mode", id.Mode, "ops", len(ops))
	}
	return patch, outcomeMutated, id.Mode, ""
}

func podName(p *podView) string {
	m := p.meta()
	if m.Name != "" {
		return m.Name
	}
	return m.GenerateName + "*"
}
