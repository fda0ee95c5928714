package integration

import (
	"net/url"
	"slices"
	"sort"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/podid/podid/internal/server/servertest"
)

const account = "111122223333"

// trustAccount lets the account's principals assume a role.
func trustAccount() map[string]any {
	return map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{
		"Effect": "Allow", "Principal": map[string]any{"AWS": "arn:aws:iam::" + account + ":root"}, "Action": "sts:AssumeRole"}}}
}

// policyDoc builds an identity policy of statements {Effect, Action, Resource[, Condition]}.
func policyDoc(stmts ...map[string]any) string {
	s := make([]any, len(stmts))
	for i, st := range stmts {
		s[i] = st
	}
	return mustJSON(map[string]any{"Version": "2012-10-17", "Statement": s})
}

func stmt(effect string, action, resource any) map[string]any {
	return map[string]any{"Effect": effect, "Action": action, "Resource": resource}
}

// decoded undoes IAM's URL-encoding of returned policy documents: the Go
// SDK hands them over as sent on the wire (the CLI decodes them). Like
// botocore's unquote, it leaves "+" alone: a space must come as %20.
func decoded(t *testing.T, doc *string) string {
	t.Helper()
	s, err := url.PathUnescape(aws.ToString(doc))
	if err != nil {
		t.Fatalf("policy document %q is not URL-encoded: %v", aws.ToString(doc), err)
	}
	return s
}

// wantCode fails the test unless err carries the AWS error code.
func wantCode(t *testing.T, what string, err error, code string) {
	t.Helper()
	if got := apiCode(err); got != code {
		t.Errorf("%s: err = %v, want code %q", what, err, code)
	}
}

func must[T any](t *testing.T, what string) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

