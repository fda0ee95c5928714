package iam

import (
	"context"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/session"
)

func TestRoleLifecycle(t *testing.T) {
	e := newEnv(t)
	res := e.must(t, "CreateRole",
		"RoleName", "app", "Path", "/team/", "AssumeRolePolicyDocument", trustDoc,
		"Description", "the app", "MaxSessionDuration", "7200",
		"Tags.member.1.Key", "env", "Tags.member.1.Value", "prod",
		"Tags.member.2.Key", "empty", "Tags.member.2.Value", "",
	).(*CreateRoleResult)
	r := res.Role
	if r.Arn != "arn:aws:iam::123456789012:role/team/app" || r.Path != "/team/" || r.RoleName != "app" {
		t.Errorf("role = %+v", r)
	}
	if !strings.HasPrefix(r.RoleID, "AROA") || len(r.RoleID) != 21 {
		t.Errorf("RoleId = %q", r.RoleID)
	}
	if r.CreateDate != "2026-11-23T10:30:45Z" {
		t.Errorf("CreateDate = %q", r.CreateDate)
	}
	if got, err := url.PathUnescape(r.AssumeRolePolicyDocument); err != nil || got != trustDoc {
		t.Errorf("AssumeRolePolicyDocument %q decodes to %q, %v", r.AssumeRolePolicyDocument, got, err)
	}
	if strings.ContainsAny(r.AssumeRolePolicyDocument, `{}":+ `) {
		t.Errorf("document not percent-encoded: %q", r.AssumeRolePolicyDocument)
	}
	if r.MaxSessionDuration != 7200 || r.Description != "the app" || len(r.Tags) != 2 {
		t.Errorf("role = %+v", r)
	}
	wantPaths(t, res, "Role", "Role/Path", "Role/RoleName", "Role/RoleId", "Role/Arn", "Role/CreateDate",
		"Role/AssumeRolePolicyDocument", "Role/Description", "Role/MaxSessionDuration",
		"Role/Tags", "Role/Tags/member", "Role/Tags/member/Key", "Role/Tags/member/Value")

	got := e.must(t, "GetRole", "RoleName", "app").(*GetRoleResult)
	if marshal(t, got) != marshal(t, res) {
		t.Errorf("GetRole = %+v, want %+v", got.Role, r)
	}

	// Duplicate names clash regardless of case.
	_, err := e.call("CreateRole", "RoleName", "APP", "AssumeRolePolicyDocument", trustDoc)
	wantCode(t, err, "EntityAlreadyExists", 409)

	up := e.must(t, "UpdateRole", "RoleName", "app", "Description", "new", "MaxSessionDuration", "43200")
	if up == nil || marshal(t, up) != "" {
		t.Errorf("UpdateRole result = %#v (%q), want an empty result element", up, marshal(t, up))
	}
	newTrust := strings.Replace(trustDoc, "pods.eks.amazonaws.com", "ec2.amazonaws.com", 1)
	if res := e.must(t, "UpdateAssumeRolePolicy", "RoleName", "app", "PolicyDocument", newTrust); res != nil {
		t.Errorf("UpdateAssumeRolePolicy result = %#v", res)
	}
	got = e.must(t, "GetRole", "RoleName", "app").(*GetRoleResult)
	if got.Role.Description != "new" || got.Role.MaxSessionDuration != 43200 || got.Role.AssumeRolePolicyDocument != urlEncode(newTrust) {
		t.Errorf("after update: %+v", got.Role)
	}
	// UpdateRole without MaxSessionDuration leaves it alone.
	e.must(t, "UpdateRole", "RoleName", "app", "Description", "", "MaxSessionDuration", "")
	got = e.must(t, "GetRole", "RoleName", "app").(*GetRoleResult)
	if got.Role.Description != "" || got.Role.MaxSessionDuration != 43200 {
		t.Errorf("after second update: %+v", got.Role)
	}

	// Tags: replace case-insensitively, add, remove.
	e.must(t, "TagRole", "RoleName", "app", "Tags.member.1.Key", "ENV", "Tags.member.1.Value", "dev",
		"Tags.member.2.Key", "team", "Tags.member.2.Value", "a")
	e.must(t, "UntagRole", "RoleName", "app", "TagKeys.member.1", "empty", "TagKeys.member.2", "absent")
	tags := e.must(t, "ListRoleTags", "RoleName", "app").(*ListRoleTagsResult)
	want := []Tag{{"ENV", "dev"}, {"team", "a"}}
	if !slices.Equal(tags.Tags, want) || tags.IsTruncated {
		t.Errorf("ListRoleTags = %+v, want %+v", tags, want)
	}
	wantPaths(t, tags, "Tags", "Tags/member", "Tags/member/Key", "Tags/member/Value", "IsTruncated")

	list := e.must(t, "ListRoles").(*ListRolesResult)
	if len(list.Roles) != 1 || list.Roles[0].Arn != r.Arn || list.IsTruncated {
		t.Errorf("ListRoles = %+v", list)
	}
	wantPaths(t, list, "Roles", "Roles/member", "Roles/member/Path", "Roles/member/RoleName", "Roles/member/RoleId",
		"Roles/member/Arn", "Roles/member/CreateDate", "Roles/member/AssumeRolePolicyDocument",
		"Roles/member/MaxSessionDuration", "IsTruncated")
	if l := e.must(t, "ListRoles", "PathPrefix", "/other/").(*ListRolesResult); len(l.Roles) != 0 {
		t.Errorf("ListRoles /other/ = %+v", l)
	}

	if res := e.must(t, "DeleteRole", "RoleName", "app"); res != nil {
		t.Errorf("DeleteRole result = %#v", res)
	}
	_, err = e.call("GetRole", "RoleName", "app")
	if ae := wantCode(t, err, "NoSuchEntity", 404); ae.Message != "The role with name app cannot be found." {
		t.Errorf("message = %q", ae.Message)
	}
	_, err = e.call("DeleteRole", "RoleName", "app")
	wantCode(t, err, "NoSuchEntity", 404)
}

