package webhook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	kjson "sigs.k8s.io/json"
)

// AdmissionReview API versions the apiserver may send. v1beta1 has the same
// JSON shape for everything this webhook reads and writes.
const (
	reviewV1      = "admission.k8s.io/v1"
	reviewV1beta1 = "admission.k8s.io/v1beta1"
)

// Review is the part of an AdmissionReview request the webhook reads. It is
// decoded into this narrow type, not the full admission API type, so that
// oldObject, userInfo and options are never parsed.
type Review struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		UID         types.UID                   `json:"uid"`
		Kind        metav1.GroupVersionKind     `json:"kind"`
		Resource    metav1.GroupVersionResource `json:"resource"`
		SubResource string                      `json:"subResource"`
		Name        string                      `json:"name"`
		Namespace   string                      `json:"namespace"`
		Operation   string                      `json:"operation"`
		Object      json.RawMessage             `json:"object"`
	} `json:"request"`
}

// ErrBadReview wraps every reason a request body is not an AdmissionReview
// this webhook can answer.
var ErrBadReview = errors.New("bad AdmissionReview")

// DecodeReview parses and checks an AdmissionReview request body. An error
// means there is no request to answer (not even a UID to echo), so the
// caller replies with an HTTP error and the apiserver applies the
// webhook's failurePolicy.
func DecodeReview(body []byte) (*Review, error) {
	var r Review
	d := json.NewDecoder(bytes.NewReader(body))
	if err := d.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadReview, err)
	}
	if d.More() {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrBadReview)
	}
	switch r.APIVersion {
	case reviewV1, reviewV1beta1:
	default:
		return nil, fmt.Errorf("%w: unsupported apiVersion %q (want %s or %s)", ErrBadReview, r.APIVersion, reviewV1, reviewV1beta1)
	}
	if r.Kind != "AdmissionReview" {
		return nil, fmt.Errorf("%w: kind %q, want AdmissionReview", ErrBadReview, r.Kind)
	}
	if r.Request == nil {
		return nil, fmt.Errorf("%w: no request", ErrBadReview)
	}
	if r.Request.UID == "" {
		return nil, fmt.Errorf("%w: request has no uid", ErrBadReview)
	}
	return &r, nil
}

// isPodCreate reports whether the review is the creation of a Pod (not a
// subresource such as pods/binding or pods/ephemeralcontainers). Everything
// else is allowed untouched.
func (r *Review) isPodCreate() bool {
	q := r.Request
	return q.Kind.Group == "" && q.Kind.Version == "v1" && q.Kind.Kind == "Pod" &&
		q.SubResource == "" && q.Operation == "CREATE"
}

// decodePod decodes the reviewed object. It rejects JSON null and non-objects,
// which the apiserver never sends but a malformed request might.
func (r *Review) decodePod() (*corev1.Pod, error) {
	raw := bytes.TrimSpace(r.Request.Object)
	if len(raw) == 0 || raw[0] != '{' {
		return nil, errors.New("request.object is not a JSON object")
	}
	// Case-sensitive, as the apiserver decodes: with encoding/json a key
	// "Containers" would be read as "containers" and the patch's indexes
	// would point into a list the apiserver does not have.
	var pod corev1.Pod
	if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, &pod); err != nil {
		return nil, fmt.Errorf("decode pod: %w", err)
	}
	// Patches add under /metadata, so it must be an object. The apiserver
	// always sends one (it sets the namespace); check only when it looks
	// empty, to keep the common path at one decode.
	if pod.ObjectMeta.Name == "" && pod.ObjectMeta.GenerateName == "" && pod.ObjectMeta.Namespace == "" {
		var probe struct {
			Metadata json.RawMessage `json:"metadata"`
		}
		if err := kjson.UnmarshalCaseSensitivePreserveInts(raw, &probe); err != nil || !bytes.HasPrefix(bytes.TrimSpace(probe.Metadata), []byte("{")) {
			return nil, errors.New("request.object has no metadata object")
		}
	}
	return &pod, nil
}

// encodeResponse builds the AdmissionReview reply in the request's version.
func encodeResponse(r *Review, patch []byte, warnings []string) ([]byte, error) {
	resp := admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: r.APIVersion, Kind: "AdmissionReview"},
		Response: &admissionv1.AdmissionResponse{
			UID:      r.Request.UID,
			Allowed:  true,
			Warnings: warnings,
		},
	}
	if len(patch) > 0 {
		pt := admissionv1.PatchTypeJSONPatch
		resp.Response.Patch = patch
		resp.Response.PatchType = &pt
	}
	b, err := json.Marshal(&resp)
	if err != nil {
		return nil, fmt.Errorf("encode AdmissionReview: %w", err)
	}
	return b, nil
}