func TestIAMRoleLifecycle(t *testing.T) {
	inst := servertest.Start(t)
	ic, _ := adminClients(inst)
	c := ctx(t)
	trust := mustJSON(trustAccount())
	created := must[*iam.CreateRoleOutput](t, "CreateRole")(ic.CreateRole(c, &iam.CreateRoleInput{
		RoleName: aws.String("app"), Path: aws.String("/team/"), AssumeRolePolicyDocument: aws.String(trust),
		Description: aws.String("the app"), MaxSessionDuration: aws.Int32(7200),
		Tags: []iamtypes.Tag{{Key: aws.String("env"), Value: aws.String("dev")}},
	}))
	if got, want := aws.ToString(created.Role.Arn), "arn:aws:iam::"+account+":role/team/app"; got != want {
		t.Errorf("Arn = %q, want %q", got, want)
	}
	_, err := ic.CreateRole(c, &iam.CreateRoleInput{RoleName: aws.String("app"), AssumeRolePolicyDocument: aws.String(trust)})
	wantCode(t, "duplicate CreateRole", err, "EntityAlreadyExists")

	get := func() *iamtypes.Role {
		t.Helper()
		return must[*iam.GetRoleOutput](t, "GetRole")(ic.GetRole(c, &iam.GetRoleInput{RoleName: aws.String("app")})).Role
	}
	r := get()
	if decoded(t, r.AssumeRolePolicyDocument) != trust || aws.ToString(r.Path) != "/team/" || aws.ToString(r.Description) != "the app" ||
		aws.ToInt32(r.MaxSessionDuration) != 7200 || len(r.Tags) != 1 || aws.ToString(r.RoleId) != aws.ToString(created.Role.RoleId) || r.CreateDate == nil {
		t.Errorf("GetRole = %+v", r)
	}

	newTrust := mustJSON(map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{
		"Effect": "Allow", "Principal": map[string]any{"Service": "pods.eks.amazonaws.com"}, "Action": []string{"sts:AssumeRole", "sts:TagSession"}}}})
	must[*iam.UpdateAssumeRolePolicyOutput](t, "UpdateAssumeRolePolicy")(ic.UpdateAssumeRolePolicy(c, &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("app"), PolicyDocument: aws.String(newTrust)}))
	must[*iam.UpdateRoleOutput](t, "UpdateRole")(ic.UpdateRole(c, &iam.UpdateRoleInput{RoleName: aws.String("app"), Description: aws.String("changed"), MaxSessionDuration: aws.Int32(43200)}))
	if r := get(); decoded(t, r.AssumeRolePolicyDocument) != newTrust || aws.ToString(r.Description) != "changed" || aws.ToInt32(r.MaxSessionDuration) != 43200 {
		t.Errorf("after updates: trust=%q desc=%q max=%d", decoded(t, r.AssumeRolePolicyDocument), aws.ToString(r.Description), aws.ToInt32(r.MaxSessionDuration))
	}

	must[*iam.TagRoleOutput](t, "TagRole")(ic.TagRole(c, &iam.TagRoleInput{RoleName: aws.String("app"), Tags: []iamtypes.Tag{
		{Key: aws.String("ENV"), Value: aws.String("prod")}, {Key: aws.String("team"), Value: aws.String("blue")}, {Key: aws.String("cost"), Value: aws.String("")}}}))
	must[*iam.UntagRoleOutput](t, "UntagRole")(ic.UntagRole(c, &iam.UntagRoleInput{RoleName: aws.String("app"), TagKeys: []string{"cost", "absent"}}))
	tags := must[*iam.ListRoleTagsOutput](t, "ListRoleTags")(ic.ListRoleTags(c, &iam.ListRoleTagsInput{RoleName: aws.String("app")}))
	got := map[string]string{}
	for _, tg := range tags.Tags {
		got[aws.ToString(tg.Key)] = aws.ToString(tg.Value)
	}
	// Tag keys are case-insensitive: ENV replaced env.
	if len(got) != 2 || got["ENV"] != "prod" || got["team"] != "blue" || tags.IsTruncated {
		t.Errorf("ListRoleTags = %v (truncated %v)", got, tags.IsTruncated)
	}
	page := must[*iam.ListRoleTagsOutput](t, "ListRoleTags page")(ic.ListRoleTags(c, &iam.ListRoleTagsInput{RoleName: aws.String("app"), MaxItems: aws.Int32(1)}))
	if len(page.Tags) != 1 || !page.IsTruncated || page.Marker == nil {
		t.Errorf("ListRoleTags MaxItems=1: %d tags, truncated %v", len(page.Tags), page.IsTruncated)
	}

	must[*iam.DeleteRoleOutput](t, "DeleteRole")(ic.DeleteRole(c, &iam.DeleteRoleInput{RoleName: aws.String("app")}))
	_, err = ic.GetRole(c, &iam.GetRoleInput{RoleName: aws.String("app")})
	wantCode(t, "GetRole after delete", err, "NoSuchEntity")
	for name, call := range map[string]func() error{
		"DeleteRole": func() error {
			_, err := ic.DeleteRole(c, &iam.DeleteRoleInput{RoleName: aws.String("app")})
			return err
		},
		"UpdateRole": func() error {
			_, err := ic.UpdateRole(c, &iam.UpdateRoleInput{RoleName: aws.String("app"), Description: aws.String("x")})
			return err
		},
		"TagRole": func() error {
			_, err := ic.TagRole(c, &iam.TagRoleInput{RoleName: aws.String("app"), Tags: []iamtypes.Tag{{Key: aws.String("k"), Value: aws.String("v")}}})
			return err
		},
		"ListRoleTags": func() error {
			_, err := ic.ListRoleTags(c, &iam.ListRoleTagsInput{RoleName: aws.String("app")})
			return err
		},
	} {
		wantCode(t, name+" on a deleted role", call(), "NoSuchEntity")
	}
}

