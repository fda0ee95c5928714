package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
)

func irsaHandler() *Handler {
	sa := &corev1.ServiceAccount{}
	sa.Annotations = map[string]string{"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/r"}
	return &Handler{
		Mutator:         NewMutator(Options{Region: "us-east-1"}),
		ServiceAccounts: fakeSAs{sa: sa},
		Associations:    fakeAssoc(false),
		Metrics:         NewMetrics(),
		Log:             discardLogger(),
	}
}

const simplePod = `{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p","namespace":"ns"},"spec":{"containers":[{"name":"c","image":"i"}]}}`

// TestBadInput: nothing a client sends makes the handler panic; what cannot
// be answered is an HTTP 4xx with a reason, the rest is allowed unmutated.
func TestBadInput(t *testing.T) {
	valid := string(reviewFor(t, reviewV1, []byte(simplePod), "CREATE"))
	withObject := func(obj string) string {
		return strings.Replace(valid, simplePod, obj, 1)
	}
	huge := hugePod(3000)
	tests := []struct {
		name    string
		body    string
		status  int    // HTTP status
		errText string // in the HTTP error body
		patched bool   // response carries a patch
		warning bool   // response carries a warning
	}{
		{name: "empty", body: "", status: 400, errText: "bad AdmissionReview"},
		{name: "not JSON", body: "<xml/>", status: 400, errText: "bad AdmissionReview"},
		{name: "JSON array", body: "[]", status: 400, errText: "bad AdmissionReview"},
		{name: "null", body: "null", status: 400, errText: "unsupported apiVersion"},
		{name: "truncated", body: valid[:len(valid)/2], status: 400, errText: "bad AdmissionReview"},
		{name: "trailing garbage", body: valid + "{}", status: 400, errText: "after top-level value"},
		{name: "unknown apiVersion", body: strings.Replace(valid, reviewV1, "admission.k8s.io/v2", 1), status: 400, errText: `unsupported apiVersion "admission.k8s.io/v2"`},
		{name: "no apiVersion", body: `{"kind":"AdmissionReview","request":{"uid":"x"}}`, status: 400, errText: "unsupported apiVersion"},
		{name: "wrong kind", body: strings.Replace(valid, `"kind":"AdmissionReview"`, `"kind":"Pod"`, 1), status: 400, errText: "kind"},
		{name: "no request", body: `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`, status: 400, errText: "no request"},
		{name: "no uid", body: strings.Replace(valid, `"uid":"705ab4f5-6393-11e8-b7cc-42010a800002",`, "", 1), status: 400, errText: "no uid"},
		{name: "uid wrong type", body: strings.Replace(valid, `"705ab4f5-6393-11e8-b7cc-42010a800002"`, `42`, 1), status: 400, errText: "bad AdmissionReview"},
		{name: "valid", body: valid, status: 200, patched: true},
		{name: "v1beta1", body: strings.Replace(valid, reviewV1, reviewV1beta1, 1), status: 200, patched: true},
		{name: "non-pod", body: strings.Replace(valid, `"kind":"Pod","version":"v1"}`, `"kind":"ConfigMap","version":"v1"}`, 1), status: 200},
		{name: "pod in other group", body: strings.Replace(valid, `{"group":"","kind":"Pod","version":"v1"}`, `{"group":"example.com","kind":"Pod","version":"v1"}`, 1), status: 200},
		{name: "pod v2", body: strings.Replace(valid, `{"group":"","kind":"Pod","version":"v1"}`, `{"group":"","kind":"Pod","version":"v2"}`, 1), status: 200},
		{name: "subresource", body: strings.Replace(valid, `"namespace":"ns"`, `"namespace":"ns","subResource":"ephemeralcontainers"`, 1), status: 200},
		{name: "delete", body: strings.Replace(valid, `"CREATE"`, `"DELETE"`, 1), status: 200},
		{name: "no object", body: withObject("null"), status: 200, warning: true},
		{name: "object is string", body: withObject(`"pod"`), status: 200, warning: true},
		{name: "object is array", body: withObject(`[1,2]`), status: 200, warning: true},
		{name: "containers wrong type", body: withObject(`{"spec":{"containers":{"name":"c"}}}`), status: 200, warning: true},
		{name: "env wrong type", body: withObject(`{"spec":{"containers":[{"name":"c","env":"x"}]}}`), status: 200, warning: true},
		{name: "no containers", body: withObject(`{"metadata":{"namespace":"ns"},"spec":{}}`), status: 200},
		{name: "null container", body: withObject(`{"metadata":{"namespace":"ns"},"spec":{"containers":[null]}}`), status: 200},
		{name: "no metadata", body: withObject(`{"spec":{"containers":[{"name":"c"}]}}`), status: 200, warning: true},
		{name: "null metadata", body: withObject(`{"metadata":null,"spec":{"containers":[{"name":"c"}]}}`), status: 200, warning: true},
		{name: "case-folded key", body: withObject(`{"metadata":{"name":"p"},"spec":{"Containers":[{"name":"c"}]}}`), status: 200},
		{name: "empty object", body: withObject(`{}`), status: 200, warning: true},
		{name: "huge pod", body: string(reviewFor(t, reviewV1, huge, "CREATE")), status: 200, patched: true},
		{name: "too large", body: withObject(`{"metadata":{"annotations":{"a":"` + strings.Repeat("x", MaxReviewBytes) + `"}}}`), status: 413, errText: "larger than"},
	}
	h := irsaHandler()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, "/mutate", strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d; body %.300s", rec.Code, tt.status, rec.Body)
			}
			if tt.status != 200 {
				if !strings.Contains(rec.Body.String(), tt.errText) {
					t.Errorf("error %q lacks %q", rec.Body, tt.errText)
				}
				return
			}
			resp := decodeResponse(t, rec.Body.Bytes())
			if got := len(resp.Response.Patch) > 0; got != tt.patched {
				t.Errorf("patched = %v, want %v: %s", got, tt.patched, resp.Response.Patch)
			}
			if got := len(resp.Response.Warnings) > 0; got != tt.warning {
				t.Errorf("warnings %q, want some: %v", resp.Response.Warnings, tt.warning)
			}
		})
	}
}