func TestCreateRoleDefaults(t *testing.T) {
	e := newEnv(t)
	r := e.must(t, "CreateRole", "RoleName", "r", "AssumeRolePolicyDocument", trustDoc).(*CreateRoleResult).Role
	if r.Path != "/" || r.Arn != roleARN("r") || r.MaxSessionDuration != 3600 || r.Description != "" || r.Tags != nil {
		t.Errorf("role = %+v", r)
	}
	if strings.Contains(marshal(t, &CreateRoleResult{Role: r}), "<Tags>") {
		t.Errorf("empty tags marshalled")
	}
}

func TestInlinePolicies(t *testing.T) {
	e := newEnv(t)
	e.must(t, "CreateRole", "RoleName", "app", "AssumeRolePolicyDocument", trustDoc)
	if res := e.must(t, "PutRolePolicy", "RoleName", "app", "PolicyName", "s3", "PolicyDocument", s3Doc); res != nil {
		t.Errorf("PutRolePolicy result = %#v", res)
	}
	e.must(t, "PutRolePolicy", "RoleName", "app", "PolicyName", "a-first", "PolicyDocument", s3Doc)

	got := e.must(t, "GetRolePolicy", "RoleName", "app", "PolicyName", "s3").(*GetRolePolicyResult)
	if got.RoleName != "app" || got.PolicyName != "s3" || got.PolicyDocument != urlEncode(s3Doc) {
		t.Errorf("GetRolePolicy = %+v", got)
	}
	wantPaths(t, got, "RoleName", "PolicyName", "PolicyDocument")

	list := e.must(t, "ListRolePolicies", "RoleName", "app").(*ListRolePoliciesResult)
	if !slices.Equal(list.PolicyNames, []string{"a-first", "s3"}) || list.IsTruncated {
		t.Errorf("ListRolePolicies = %+v", list)
	}
	wantPaths(t, list, "PolicyNames", "PolicyNames/member", "IsTruncated")

	// Replacing a policy keeps one entry.
	doc2 := strings.Replace(s3Doc, "GetObject", "PutObject", 1)
	e.must(t, "PutRolePolicy", "RoleName", "app", "PolicyName", "s3", "PolicyDocument", doc2)
	got = e.must(t, "GetRolePolicy", "RoleName", "app", "PolicyName", "s3").(*GetRolePolicyResult)
	if got.PolicyDocument != urlEncode(doc2) {
		t.Errorf("replaced document = %q", got.PolicyDocument)
	}

	_, err := e.call("DeleteRole", "RoleName", "app")
	if ae := wantCode(t, err, "DeleteConflict", 409); ae.Message != "Cannot delete entity, must detach all policies first." {
		t.Errorf("message = %q", ae.Message)
	}
	e.must(t, "DeleteRolePolicy", "RoleName", "app", "PolicyName", "s3")
	e.must(t, "DeleteRolePolicy", "RoleName", "app", "PolicyName", "a-first")
	_, err = e.call("GetRolePolicy", "RoleName", "app", "PolicyName", "s3")
	wantCode(t, err, "NoSuchEntity", 404)
	_, err = e.call("DeleteRolePolicy", "RoleName", "app", "PolicyName", "s3")
	wantCode(t, err, "NoSuchEntity", 404)
	_, err = e.call("PutRolePolicy", "RoleName", "nobody", "PolicyName", "s3", "PolicyDocument", s3Doc)
	wantCode(t, err, "NoSuchEntity", 404)
	_, err = e.call("ListRolePolicies", "RoleName", "nobody")
	wantCode(t, err, "NoSuchEntity", 404)
	e.must(t, "DeleteRole", "RoleName", "app")
}