func TestIAMListRolesPagination(t *testing.T) {
	inst := servertest.Start(t)
	ic, _ := adminClients(inst)
	c := ctx(t)
	var all, team []string
	for i, name := range []string{"r1", "r2", "r3", "r4", "r5", "r6", "r7"} {
		path := "/"
		if i%2 == 0 {
			path = "/team/a/"
			team = append(team, name)
		}
		must[*iam.CreateRoleOutput](t, "CreateRole")(ic.CreateRole(c, &iam.CreateRoleInput{RoleName: aws.String(name), Path: aws.String(path), AssumeRolePolicyDocument: aws.String(mustJSON(trustAccount()))}))
		all = append(all, name)
	}
	list := func(prefix *string, max int32) (names []string, pages int) {
		t.Helper()
		in := &iam.ListRolesInput{PathPrefix: prefix, MaxItems: aws.Int32(max)}
		for {
			out := must[*iam.ListRolesOutput](t, "ListRoles")(ic.ListRoles(c, in))
			pages++
			if len(out.Roles) > int(max) {
				t.Errorf("page of %d roles with MaxItems %d", len(out.Roles), max)
			}
			for _, r := range out.Roles {
				names = append(names, aws.ToString(r.RoleName))
				if r.AssumeRolePolicyDocument == nil || r.Arn == nil {
					t.Errorf("ListRoles role lacks fields: %+v", r)
				}
			}
			if !out.IsTruncated {
				if out.Marker != nil {
					t.Errorf("last page has a Marker")
				}
				return names, pages
			}
			if aws.ToString(out.Marker) == "" {
				t.Fatal("truncated page without a Marker")
			}
			in.Marker = out.Marker
		}
	}
	for _, tc := range []struct {
		prefix    *string
		max       int32
		want      []string
		wantPages int
	}{
		{nil, 3, all, 3},
		{nil, 7, all, 1},
		{nil, 1000, all, 1},
		{aws.String("/team/"), 2, team, 2},
		{aws.String("/team/a/"), 4, team, 1},
		{aws.String("/nobody/"), 5, nil, 1},
	} {
		names, pages := list(tc.prefix, tc.max)
		sort.Strings(names)
		if !slices.Equal(names, tc.want) || pages != tc.wantPages {
			t.Errorf("ListRoles prefix=%v max=%d: %v in %d pages, want %v in %d", aws.ToString(tc.prefix), tc.max, names, pages, tc.want, tc.wantPages)
		}
	}
	// The SDK's own paginator follows the markers too.
	n := 0
	for p := iam.NewListRolesPaginator(ic, &iam.ListRolesInput{MaxItems: aws.Int32(2)}); p.HasMorePages(); {
		n += len(must[*iam.ListRolesOutput](t, "paginator")(p.NextPage(c)).Roles)
	}
	if n != len(all) {
		t.Errorf("paginator saw %d roles, want %d", n, len(all))
	}
	_, err := ic.ListRoles(c, &iam.ListRolesInput{Marker: aws.String("not-a-marker")})
	wantCode(t, "ListRoles with a bogus marker", err, "InvalidInput")
}