func TestMethodNotAllowed(t *testing.T) {
	rec := httptest.NewRecorder()
	irsaHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/mutate", nil))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Fatalf("GET /mutate: %d", rec.Code)
	}
}

// TestLookupErrorAllows: when the service account cannot be looked up the
// pod is still admitted, unmutated, with a warning the user sees.
func TestLookupErrorAllows(t *testing.T) {
	h := irsaHandler()
	h.ServiceAccounts = fakeSAs{err: errors.New("apiserver timeout")}
	resp := decodeResponse(t, mustReview(t, h, reviewFor(t, reviewV1, []byte(simplePod), "CREATE")))
	if len(resp.Response.Patch) != 0 || len(resp.Response.Warnings) != 1 || !strings.Contains(resp.Response.Warnings[0], "apiserver timeout") {
		t.Fatalf("response %+v", resp.Response)
	}
	// Pod Identity needs no service account object: the lookup is not made.
	h.Associations = fakeAssoc(true)
	resp = decodeResponse(t, mustReview(t, h, reviewFor(t, reviewV1, []byte(simplePod), "CREATE")))
	if len(resp.Response.Patch) == 0 {
		t.Fatal("associated pod not mutated")
	}
}

func TestPodIdentityJitter(t *testing.T) {
	m := NewMutator(Options{})
	seen := map[int64]bool{}
	for range 2000 {
		e := m.Decide(&podView{}, nil, true).Expiration
		if e < 79200 || e > 86400 {
			t.Fatalf("expiration %d outside [79200, 86400]", e)
		}
		seen[e] = true
	}
	if len(seen) < 100 {
		t.Fatalf("only %d distinct expirations in 2000 pods: no jitter", len(seen))
	}
	// A broken jitter function cannot push the lifetime out of range.
	m = NewMutator(Options{Jitter: func() int64 { return 1e9 }})
	if e := m.Decide(&podView{}, nil, true).Expiration; e != 79200 {
		t.Fatalf("expiration %d with huge jitter", e)
	}
}

