package webhook

import (
	"encoding/json"
	"errors"
	"fmt"

	admissionv1 "k8s.io/api/admission/v1"
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

// Review is the part of an AdmissionReview request the webhook reads.
type Review struct {
	APIVersion string         `json:"apiVersion"`
	Kind       string         `json:"kind"`
	Request    *reviewRequest `json:"request"`

	pod    *podView // the decoded object, when it decoded as a pod
	podErr error    // why it did not
}

type reviewRequest struct {
	UID         types.UID                   `json:"uid"`
	Kind        metav1.GroupVersionKind     `json:"kind"`
	Resource    metav1.GroupVersionResource `json:"resource"`
	SubResource string                      `json:"subResource"`
	Name        string                      `json:"name"`
	Namespace   string                      `json:"namespace"`
	Operation   string                      `json:"operation"`
}

// The two shapes a body is decoded into: the fast path reads the object as
// a pod in the same pass as the envelope; if that fails (not a pod, or a
// malformed one), the slow path reads the envelope alone, so the request can
// still be answered.
type reviewWithPod struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		reviewRequest
		Object *podView `json:"object"`
	} `json:"request"`
}

type reviewWithRaw struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Request    *struct {
		reviewRequest
		Object json.RawMessage `json:"object"`
	} `json:"request"`
}

// ErrBadReview wraps every reason a request body is not an AdmissionReview
// this webhook can answer.
var ErrBadReview = errors.New("bad AdmissionReview")

// DecodeReview parses and checks an AdmissionReview request body. An error
// means there is no request to answer (not even a UID to echo), so the
// caller replies with an HTTP error and the apiserver applies the
// webhook's failurePolicy. Decoding is case-sensitive, as in the
// apiserver: with encoding/json a key "Containers" would be read as
// "containers" and the patch's indexes would point into a list the
// apiserver does not have.
func DecodeReview(body []byte) (*Review, error) {
	var r Review
	var fast reviewWithPod
	if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &fast); err == nil {
		r.APIVersion, r.Kind = fast.APIVersion, fast.Kind
		if fast.Request != nil {
			r.Request = &fast.Request.reviewRequest
			r.pod = fast.Request.Object
		}
	} else {
		var slow reviewWithRaw
		if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &slow); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBadReview, err)
		}
		r.APIVersion, r.Kind = slow.APIVersion, slow.Kind
		if slow.Request != nil {
			r.Request = &slow.Request.reviewRequest
			r.podErr = fmt.Errorf("decode pod: %w", err)
		}
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

// decodedPod returns the reviewed pod. Patches add under /metadata, so it
// must be an object; the apiserver always sends one (it sets the namespace).
func (r *Review) decodedPod() (*podView, error) {
	switch {
	case r.podErr != nil:
		return nil, r.podErr
	case r.pod == nil:
		return nil, errors.New("request.object is missing or null")
	case r.pod.Metadata == nil:
		return nil, errors.New("request.object has no metadata object")
	}
	return r.pod, nil
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