func TestIAMInlinePolicies(t *testing.T) {
	inst := servertest.Start(t)
	ic, _ := adminClients(inst)
	c := ctx(t)
	createRole(t, ic, "app", trustAccount())
	docs := map[string]string{
		"read":  policyDoc(stmt("Allow", "s3:GetObject", "arn:aws:s3:::bucket/*")),
		"write": policyDoc(stmt("Allow", []string{"s3:PutObject", "s3:DeleteObject"}, "arn:aws:s3:::bucket/a b+c%20&d=e")),
	}
	for name, doc := range docs {
		must[*iam.PutRolePolicyOutput](t, "PutRolePolicy")(ic.PutRolePolicy(c, &iam.PutRolePolicyInput{RoleName: aws.String("app"), PolicyName: aws.String(name), PolicyDocument: aws.String(doc)}))
	}
	for name, doc := range docs {
		out := must[*iam.GetRolePolicyOutput](t, "GetRolePolicy")(ic.GetRolePolicy(c, &iam.GetRolePolicyInput{RoleName: aws.String("app"), PolicyName: aws.String(name)}))
		if got := decoded(t, out.PolicyDocument); got != doc || aws.ToString(out.RoleName) != "app" || aws.ToString(out.PolicyName) != name {
			t.Errorf("GetRolePolicy %s: document %q, want %q", name, got, doc)
		}
	}
	first := must[*iam.ListRolePoliciesOutput](t, "ListRolePolicies")(ic.ListRolePolicies(c, &iam.ListRolePoliciesInput{RoleName: aws.String("app"), MaxItems: aws.Int32(1)}))
	second := must[*iam.ListRolePoliciesOutput](t, "ListRolePolicies")(ic.ListRolePolicies(c, &iam.ListRolePoliciesInput{RoleName: aws.String("app"), MaxItems: aws.Int32(1), Marker: first.Marker}))
	if names := append(first.PolicyNames, second.PolicyNames...); !first.IsTruncated || second.IsTruncated || !slices.Equal(names, []string{"read", "write"}) {
		t.Errorf("ListRolePolicies pages: %v (truncated %v, %v)", names, first.IsTruncated, second.IsTruncated)
	}
	_, err := ic.DeleteRole(c, &iam.DeleteRoleInput{RoleName: aws.String("app")})
	wantCode(t, "DeleteRole with inline policies", err, "DeleteConflict")

	must[*iam.DeleteRolePolicyOutput](t, "DeleteRolePolicy")(ic.DeleteRolePolicy(c, &iam.DeleteRolePolicyInput{RoleName: aws.String("app"), PolicyName: aws.String("read")}))
	_, err = ic.GetRolePolicy(c, &iam.GetRolePolicyInput{RoleName: aws.String("app"), PolicyName: aws.String("read")})
	wantCode(t, "GetRolePolicy after delete", err, "NoSuchEntity")
	_, err = ic.DeleteRolePolicy(c, &iam.DeleteRolePolicyInput{RoleName: aws.String("app"), PolicyName: aws.String("read")})
	wantCode(t, "DeleteRolePolicy twice", err, "NoSuchEntity")
	_, err = ic.PutRolePolicy(c, &iam.PutRolePolicyInput{RoleName: aws.String("ghost"), PolicyName: aws.String("p"), PolicyDocument: aws.String(docs["read"])})
	wantCode(t, "PutRolePolicy on a missing role", err, "NoSuchEntity")
	if out := must[*iam.ListRolePoliciesOutput](t, "ListRolePolicies")(ic.ListRolePolicies(c, &iam.ListRolePoliciesInput{RoleName: aws.String("app")})); !slices.Equal(out.PolicyNames, []string{"write"}) {
		t.Errorf("ListRolePolicies after delete = %v", out.PolicyNames)
	}
}

