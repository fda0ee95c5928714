package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

var jsonpatchDecode = jsonpatch.DecodePatch

var update = flag.Bool("update", false, "rewrite testdata/golden/*.golden from the current output")

// goldenCase is one fixture: a pod, the service account it names and
// whether an association covers it, plus the webhook's flags.
type goldenCase struct {
	ServiceAccount *struct {
		Annotations map[string]string `json:"annotations"`
	} `json:"serviceAccount"`
	Associated bool            `json:"associated"`
	Region     string          `json:"region"`
	IPv6       bool            `json:"ipv6"`
	Prefix     string          `json:"prefix"`
	Pod        json.RawMessage `json:"pod"`
}

// fakeSAs serves one service account under any name, or none.
type fakeSAs struct {
	sa  *corev1.ServiceAccount
	err error
}

func (f fakeSAs) ServiceAccount(context.Context, string, string) (*corev1.ServiceAccount, error) {
	return f.sa, f.err
}

type fakeAssoc bool

func (f fakeAssoc) Associated(string, string) bool { return bool(f) }

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestHandler(c goldenCase) *Handler {
	var sa *corev1.ServiceAccount
	if c.ServiceAccount != nil {
		sa = &corev1.ServiceAccount{}
		sa.Annotations = c.ServiceAccount.Annotations
	}
	return &Handler{
		Mutator: NewMutator(Options{
			AnnotationPrefix: c.Prefix, Region: c.Region, IPv6: c.IPv6,
			Jitter: func() int64 { return 1234 },
		}),
		ServiceAccounts: fakeSAs{sa: sa},
		Associations:    fakeAssoc(c.Associated),
		Metrics:         NewMetrics(),
		Log:             discardLogger(),
	}
}