func TestExpirationClamp(t *testing.T) {
	m := NewMutator(Options{})
	for in, want := range map[string]int64{"": 86400, "0": 600, "-5": 600, "599": 600, "600": 600, "3600": 3600, "86400": 86400, "86401": 86400, "1h": 86400, "99999999999999999999": 86400} {
		sa := &corev1.ServiceAccount{}
		sa.Annotations = map[string]string{"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r", "eks.amazonaws.com/token-expiration": in}
		if got := m.Decide(&podView{}, sa, false).Expiration; got != want {
			t.Errorf("token-expiration %q: %d, want %d", in, got, want)
		}
	}
}

// hugePod builds a pod with n containers, each with env and mounts.
func hugePod(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"big","namespace":"ns"},"spec":{"containers":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"name":"c%d","image":"img:%d","env":[{"name":"A","value":"%d"}],"volumeMounts":[{"name":"v","mountPath":"/v"}]}`, i, i, i)
	}
	b.WriteString(`],"volumes":[{"name":"v","emptyDir":{}}]}}`)
	return b.Bytes()
}

func TestHugePodPatchApplies(t *testing.T) {
	pod := hugePod(3000)
	resp := decodeResponse(t, mustReview(t, irsaHandler(), reviewFor(t, reviewV1, pod, "CREATE")))
	out := applyPatch(t, pod, resp.Response.Patch)
	var p corev1.Pod
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatal(err)
	}
	for _, c := range p.Spec.Containers {
		if len(c.Env) != 5 || len(c.VolumeMounts) != 2 {
			t.Fatalf("container %s: %d env, %d mounts", c.Name, len(c.Env), len(c.VolumeMounts))
		}
	}
}

// FuzzDecodeReview: the decoder and the whole review path never panic, and
// whatever they accept yields a well-formed, allowed response whose patch
// applies to the object.
func FuzzDecodeReview(f *testing.F) {
	f.Add([]byte(reviewFor(f, reviewV1, []byte(simplePod), "CREATE")))
	f.Add([]byte(reviewFor(f, reviewV1beta1, []byte(`{"spec":{"initContainers":[{"name":"i","env":[]}],"containers":[{"name":"c","envFrom":[{}],"volumeMounts":[]}],"volumes":[]}}`), "CREATE")))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"version":"v1","kind":"Pod"},"operation":"CREATE","object":{"metadata":{"annotations":{"eks.amazonaws.com/skip-containers":"a,,b"}}}}}`))
	f.Add([]byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":null}`))
	f.Add([]byte(`{}`))
	h := irsaHandler()
	h.Associations = fakeAssoc(true)
	f.Fuzz(func(t *testing.T, body []byte) {
		_, err := DecodeReview(body)
		out, herr := h.Review(context.Background(), body)
		if (err == nil) != (herr == nil) {
			t.Fatalf("DecodeReview err %v, Review err %v", err, herr)
		}
		if err != nil {
			if !errors.Is(err, ErrBadReview) {
				t.Fatalf("error %v does not wrap ErrBadReview", err)
			}
			return
		}
		resp := decodeResponse(t, out)
		if len(resp.Response.Patch) > 0 {
			p, perr := jsonpatchDecode(resp.Response.Patch)
			if perr != nil {
				t.Fatalf("patch does not decode: %v", perr)
			}
			var raw struct {
				Request struct {
					Object json.RawMessage `json:"object"`
				} `json:"request"`
			}
			if err := kjson.UnmarshalCaseSensitivePreserveInts(body, &raw); err != nil {
				t.Fatalf("accepted body does not decode: %v", err)
			}
			if _, aerr := p.Apply(raw.Request.Object); aerr != nil {
				t.Fatalf("patch does not apply: %v\nobject %s\npatch %s", aerr, raw.Request.Object, resp.Response.Patch)
			}
		}
	})
}