func TestIAMManagedPolicies(t *testing.T) {
	inst := servertest.Start(t)
	ic, _ := adminClients(inst)
	c := ctx(t)
	createRole(t, ic, "app", trustAccount())
	doc := policyDoc(stmt("Allow", "sqs:SendMessage", "*"))
	var arns []string
	for _, p := range []struct{ name, path string }{{"send", "/ops/"}, {"other", "/"}} {
		out := must[*iam.CreatePolicyOutput](t, "CreatePolicy")(ic.CreatePolicy(c, &iam.CreatePolicyInput{PolicyName: aws.String(p.name), Path: aws.String(p.path),
			PolicyDocument: aws.String(doc), Description: aws.String("d")}))
		arns = append(arns, aws.ToString(out.Policy.Arn))
	}
	send := arns[0]
	if send != "arn:aws:iam::"+account+":policy/ops/send" {
		t.Errorf("policy ARN = %q", send)
	}
	_, err := ic.CreatePolicy(c, &iam.CreatePolicyInput{PolicyName: aws.String("send"), Path: aws.String("/ops/"), PolicyDocument: aws.String(doc)})
	wantCode(t, "duplicate CreatePolicy", err, "EntityAlreadyExists")

	attachments := func() int32 {
		t.Helper()
		p := must[*iam.GetPolicyOutput](t, "GetPolicy")(ic.GetPolicy(c, &iam.GetPolicyInput{PolicyArn: aws.String(send)})).Policy
		if aws.ToString(p.DefaultVersionId) != "v1" || aws.ToString(p.PolicyName) != "send" || aws.ToString(p.Path) != "/ops/" || !p.IsAttachable {
			t.Errorf("GetPolicy = %+v", p)
		}
		return aws.ToInt32(p.AttachmentCount)
	}
	if n := attachments(); n != 0 {
		t.Errorf("AttachmentCount before attach = %d", n)
	}
	listed := func(in *iam.ListPoliciesInput) []string {
		t.Helper()
		var out []string
		for _, p := range must[*iam.ListPoliciesOutput](t, "ListPolicies")(ic.ListPolicies(c, in)).Policies {
			out = append(out, aws.ToString(p.Arn))
		}
		sort.Strings(out)
		return out
	}
	sorted := slices.Sorted(slices.Values(arns))
	if got := listed(&iam.ListPoliciesInput{Scope: iamtypes.PolicyScopeTypeLocal}); !slices.Equal(got, sorted) {
		t.Errorf("ListPolicies Local = %v", got)
	}
	if got := listed(&iam.ListPoliciesInput{PathPrefix: aws.String("/ops/")}); !slices.Equal(got, []string{send}) {
		t.Errorf("ListPolicies /ops/ = %v", got)
	}

	must[*iam.AttachRolePolicyOutput](t, "AttachRolePolicy")(ic.AttachRolePolicy(c, &iam.AttachRolePolicyInput{RoleName: aws.String("app"), PolicyArn: aws.String(send)}))
	if n := attachments(); n != 1 {
		t.Errorf("AttachmentCount after attach = %d", n)
	}
	if got := listed(&iam.ListPoliciesInput{OnlyAttached: true}); !slices.Equal(got, []string{send}) {
		t.Errorf("ListPolicies OnlyAttached = %v", got)
	}
	att := must[*iam.ListAttachedRolePoliciesOutput](t, "ListAttachedRolePolicies")(ic.ListAttachedRolePolicies(c, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String("app")}))
	if len(att.AttachedPolicies) != 1 || aws.ToString(att.AttachedPolicies[0].PolicyArn) != send || aws.ToString(att.AttachedPolicies[0].PolicyName) != "send" {
		t.Errorf("ListAttachedRolePolicies = %+v", att.AttachedPolicies)
	}
	_, err = ic.DeletePolicy(c, &iam.DeletePolicyInput{PolicyArn: aws.String(send)})
	wantCode(t, "DeletePolicy while attached", err, "DeleteConflict")
	_, err = ic.DeleteRole(c, &iam.DeleteRoleInput{RoleName: aws.String("app")})
	wantCode(t, "DeleteRole while a policy is attached", err, "DeleteConflict")
	_, err = ic.AttachRolePolicy(c, &iam.AttachRolePolicyInput{RoleName: aws.String("app"), PolicyArn: aws.String("arn:aws:iam::" + account + ":policy/none")})
	wantCode(t, "AttachRolePolicy of a missing policy", err, "NoSuchEntity")

	must[*iam.DetachRolePolicyOutput](t, "DetachRolePolicy")(ic.DetachRolePolicy(c, &iam.DetachRolePolicyInput{RoleName: aws.String("app"), PolicyArn: aws.String(send)}))
	_, err = ic.DetachRolePolicy(c, &iam.DetachRolePolicyInput{RoleName: aws.String("app"), PolicyArn: aws.String(send)})
	wantCode(t, "DetachRolePolicy twice", err, "NoSuchEntity")
	if att := must[*iam.ListAttachedRolePoliciesOutput](t, "ListAttachedRolePolicies")(ic.ListAttachedRolePolicies(c, &iam.ListAttachedRolePoliciesInput{RoleName: aws.String("app")})); len(att.AttachedPolicies) != 0 {
		t.Errorf("attached after detach: %+v", att.AttachedPolicies)
	}
	must[*iam.DeletePolicyOutput](t, "DeletePolicy")(ic.DeletePolicy(c, &iam.DeletePolicyInput{PolicyArn: aws.String(send)}))
	_, err = ic.GetPolicy(c, &iam.GetPolicyInput{PolicyArn: aws.String(send)})
	wantCode(t, "GetPolicy after delete", err, "NoSuchEntity")
	must[*iam.DeleteRoleOutput](t, "DeleteRole")(ic.DeleteRole(c, &iam.DeleteRoleInput{RoleName: aws.String("app")}))
}

