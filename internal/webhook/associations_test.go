package webhook

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
)

func TestFileSource(t *testing.T) {
	dir := t.TempDir()
	// A ConfigMap volume: the file is a symlink through ..data, and an
	// update swaps ..data to a new directory without touching the file.
	write := func(version, content string) {
		os.MkdirAll(filepath.Join(dir, version), 0o755)
		if err := os.WriteFile(filepath.Join(dir, version, "identities.json"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		os.Remove(tmp)
		if err := os.Symlink(version, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	write("v1", `{"identities":[{"namespace":"a","serviceAccount":"x"},{"namespace":"b","serviceAccount":"y","workloadIdentity":true}]}`)
	path := filepath.Join(dir, "identities.json")
	if err := os.Symlink("..data/identities.json", path); err != nil {
		t.Fatal(err)
	}

	changes := 0
	m := NewMetrics()
	s := NewFileSource(path, 0, m, discardLogger())
	s.onChange = func() { changes++ }
	idx := AssociationIndex{s}
	if idx.Loaded() || idx.Associated("a", "x") {
		t.Fatal("loaded before the first refresh")
	}
	ctx := context.Background()
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if !idx.Loaded() || !idx.Associated("a", "x") || !idx.Associated("b", "y") || idx.Associated("a", "y") || changes != 1 {
		t.Fatalf("after load: loaded=%v changes=%d", idx.Loaded(), changes)
	}
	if err := s.Refresh(ctx); err != nil || changes != 1 {
		t.Fatalf("unchanged file: err=%v changes=%d", err, changes)
	}

	write("v2", `{"identities":[{"namespace":"c","serviceAccount":"z"}]}`)
	if err := s.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if idx.Associated("a", "x") || !idx.Associated("c", "z") || changes != 2 {
		t.Fatalf("after symlink swap: a/x=%v c/z=%v changes=%d", idx.Associated("a", "x"), idx.Associated("c", "z"), changes)
	}

	// Broken contents keep the last good set.
	for i, bad := range []string{``, `{`, `{}`, `{"identities":[{"namespace":"c"}]}`, `{"identities":"x"}`, `[]`} {
		write(fmt.Sprintf("bad%d", i), bad)
		if err := s.Refresh(ctx); err == nil {
			t.Errorf("%q accepted", bad)
		}
		if !idx.Associated("c", "z") {
			t.Fatalf("%q dropped the last good set", bad)
		}
	}
	os.Remove(path)
	if err := s.Refresh(ctx); err == nil || !idx.Associated("c", "z") {
		t.Fatalf("missing file: err=%v", err)
	}
	// An explicit empty list is a deliberate "none".
	os.Symlink("..data/identities.json", path)
	write("empty", `{"identities":[]}`)
	if err := s.Refresh(ctx); err != nil || idx.Associated("c", "z") {
		t.Fatalf("empty list: err=%v", err)
	}
}

// pagedLister serves associations two per page, or fails.
type pagedLister struct {
	all   []ekstypes.PodIdentityAssociationSummary
	err   error
	calls int
}

func (p *pagedLister) ListPodIdentityAssociations(_ context.Context, in *eks.ListPodIdentityAssociationsInput, _ ...func(*eks.Options)) (*eks.ListPodIdentityAssociationsOutput, error) {
	p.calls++
	if p.err != nil {
		return nil, p.err
	}
	start := 0
	if in.NextToken != nil {
		fmt.Sscan(*in.NextToken, &start)
	}
	end := min(start+2, len(p.all))
	out := &eks.ListPodIdentityAssociationsOutput{Associations: p.all[start:end]}
	if end < len(p.all) {
		out.NextToken = aws.String(fmt.Sprint(end))
	}
	return out, nil
}

func TestServerSourcePages(t *testing.T) {
	l := &pagedLister{}
	for i := range 5 {
		l.all = append(l.all, ekstypes.PodIdentityAssociationSummary{
			Namespace: aws.String(fmt.Sprintf("ns%d", i)), ServiceAccount: aws.String("sa"), ClusterName: aws.String("c"),
		})
	}
	s := NewServerSource([]eks.ListPodIdentityAssociationsAPIClient{l}, "c", 0, NewMetrics(), discardLogger())
	if err := s.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if l.calls != 3 || !s.Has("ns0", "sa") || !s.Has("ns4", "sa") || s.Has("ns5", "sa") {
		t.Fatalf("calls=%d", l.calls)
	}
	l.err = errors.New("connection refused")
	if err := s.Refresh(context.Background()); err == nil || !strings.Contains(err.Error(), "connection refused") || !s.Has("ns4", "sa") {
		t.Fatalf("failed refresh: err=%v, kept=%v", err, s.Has("ns4", "sa"))
	}
}
