package iam

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
)

const testAccount = "123456789012"

var (
	testNow = time.Date(2026, 11, 23, 10, 30, 45, 123456789, time.UTC)
	root    = &session.Principal{Account: testAccount, ARN: "arn:aws:iam::" + testAccount + ":root", UserID: testAccount}
)

const (
	trustDoc = `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"pods.eks.amazonaws.com"},"Action":["sts:AssumeRole","sts:TagSession"]}]}`
	s3Doc    = `{"Version":"2012-10-17","Statement":[{"Sid":"Read","Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::bucket/*"}]}`
)

type testEnv struct {
	svc *Service
	st  *store.SQLite
}

func newEnv(t *testing.T) *testEnv {
	t.Helper()
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "db"))
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return &testEnv{
		svc: &Service{Store: st, Account: testAccount, Now: func() time.Time { return testNow }},
		st:  st,
	}
}

// form builds a request from name/value pairs.
func form(kv ...string) awsproto.Form {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return awsproto.Form{Values: v}
}

func (e *testEnv) call(action string, kv ...string) (any, error) {
	return e.svc.Handle(context.Background(), root, action, form(kv...))
}

func (e *testEnv) must(t *testing.T, action string, kv ...string) any {
	t.Helper()
	res, err := e.call(action, kv...)
	if err != nil {
		t.Fatalf("%s: %v", action, err)
	}
	return res
}

// wantCode asserts that err is an *awsproto.Error with code and status.
func wantCode(t *testing.T, err error, code string, status int) *awsproto.Error {
	t.Helper()
	var ae *awsproto.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error = %v, want %s", err, code)
	}
	if ae.Code != code || ae.Status != status {
		t.Fatalf("error = %s (%d) %q, want %s (%d)", ae.Code, ae.Status, ae.Message, code, status)
	}
	return ae
}

// marshal renders a result the way the server does, as the element
// <ActionResult>, and returns the element's content.
func marshal(t *testing.T, v any) string {
	t.Helper()
	var b strings.Builder
	if err := xml.NewEncoder(&b).EncodeElement(v, xml.StartElement{Name: xml.Name{Local: "R"}}); err != nil {
		t.Fatalf("marshal %T: %v", v, err)
	}
	return strings.TrimSuffix(strings.TrimPrefix(b.String(), "<R>"), "</R>")
}

// elementPaths lists the slash-separated paths of all elements in doc,
// wrapped in a root element.
func elementPaths(t *testing.T, doc string) []string {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader("<R>" + doc + "</R>"))
	var stack, out []string
	for {
		tok, err := d.Token()
		if err != nil {
			break
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			stack = append(stack, tok.Name.Local)
			p := strings.Join(stack[1:], "/")
			if len(stack) > 1 && !slices.Contains(out, p) {
				out = append(out, p)
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
	return out
}

// wantPaths asserts that the marshalled result has exactly these element paths.
func wantPaths(t *testing.T, v any, want ...string) {
	t.Helper()
	got := elementPaths(t, marshal(t, v))
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("%T elements:\n got %q\nwant %q\nxml: %s", v, got, want, marshal(t, v))
	}
}

// snapshot renders everything the IAM store holds, to prove a failed call
// wrote nothing.
func (e *testEnv) snapshot(t *testing.T) string {
	t.Helper()
	ctx := context.Background()
	var b strings.Builder
	roles, _, err := e.st.ListRoles(ctx, store.RoleFilter{}, store.Page{MaxItems: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range roles {
		fmt.Fprintf(&b, "role %+v\n", r)
		rps, _, err := e.st.ListRolePolicies(ctx, r.Name, store.Page{MaxItems: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, rp := range rps {
			fmt.Fprintf(&b, "  inline %+v\n", rp)
		}
		aps, _, err := e.st.ListAttachedRolePolicies(ctx, r.Name, store.PolicyFilter{}, store.Page{MaxItems: 1000})
		if err != nil {
			t.Fatal(err)
		}
		for _, ap := range aps {
			fmt.Fprintf(&b, "  attached %s\n", ap.ARN)
		}
	}
	ps, _, err := e.st.ListPolicies(ctx, store.PolicyFilter{}, store.Page{MaxItems: 1000})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		fmt.Fprintf(&b, "policy %+v\n", p)
	}
	os, err := e.st.ListOIDCProviders(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range os {
		fmt.Fprintf(&b, "oidc %+v\n", o)
	}
	return b.String()
}

func roleARN(name string) string { return "arn:aws:iam::" + testAccount + ":role/" + name }

func policyARN(name string) string { return "arn:aws:iam::" + testAccount + ":policy/" + name }