func TestIAMOpenIDConnectProviders(t *testing.T) {
	inst := servertest.Start(t)
	ic, _ := adminClients(inst)
	c := ctx(t)
	thumb := "9e99a48a9960b14926bb7f3b02e22da2b0ab7280"
	created := must[*iam.CreateOpenIDConnectProviderOutput](t, "CreateOpenIDConnectProvider")(ic.CreateOpenIDConnectProvider(c, &iam.CreateOpenIDConnectProviderInput{
		Url: aws.String("https://oidc.example.com/id/ABC"), ClientIDList: []string{"sts.amazonaws.com"}, ThumbprintList: []string{thumb},
		Tags: []iamtypes.Tag{{Key: aws.String("cluster"), Value: aws.String("k3s")}}}))
	arn := aws.ToString(created.OpenIDConnectProviderArn)
	if arn != "arn:aws:iam::"+account+":oidc-provider/oidc.example.com/id/ABC" {
		t.Errorf("provider ARN = %q", arn)
	}
	_, err := ic.CreateOpenIDConnectProvider(c, &iam.CreateOpenIDConnectProviderInput{Url: aws.String("https://oidc.example.com/id/ABC"), ClientIDList: []string{"x"}})
	wantCode(t, "duplicate provider", err, "EntityAlreadyExists")

	clientIDs := func() []string {
		t.Helper()
		out := must[*iam.GetOpenIDConnectProviderOutput](t, "GetOpenIDConnectProvider")(ic.GetOpenIDConnectProvider(c, &iam.GetOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(arn)}))
		if aws.ToString(out.Url) != "oidc.example.com/id/ABC" || !slices.Equal(out.ThumbprintList, []string{thumb}) || len(out.Tags) != 1 || out.CreateDate == nil {
			t.Errorf("GetOpenIDConnectProvider = url %q thumbprints %v tags %d", aws.ToString(out.Url), out.ThumbprintList, len(out.Tags))
		}
		ids := slices.Clone(out.ClientIDList)
		sort.Strings(ids)
		return ids
	}
	must[*iam.AddClientIDToOpenIDConnectProviderOutput](t, "AddClientID")(ic.AddClientIDToOpenIDConnectProvider(c, &iam.AddClientIDToOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(arn), ClientID: aws.String("pods.eks.amazonaws.com")}))
	// Adding an ID that is already there changes nothing, as in AWS.
	must[*iam.AddClientIDToOpenIDConnectProviderOutput](t, "AddClientID again")(ic.AddClientIDToOpenIDConnectProvider(c, &iam.AddClientIDToOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(arn), ClientID: aws.String("pods.eks.amazonaws.com")}))
	if got := clientIDs(); !slices.Equal(got, []string{"pods.eks.amazonaws.com", "sts.amazonaws.com"}) {
		t.Errorf("client IDs after add = %v", got)
	}
	must[*iam.RemoveClientIDFromOpenIDConnectProviderOutput](t, "RemoveClientID")(ic.RemoveClientIDFromOpenIDConnectProvider(c, &iam.RemoveClientIDFromOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(arn), ClientID: aws.String("sts.amazonaws.com")}))
	if got := clientIDs(); !slices.Equal(got, []string{"pods.eks.amazonaws.com"}) {
		t.Errorf("client IDs after remove = %v", got)
	}
	second := aws.ToString(must[*iam.CreateOpenIDConnectProviderOutput](t, "second provider")(ic.CreateOpenIDConnectProvider(c, &iam.CreateOpenIDConnectProviderInput{
		Url: aws.String("https://other.example.com"), ClientIDList: []string{"sts.amazonaws.com"}})).OpenIDConnectProviderArn)
	list := must[*iam.ListOpenIDConnectProvidersOutput](t, "ListOpenIDConnectProviders")(ic.ListOpenIDConnectProviders(c, &iam.ListOpenIDConnectProvidersInput{}))
	var got []string
	for _, p := range list.OpenIDConnectProviderList {
		got = append(got, aws.ToString(p.Arn))
	}
	sort.Strings(got)
	if want := slices.Sorted(slices.Values([]string{arn, second})); !slices.Equal(got, want) {
		t.Errorf("ListOpenIDConnectProviders = %v, want %v", got, want)
	}
	must[*iam.DeleteOpenIDConnectProviderOutput](t, "DeleteOpenIDConnectProvider")(ic.DeleteOpenIDConnectProvider(c, &iam.DeleteOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(arn)}))
	_, err = ic.GetOpenIDConnectProvider(c, &iam.GetOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(arn)})
	wantCode(t, "Get after delete", err, "NoSuchEntity")
	_, err = ic.AddClientIDToOpenIDConnectProvider(c, &iam.AddClientIDToOpenIDConnectProviderInput{OpenIDConnectProviderArn: aws.String(arn), ClientID: aws.String("x")})
	wantCode(t, "AddClientID after delete", err, "NoSuchEntity")
}