// reviewFor wraps a pod in an AdmissionReview as the apiserver sends it.
func reviewFor(t testing.TB, apiVersion string, pod []byte, op string) []byte {
	t.Helper()
	var meta struct {
		Metadata struct{ Namespace string } `json:"metadata"`
	}
	json.Unmarshal(pod, &meta)
	ns := meta.Metadata.Namespace
	if ns == "" {
		ns = "default"
	}
	b, err := json.Marshal(map[string]any{
		"apiVersion": apiVersion,
		"kind":       "AdmissionReview",
		"request": map[string]any{
			"uid":       "705ab4f5-6393-11e8-b7cc-42010a800002",
			"kind":      map[string]string{"group": "", "version": "v1", "kind": "Pod"},
			"resource":  map[string]string{"group": "", "version": "v1", "resource": "pods"},
			"namespace": ns,
			"operation": op,
			"object":    json.RawMessage(pod),
			"userInfo":  map[string]any{"username": "admin"},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type reviewResponse struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Response   struct {
		UID       string   `json:"uid"`
		Allowed   bool     `json:"allowed"`
		Patch     []byte   `json:"patch"`
		PatchType *string  `json:"patchType"`
		Warnings  []string `json:"warnings"`
	} `json:"response"`
}

func decodeResponse(t testing.TB, b []byte) reviewResponse {
	t.Helper()
	var r reviewResponse
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatalf("response is not JSON: %v\n%s", err, b)
	}
	if r.Kind != "AdmissionReview" || r.Response.UID == "" || !r.Response.Allowed {
		t.Fatalf("bad response envelope: %s", b)
	}
	if (r.Response.PatchType != nil) != (len(r.Response.Patch) > 0) || (r.Response.PatchType != nil && *r.Response.PatchType != "JSONPatch") {
		t.Fatalf("patch and patchType disagree: %s", b)
	}
	return r
}

// applyPatch applies patch with a real RFC 6902 implementation; an op whose
// path does not exist fails, as it would in the apiserver.
func applyPatch(t testing.TB, doc, patch []byte) []byte {
	t.Helper()
	if len(patch) == 0 {
		return doc
	}
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decode patch: %v\n%s", err, patch)
	}
	out, err := p.Apply(doc)
	if err != nil {
		t.Fatalf("apply patch: %v\n%s", err, patch)
	}
	return out
}

// wholeList matches the paths that would replace a container or one of the
// lists podid appends to; they are allowed only where the list was absent.
var wholeList = regexp.MustCompile(`^/spec/(initContainers|containers)(/[0-9]+)?$|/(env|volumeMounts)$|^/spec/volumes$`)

func checkFieldLevel(t *testing.T, pod *corev1.Pod, patch []byte) {
	t.Helper()
	var ops []PatchOp
	if err := json.Unmarshal(patch, &ops); err != nil {
		t.Fatal(err)
	}
	for _, op := range ops {
		if op.Op != "add" {
			t.Errorf("op %q at %s: podid only adds", op.Op, op.Path)
		}
		if !wholeList.MatchString(op.Path) {
			continue
		}
		if strings.HasPrefix(op.Path, "/spec/initContainers") || strings.HasPrefix(op.Path, "/spec/containers") {
			var idx int
			var list string
			parts := strings.Split(op.Path, "/")
			if len(parts) < 4 {
				t.Errorf("op at %s replaces a container array", op.Path)
				continue
			}
			fmt.Sscan(parts[3], &idx)
			list = parts[len(parts)-1]
			cs := pod.Spec.Containers
			if parts[2] == "initContainers" {
				cs = pod.Spec.InitContainers
			}
			c := cs[idx]
			if (list == "env" && len(c.Env) > 0) || (list == "volumeMounts" && len(c.VolumeMounts) > 0) || len(parts) == 4 {
				t.Errorf("op at %s replaces an existing list", op.Path)
			}
		} else if op.Path == "/spec/volumes" && len(pod.Spec.Volumes) > 0 {
			t.Errorf("op at %s replaces existing volumes", op.Path)
		}
	}
}

func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/golden/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var c goldenCase
			if err := yaml.UnmarshalStrict(in, &c); err != nil {
				t.Fatalf("fixture: %v", err)
			}
			var pod corev1.Pod
			if err := json.Unmarshal(c.Pod, &pod); err != nil {
				t.Fatal(err)
			}
			h := newTestHandler(c)
			for _, v := range []string{reviewV1, reviewV1beta1} {
				out, err := h.Review(context.Background(), reviewFor(t, v, c.Pod, "CREATE"))
				if err != nil {
					t.Fatalf("%s: %v", v, err)
				}
				resp := decodeResponse(t, out)
				if resp.APIVersion != v {
					t.Errorf("response apiVersion %q, want %q", resp.APIVersion, v)
				}
				patched := applyPatch(t, c.Pod, resp.Response.Patch)
				if len(resp.Response.Patch) > 0 {
					checkFieldLevel(t, &pod, resp.Response.Patch)
				}

				// A second pass over the patched pod (a reinvocation) adds nothing.
				again := decodeResponse(t, mustReview(t, h, reviewFor(t, v, patched, "CREATE")))
				if len(again.Response.Patch) > 0 {
					t.Errorf("patched pod patched again: %s", again.Response.Patch)
				}
				// UPDATE is never mutated.
				upd := decodeResponse(t, mustReview(t, h, reviewFor(t, v, c.Pod, "UPDATE")))
				if len(upd.Response.Patch) > 0 {
					t.Errorf("UPDATE mutated: %s", upd.Response.Patch)
				}
				compareGolden(t, strings.TrimSuffix(file, ".yaml")+".golden", resp.Response.Patch, patched)
			}
		})
	}
}

func mustReview(t testing.TB, h *Handler, body []byte) []byte {
	t.Helper()
	out, err := h.Review(context.Background(), body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compareGolden compares the patch and the patched pod, both as YAML so a
// reviewer can read the golden files.
func compareGolden(t *testing.T, path string, patch, pod []byte) {
	t.Helper()
	if len(patch) == 0 {
		patch = []byte("[]")
	}
	var doc bytes.Buffer
	py, err := yaml.JSONToYAML(patch)
	if err != nil {
		t.Fatal(err)
	}
	oy, err := yaml.JSONToYAML(pod)
	if err != nil {
		t.Fatal(err)
	}
	doc.WriteString("# Generated by go test -run TestGolden -update; review before committing.\npatch:\n")
	writeIndented(&doc, py)
	doc.WriteString("pod:\n")
	writeIndented(&doc, oy)
	if *update {
		if err := os.WriteFile(path, doc.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create)", err)
	}
	if !bytes.Equal(want, doc.Bytes()) {
		t.Errorf("%s differs from the output:\n--- got\n%s\n--- want\n%s", path, doc.Bytes(), want)
	}
}

func writeIndented(b *bytes.Buffer, y []byte) {
	for _, line := range strings.SplitAfter(string(y), "\n") {
		if line != "" {
			b.WriteString("  " + line)
		}
	}
}
