package upstream

import (
	"regexp"
	"strings"
	"testing"

	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/sts"
)

func TestSourceIdentity(t *testing.T) {
	valid := regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)
	for _, tc := range []struct {
		in   sts.AssumeInput
		want string
	}{
		{sts.AssumeInput{Cluster: "prod", Namespace: "team-a", ServiceAccount: "app"}, "app@team-a.prod"},
		{sts.AssumeInput{Cluster: "c", Namespace: "n", ServiceAccount: "sa.with.dots"}, "sa.with.dots@n.c"},
		{sts.AssumeInput{SourceIdentity: "given"}, "given"},
	} {
		if got := sourceIdentity(tc.in); got != tc.want {
			t.Errorf("sourceIdentity(%+v) = %q, want %q", tc.in, got, tc.want)
		}
	}
	long := sts.AssumeInput{Cluster: strings.Repeat("c", 40), Namespace: strings.Repeat("n", 40), ServiceAccount: "app"}
	a, b := sourceIdentity(long), sourceIdentity(sts.AssumeInput{Cluster: long.Cluster, Namespace: long.Namespace, ServiceAccount: "app2"})
	if !valid.MatchString(a) || len(a) != 64 || a == b {
		t.Errorf("long: %q and %q, want 64 valid characters, distinct", a, b)
	}
}

func TestCacheKey(t *testing.T) {
	tags := func(pod string) []session.Tag {
		return []session.Tag{{Key: "kubernetes-pod-name", Value: pod}, {Key: "kubernetes-pod-uid", Value: "uid-" + pod}}
	}
	base := sts.AssumeInput{RoleARN: "arn:aws:iam::111122223333:role/app", SessionName: "eks-c-web-1-0b6f3e4a-1c2d-4e5f-8a9b-0c1d2e3f4a5b",
		Tags: tags("web-1"), Cluster: "c", Namespace: "n", ServiceAccount: "sa"}
	same := base
	same.SessionName = "eks-c-web-1-11111111-2222-4333-8444-555555555555"
	if cacheKey(base) != cacheKey(same) {
		t.Error("the same pod with another session-name UUID must share the session")
	}
	for name, mutate := range map[string]func(*sts.AssumeInput){
		"other pod":    func(in *sts.AssumeInput) { in.Tags = tags("web-2"); in.SessionName = "eks-c-web-2-x" },
		"policy":       func(in *sts.AssumeInput) { in.Policy = "{}" },
		"role":         func(in *sts.AssumeInput) { in.RoleARN += "2" },
		"external ID":  func(in *sts.AssumeInput) { in.ExternalID = "x" },
		"caller":       func(in *sts.AssumeInput) { in.Caller = &session.Session{AccessKeyID: "ASIAX"} },
		"tags off":     func(in *sts.AssumeInput) { in.Tags = nil },
		"service acct": func(in *sts.AssumeInput) { in.ServiceAccount = "other" },
	} {
		in := base
		mutate(&in)
		if cacheKey(in) == cacheKey(base) {
			t.Errorf("%s: same key, want a different session", name)
		}
	}
}

func TestPrincipalARN(t *testing.T) {
	for in, want := range map[string]string{
		"arn:aws:sts::111122223333:assumed-role/podid/i-0abc": "arn:aws:iam::111122223333:role/podid",
		"arn:aws:iam::111122223333:user/ops":                  "arn:aws:iam::111122223333:user/ops",
		"arn:aws-cn:sts::111122223333:assumed-role/r/s":       "arn:aws-cn:iam::111122223333:role/r",
	} {
		if got := PrincipalARN(in); got != want {
			t.Errorf("PrincipalARN(%s) = %s, want %s", in, got, want)
		}
	}
}