func TestInlinePolicyAggregateSize(t *testing.T) {
	e := newEnv(t)
	e.must(t, "CreateRole", "RoleName", "app", "AssumeRolePolicyDocument", trustDoc)
	// Each document is ~4000 characters; two fit in 10240, three do not.
	doc := bigIdentityDoc(4000)
	e.must(t, "PutRolePolicy", "RoleName", "app", "PolicyName", "p1", "PolicyDocument", doc)
	e.must(t, "PutRolePolicy", "RoleName", "app", "PolicyName", "p2", "PolicyDocument", doc)
	// Replacing p2 with itself is counted once.
	e.must(t, "PutRolePolicy", "RoleName", "app", "PolicyName", "p2", "PolicyDocument", doc)
	before := e.snapshot(t)
	_, err := e.call("PutRolePolicy", "RoleName", "app", "PolicyName", "p3", "PolicyDocument", doc)
	wantCode(t, err, "LimitExceeded", 409)
	if after := e.snapshot(t); after != before {
		t.Errorf("store changed")
	}
}

// bigIdentityDoc returns a valid identity policy of about n characters.
func bigIdentityDoc(n int) string {
	var res []string
	for i := 0; len(strings.Join(res, ",")) < n-120; i++ {
		res = append(res, strconv.Quote("arn:aws:s3:::bucket-"+strconv.Itoa(i)+"/*"))
	}
	return `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":[` + strings.Join(res, ",") + `]}]}`
}