func TestIAMSimulatePrincipalPolicy(t *testing.T) {
	inst := servertest.Start(t)
	ic, _ := adminClients(inst)
	c := ctx(t)
	roleARN := createRole(t, ic, "app", trustAccount())
	get := stmt("Allow", "s3:GetObject", "arn:aws:s3:::bucket/*")
	get["Condition"] = map[string]any{"StringEquals": map[string]any{"aws:RequestTag/team": "blue"}}
	must[*iam.PutRolePolicyOutput](t, "PutRolePolicy")(ic.PutRolePolicy(c, &iam.PutRolePolicyInput{RoleName: aws.String("app"), PolicyName: aws.String("p"),
		PolicyDocument: aws.String(policyDoc(get, stmt("Allow", "s3:*", "*"), stmt("Deny", "s3:DeleteObject", "*")))}))
	pol := aws.ToString(must[*iam.CreatePolicyOutput](t, "CreatePolicy")(ic.CreatePolicy(c, &iam.CreatePolicyInput{PolicyName: aws.String("sqs"),
		PolicyDocument: aws.String(policyDoc(stmt("Allow", "sqs:SendMessage", "*")))})).Policy.Arn)
	must[*iam.AttachRolePolicyOutput](t, "AttachRolePolicy")(ic.AttachRolePolicy(c, &iam.AttachRolePolicyInput{RoleName: aws.String("app"), PolicyArn: aws.String(pol)}))

	team := func(v string) []iamtypes.ContextEntry {
		return []iamtypes.ContextEntry{{ContextKeyName: aws.String("aws:RequestTag/team"), ContextKeyType: iamtypes.ContextKeyTypeEnumString, ContextKeyValues: []string{v}}}
	}
	for _, tc := range []struct {
		action  string
		context []iamtypes.ContextEntry
		want    iamtypes.PolicyEvaluationDecisionType
	}{
		{"s3:GetObject", team("blue"), iamtypes.PolicyEvaluationDecisionTypeAllowed},
		{"s3:DeleteObject", team("blue"), iamtypes.PolicyEvaluationDecisionTypeExplicitDeny},
		{"sqs:SendMessage", nil, iamtypes.PolicyEvaluationDecisionTypeAllowed},
		{"dynamodb:GetItem", team("blue"), iamtypes.PolicyEvaluationDecisionTypeImplicitDeny},
	} {
		out := must[*iam.SimulatePrincipalPolicyOutput](t, "SimulatePrincipalPolicy")(ic.SimulatePrincipalPolicy(c, &iam.SimulatePrincipalPolicyInput{
			PolicySourceArn: aws.String(roleARN), ActionNames: []string{tc.action}, ResourceArns: []string{"arn:aws:s3:::bucket/key"}, ContextEntries: tc.context}))
		if len(out.EvaluationResults) != 1 || out.EvaluationResults[0].EvalDecision != tc.want || aws.ToString(out.EvaluationResults[0].EvalActionName) != tc.action {
			t.Errorf("%s: results %+v, want %s", tc.action, out.EvaluationResults, tc.want)
		}
	}
	// On "app", s3:* allows GetObject whatever the context; a role with only
	// the conditional statement shows the context entry deciding.
	narrow := createRole(t, ic, "narrow", trustAccount())
	must[*iam.PutRolePolicyOutput](t, "PutRolePolicy")(ic.PutRolePolicy(c, &iam.PutRolePolicyInput{RoleName: aws.String("narrow"), PolicyName: aws.String("p"), PolicyDocument: aws.String(policyDoc(get))}))
	for value, want := range map[string]iamtypes.PolicyEvaluationDecisionType{"blue": iamtypes.PolicyEvaluationDecisionTypeAllowed, "red": iamtypes.PolicyEvaluationDecisionTypeImplicitDeny} {
		out := must[*iam.SimulatePrincipalPolicyOutput](t, "SimulatePrincipalPolicy")(ic.SimulatePrincipalPolicy(c, &iam.SimulatePrincipalPolicyInput{
			PolicySourceArn: aws.String(narrow), ActionNames: []string{"s3:GetObject"}, ResourceArns: []string{"arn:aws:s3:::bucket/key"}, ContextEntries: team(value)}))
		if got := out.EvaluationResults[0].EvalDecision; got != want {
			t.Errorf("team=%s: %s, want %s", value, got, want)
		}
	}
	_, err := ic.SimulatePrincipalPolicy(c, &iam.SimulatePrincipalPolicyInput{PolicySourceArn: aws.String("arn:aws:iam::" + account + ":role/ghost"), ActionNames: []string{"s3:GetObject"}})
	wantCode(t, "simulate a missing role", err, "NoSuchEntity")
}