func TestManagedPolicies(t *testing.T) {
	e := newEnv(t)
	e.must(t, "CreateRole", "RoleName", "app", "AssumeRolePolicyDocument", trustDoc)
	res := e.must(t, "CreatePolicy", "PolicyName", "read", "Path", "/ops/", "PolicyDocument", s3Doc,
		"Description", "read things", "Tags.member.1.Key", "k", "Tags.member.1.Value", "v").(*CreatePolicyResult)
	p := res.Policy
	arn := "arn:aws:iam::123456789012:policy/ops/read"
	if p.Arn != arn || p.PolicyName != "read" || p.Path != "/ops/" || p.DefaultVersionID != "v1" ||
		!p.IsAttachable || p.AttachmentCount != 0 || p.CreateDate != "2026-11-23T10:30:45Z" || p.UpdateDate != p.CreateDate {
		t.Errorf("policy = %+v", p)
	}
	if !strings.HasPrefix(p.PolicyID, "ANPA") || len(p.PolicyID) != 21 {
		t.Errorf("PolicyId = %q", p.PolicyID)
	}
	wantPaths(t, res, "Policy", "Policy/PolicyName", "Policy/PolicyId", "Policy/Arn", "Policy/Path",
		"Policy/DefaultVersionId", "Policy/AttachmentCount", "Policy/PermissionsBoundaryUsageCount",
		"Policy/IsAttachable", "Policy/Description", "Policy/CreateDate", "Policy/UpdateDate",
		"Policy/Tags", "Policy/Tags/member", "Policy/Tags/member/Key", "Policy/Tags/member/Value")

	_, err := e.call("CreatePolicy", "PolicyName", "read", "Path", "/ops/", "PolicyDocument", s3Doc)
	wantCode(t, err, "EntityAlreadyExists", 409)

	e.must(t, "CreatePolicy", "PolicyName", "other", "PolicyDocument", s3Doc)
	if res := e.must(t, "AttachRolePolicy", "RoleName", "app", "PolicyArn", arn); res != nil {
		t.Errorf("AttachRolePolicy result = %#v", res)
	}
	e.must(t, "AttachRolePolicy", "RoleName", "app", "PolicyArn", arn) // idempotent

	g := e.must(t, "GetPolicy", "PolicyArn", arn).(*GetPolicyResult)
	if g.Policy.AttachmentCount != 1 || g.Policy.Description != "read things" {
		t.Errorf("GetPolicy = %+v", g.Policy)
	}

	att := e.must(t, "ListAttachedRolePolicies", "RoleName", "app").(*ListAttachedRolePoliciesResult)
	if len(att.AttachedPolicies) != 1 || att.AttachedPolicies[0] != (AttachedPolicy{"read", arn}) {
		t.Errorf("ListAttachedRolePolicies = %+v", att)
	}
	wantPaths(t, att, "AttachedPolicies", "AttachedPolicies/member", "AttachedPolicies/member/PolicyName",
		"AttachedPolicies/member/PolicyArn", "IsTruncated")

	names := func(r *ListPoliciesResult) []string {
		var out []string
		for _, p := range r.Policies {
			out = append(out, p.PolicyName)
		}
		return out
	}
	all := e.must(t, "ListPolicies").(*ListPoliciesResult)
	if got := names(all); !slices.Equal(got, []string{"other", "read"}) {
		t.Errorf("ListPolicies = %v", got)
	}
	wantPaths(t, all, "Policies", "Policies/member", "Policies/member/PolicyName", "Policies/member/PolicyId",
		"Policies/member/Arn", "Policies/member/Path", "Policies/member/DefaultVersionId",
		"Policies/member/AttachmentCount", "Policies/member/PermissionsBoundaryUsageCount",
		"Policies/member/IsAttachable", "Policies/member/CreateDate", "Policies/member/UpdateDate", "IsTruncated")
	if got := names(e.must(t, "ListPolicies", "Scope", "Local", "OnlyAttached", "true").(*ListPoliciesResult)); !slices.Equal(got, []string{"read"}) {
		t.Errorf("ListPolicies OnlyAttached = %v", got)
	}
	if got := names(e.must(t, "ListPolicies", "PathPrefix", "/ops/").(*ListPoliciesResult)); !slices.Equal(got, []string{"read"}) {
		t.Errorf("ListPolicies PathPrefix = %v", got)
	}
	if got := names(e.must(t, "ListPolicies", "Scope", "AWS").(*ListPoliciesResult)); len(got) != 0 {
		t.Errorf("ListPolicies AWS = %v", got)
	}

	_, err = e.call("DeletePolicy", "PolicyArn", arn)
	wantCode(t, err, "DeleteConflict", 409)
	_, err = e.call("DeleteRole", "RoleName", "app")
	wantCode(t, err, "DeleteConflict", 409)

	e.must(t, "DetachRolePolicy", "RoleName", "app", "PolicyArn", arn)
	_, err = e.call("DetachRolePolicy", "RoleName", "app", "PolicyArn", arn)
	wantCode(t, err, "NoSuchEntity", 404)
	if res := e.must(t, "DeletePolicy", "PolicyArn", arn); res != nil {
		t.Errorf("DeletePolicy result = %#v", res)
	}
	_, err = e.call("GetPolicy", "PolicyArn", arn)
	wantCode(t, err, "NoSuchEntity", 404)
	_, err = e.call("DeletePolicy", "PolicyArn", arn)
	wantCode(t, err, "NoSuchEntity", 404)
	e.must(t, "DeleteRole", "RoleName", "app")
}

func TestAttachLimit(t *testing.T) {
	e := newEnv(t)
	e.must(t, "CreateRole", "RoleName", "app", "AssumeRolePolicyDocument", trustDoc)
	for i := range 11 {
		e.must(t, "CreatePolicy", "PolicyName", "p"+strconv.Itoa(i), "PolicyDocument", s3Doc)
	}
	for i := range 10 {
		e.must(t, "AttachRolePolicy", "RoleName", "app", "PolicyArn", policyARN("p"+strconv.Itoa(i)))
	}
	// Re-attaching at the limit is still fine; an eleventh is not.
	e.must(t, "AttachRolePolicy", "RoleName", "app", "PolicyArn", policyARN("p0"))
	_, err := e.call("AttachRolePolicy", "RoleName", "app", "PolicyArn", policyARN("p10"))
	wantCode(t, err, "LimitExceeded", 409)
}

func TestOIDCProviders(t *testing.T) {
	e := newEnv(t)
	tp := strings.Repeat("9e99a48a9960b14926bb7f3b02e22da2b0ab7280", 1)
	res := e.must(t, "CreateOpenIDConnectProvider", "Url", "https://oidc.example.com/id/ABC",
		"ClientIDList.member.1", "sts.amazonaws.com", "ThumbprintList.member.1", tp,
		"Tags.member.1.Key", "k", "Tags.member.1.Value", "v").(*CreateOpenIDConnectProviderResult)
	arn := "arn:aws:iam::123456789012:oidc-provider/oidc.example.com/id/ABC"
	if res.OpenIDConnectProviderArn != arn {
		t.Errorf("ARN = %q", res.OpenIDConnectProviderArn)
	}
	wantPaths(t, res, "OpenIDConnectProviderArn", "Tags", "Tags/member", "Tags/member/Key", "Tags/member/Value")

	_, err := e.call("CreateOpenIDConnectProvider", "Url", "https://oidc.example.com/id/ABC")
	wantCode(t, err, "EntityAlreadyExists", 409)

	// No thumbprints and no client IDs are fine.
	e.must(t, "CreateOpenIDConnectProvider", "Url", "https://second.example.com")

	e.must(t, "AddClientIDToOpenIDConnectProvider", "OpenIDConnectProviderArn", arn, "ClientID", "extra")
	e.must(t, "AddClientIDToOpenIDConnectProvider", "OpenIDConnectProviderArn", arn, "ClientID", "extra")
	got := e.must(t, "GetOpenIDConnectProvider", "OpenIDConnectProviderArn", arn).(*GetOpenIDConnectProviderResult)
	if got.URL != "oidc.example.com/id/ABC" || !slices.Equal(got.ClientIDList, []string{"sts.amazonaws.com", "extra"}) ||
		!slices.Equal(got.ThumbprintList, []string{tp}) || got.CreateDate != "2026-11-23T10:30:45Z" || len(got.Tags) != 1 {
		t.Errorf("GetOpenIDConnectProvider = %+v", got)
	}
	wantPaths(t, got, "Url", "ClientIDList", "ClientIDList/member", "ThumbprintList", "ThumbprintList/member",
		"CreateDate", "Tags", "Tags/member", "Tags/member/Key", "Tags/member/Value")

	e.must(t, "RemoveClientIDFromOpenIDConnectProvider", "OpenIDConnectProviderArn", arn, "ClientID", "sts.amazonaws.com")
	e.must(t, "RemoveClientIDFromOpenIDConnectProvider", "OpenIDConnectProviderArn", arn, "ClientID", "absent")
	got = e.must(t, "GetOpenIDConnectProvider", "OpenIDConnectProviderArn", arn).(*GetOpenIDConnectProviderResult)
	if !slices.Equal(got.ClientIDList, []string{"extra"}) {
		t.Errorf("ClientIDList = %v", got.ClientIDList)
	}

	list := e.must(t, "ListOpenIDConnectProviders").(*ListOpenIDConnectProvidersResult)
	if len(list.OpenIDConnectProviderList) != 2 {
		t.Errorf("ListOpenIDConnectProviders = %+v", list)
	}
	wantPaths(t, list, "OpenIDConnectProviderList", "OpenIDConnectProviderList/member", "OpenIDConnectProviderList/member/Arn")

	if res := e.must(t, "DeleteOpenIDConnectProvider", "OpenIDConnectProviderArn", arn); res != nil {
		t.Errorf("DeleteOpenIDConnectProvider result = %#v", res)
	}
	_, err = e.call("GetOpenIDConnectProvider", "OpenIDConnectProviderArn", arn)
	wantCode(t, err, "NoSuchEntity", 404)
	_, err = e.call("DeleteOpenIDConnectProvider", "OpenIDConnectProviderArn", arn)
	wantCode(t, err, "NoSuchEntity", 404)
	_, err = e.call("AddClientIDToOpenIDConnectProvider", "OpenIDConnectProviderArn", arn, "ClientID", "x")
	wantCode(t, err, "NoSuchEntity", 404)
}