// A role session may call IAM only as far as its identity policies allow.
func TestIAMIdentityPolicyGuardsRoleSessions(t *testing.T) {
	inst := servertest.Start(t)
	ic, sc := adminClients(inst)
	c := ctx(t)
	createRole(t, ic, "noperm", trustAccount())
	createRole(t, ic, "creator", trustAccount())
	must[*iam.PutRolePolicyOutput](t, "PutRolePolicy")(ic.PutRolePolicy(c, &iam.PutRolePolicyInput{RoleName: aws.String("creator"), PolicyName: aws.String("create"),
		PolicyDocument: aws.String(policyDoc(stmt("Allow", []string{"iam:CreateRole", "iam:GetRole"}, "arn:aws:iam::"+account+":role/made-*")))}))
	sessionIAM := func(role string) *iam.Client {
		out := must[*sts.AssumeRoleOutput](t, "AssumeRole "+role)(sc.AssumeRole(c, &sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::" + account + ":role/" + role), RoleSessionName: aws.String("sess")}))
		cr := out.Credentials
		return iam.NewFromConfig(awsConfig(inst, aws.ToString(cr.AccessKeyId), aws.ToString(cr.SecretAccessKey), aws.ToString(cr.SessionToken)))
	}
	create := func(cl *iam.Client, name string) error {
		_, err := cl.CreateRole(c, &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(mustJSON(trustAccount()))})
		return err
	}
	noperm, creator := sessionIAM("noperm"), sessionIAM("creator")
	wantCode(t, "CreateRole without permission", create(noperm, "made-1"), "AccessDenied")
	wantCode(t, "CreateRole outside the allowed resource", create(creator, "other"), "AccessDenied")
	if err := create(creator, "made-1"); err != nil {
		t.Fatalf("CreateRole with permission: %v", err)
	}
	_, err := creator.GetRole(c, &iam.GetRoleInput{RoleName: aws.String("made-1")})
	if err != nil {
		t.Errorf("GetRole with permission: %v", err)
	}
	_, err = creator.ListRoles(c, &iam.ListRolesInput{})
	wantCode(t, "ListRoles not granted", err, "AccessDenied")
	// Only the permitted create happened.
	var names []string
	for _, r := range must[*iam.ListRolesOutput](t, "ListRoles")(ic.ListRoles(c, &iam.ListRolesInput{})).Roles {
		names = append(names, aws.ToString(r.RoleName))
	}
	sort.Strings(names)
	if !slices.Equal(names, []string{"creator", "made-1", "noperm"}) {
		t.Errorf("roles = %v", names)
	}
}