func TestPagination(t *testing.T) {
	e := newEnv(t)
	var want []string
	for i := range 7 {
		name := "role-" + strconv.Itoa(i)
		want = append(want, name)
		e.must(t, "CreateRole", "RoleName", name, "AssumeRolePolicyDocument", trustDoc)
		e.must(t, "PutRolePolicy", "RoleName", "role-0", "PolicyName", "p"+strconv.Itoa(i), "PolicyDocument", s3Doc)
		e.must(t, "CreatePolicy", "PolicyName", "m"+strconv.Itoa(i), "PolicyDocument", s3Doc)
		e.must(t, "AttachRolePolicy", "RoleName", "role-0", "PolicyArn", policyARN("m"+strconv.Itoa(i)))
		e.must(t, "TagRole", "RoleName", "role-0", "Tags.member.1.Key", "t"+strconv.Itoa(i), "Tags.member.1.Value", "v")
	}

	// pages walks a listing with MaxItems 3 and returns the names and the
	// number of pages.
	pages := func(action string, names func(any) []string, truncated func(any) (bool, string), kv ...string) ([]string, int) {
		t.Helper()
		var all []string
		marker, n := "", 0
		for {
			args := append([]string{"MaxItems", "3"}, kv...)
			if marker != "" {
				args = append(args, "Marker", marker)
			}
			res := e.must(t, action, args...)
			n++
			got := names(res)
			all = append(all, got...)
			more, next := truncated(res)
			if more != (next != "") {
				t.Fatalf("%s: IsTruncated %v with marker %q", action, more, next)
			}
			if !more {
				return all, n
			}
			if len(got) != 3 {
				t.Fatalf("%s: truncated page of %d", action, len(got))
			}
			marker = next
			if n > 10 {
				t.Fatalf("%s: too many pages", action)
			}
		}
	}

	roles, n := pages("ListRoles", func(v any) (out []string) {
		for _, r := range v.(*ListRolesResult).Roles {
			out = append(out, r.RoleName)
		}
		return
	}, func(v any) (bool, string) { r := v.(*ListRolesResult); return r.IsTruncated, r.Marker })
	if !slices.Equal(roles, want) || n != 3 {
		t.Errorf("ListRoles pages: %v in %d pages", roles, n)
	}

	inline, n := pages("ListRolePolicies", func(v any) []string { return v.(*ListRolePoliciesResult).PolicyNames },
		func(v any) (bool, string) { r := v.(*ListRolePoliciesResult); return r.IsTruncated, r.Marker }, "RoleName", "role-0")
	if len(inline) != 7 || n != 3 {
		t.Errorf("ListRolePolicies pages: %v in %d pages", inline, n)
	}

	managed, n := pages("ListPolicies", func(v any) (out []string) {
		for _, p := range v.(*ListPoliciesResult).Policies {
			out = append(out, p.PolicyName)
		}
		return
	}, func(v any) (bool, string) { r := v.(*ListPoliciesResult); return r.IsTruncated, r.Marker })
	if len(managed) != 7 || n != 3 {
		t.Errorf("ListPolicies pages: %v in %d pages", managed, n)
	}

	attached, n := pages("ListAttachedRolePolicies", func(v any) (out []string) {
		for _, p := range v.(*ListAttachedRolePoliciesResult).AttachedPolicies {
			out = append(out, p.PolicyName)
		}
		return
	}, func(v any) (bool, string) {
		r := v.(*ListAttachedRolePoliciesResult)
		return r.IsTruncated, r.Marker
	}, "RoleName", "role-0")
	if len(attached) != 7 || n != 3 {
		t.Errorf("ListAttachedRolePolicies pages: %v in %d pages", attached, n)
	}

	tags, n := pages("ListRoleTags", func(v any) (out []string) {
		for _, t := range v.(*ListRoleTagsResult).Tags {
			out = append(out, t.Key)
		}
		return
	}, func(v any) (bool, string) { r := v.(*ListRoleTagsResult); return r.IsTruncated, r.Marker }, "RoleName", "role-0")
	if !slices.Equal(tags, []string{"t0", "t1", "t2", "t3", "t4", "t5", "t6"}) || n != 3 {
		t.Errorf("ListRoleTags pages: %v in %d pages", tags, n)
	}

	// Truncated responses carry the Marker element.
	res := e.must(t, "ListRoles", "MaxItems", "1")
	if !strings.Contains(marshal(t, res), "<IsTruncated>true</IsTruncated><Marker>") {
		t.Errorf("truncated ListRoles: %s", marshal(t, res))
	}

	_, err := e.call("ListRoles", "Marker", "garbage!")
	wantCode(t, err, "InvalidInput", 400)
	_, err = e.call("ListRoleTags", "RoleName", "role-0", "Marker", "99")
	wantCode(t, err, "InvalidInput", 400)
}

func TestUnknownAction(t *testing.T) {
	e := newEnv(t)
	_, err := e.call("CreateUser", "UserName", "u")
	ae := wantCode(t, err, "InvalidAction", 400)
	if ae.Message != "Could not find operation CreateUser for version 2010-05-08" {
		t.Errorf("message = %q", ae.Message)
	}
}

// denyAll records what it was asked and denies everything but reads.
type denyAll struct {
	asked []string
}

func (d *denyAll) Authorize(_ context.Context, p *session.Principal, action, resource string) error {
	d.asked = append(d.asked, action+" "+resource)
	if strings.Contains(action, ":Get") {
		return nil
	}
	return awsproto.AccessDenied("User: %s is not authorized to perform: %s on resource: %s", p.ARN, action, resource)
}

func TestAuthorization(t *testing.T) {
	e := newEnv(t)
	e.must(t, "CreateRole", "RoleName", "app", "Path", "/p/", "AssumeRolePolicyDocument", trustDoc)
	e.must(t, "CreatePolicy", "PolicyName", "m", "PolicyDocument", s3Doc)
	authz := &denyAll{}
	e.svc.Authz = authz
	before := e.snapshot(t)
	caller := &session.Principal{Account: testAccount, ARN: "arn:aws:sts::123456789012:assumed-role/app/s"}

	calls := []struct {
		action   string
		kv       []string
		resource string
	}{
		{"CreateRole", []string{"RoleName", "x", "Path", "/q/", "AssumeRolePolicyDocument", trustDoc}, "arn:aws:iam::123456789012:role/q/x"},
		{"DeleteRole", []string{"RoleName", "app"}, "arn:aws:iam::123456789012:role/p/app"},
		{"DeleteRole", []string{"RoleName", "missing"}, "arn:aws:iam::123456789012:role/missing"},
		{"PutRolePolicy", []string{"RoleName", "app", "PolicyName", "x", "PolicyDocument", "not json"}, "arn:aws:iam::123456789012:role/p/app"},
		{"AttachRolePolicy", []string{"RoleName", "app", "PolicyArn", policyARN("m")}, "arn:aws:iam::123456789012:role/p/app"},
		{"CreatePolicy", []string{"PolicyName", "n", "PolicyDocument", s3Doc}, policyARN("n")},
		{"DeletePolicy", []string{"PolicyArn", policyARN("m")}, policyARN("m")},
		{"CreateOpenIDConnectProvider", []string{"Url", "https://x.example.com"}, "arn:aws:iam::123456789012:oidc-provider/x.example.com"},
		{"ListRoles", nil, "arn:aws:iam::123456789012:role/"},
	}
	for _, c := range calls {
		authz.asked = nil
		_, err := e.svc.Handle(context.Background(), caller, c.action, form(c.kv...))
		wantCode(t, err, "AccessDenied", 403)
		if want := []string{"iam:" + c.action + " " + c.resource}; !slices.Equal(authz.asked, want) {
			t.Errorf("%s asked %q, want %q", c.action, authz.asked, want)
		}
	}
	if after := e.snapshot(t); after != before {
		t.Errorf("denied calls changed the store:\n%s\n---\n%s", before, after)
	}
	// Allowed reads go through.
	if _, err := e.svc.Handle(context.Background(), caller, "GetRole", form("RoleName", "app")); err != nil {
		t.Errorf("GetRole: %v", err)
	}
}

func TestURLEncode(t *testing.T) {
	for in, want := range map[string]string{
		`{"a": "b c"}`: "%7B%22a%22%3A%20%22b%20c%22%7D",
		"az09-_.~":     "az09-_.~",
		"é+/*":         "%C3%A9%2B%2F%2A",
	} {
		if got := urlEncode(in); got != want {
			t.Errorf("urlEncode(%q) = %q, want %q", in, got, want)
		}
	}
}
