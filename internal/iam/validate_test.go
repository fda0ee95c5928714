package iam

import (
	"strconv"
	"strings"
	"testing"
)

// TestBadInputs sends invalid requests against a populated store and checks
// the error code and that nothing was written.
func TestBadInputs(t *testing.T) {
	e := newEnv(t)
	e.must(t, "CreateRole", "RoleName", "app", "AssumeRolePolicyDocument", trustDoc)
	e.must(t, "PutRolePolicy", "RoleName", "app", "PolicyName", "inline", "PolicyDocument", s3Doc)
	e.must(t, "CreatePolicy", "PolicyName", "m", "PolicyDocument", s3Doc)
	e.must(t, "AttachRolePolicy", "RoleName", "app", "PolicyArn", policyARN("m"))
	e.must(t, "CreateRole", "RoleName", "tagged", "AssumeRolePolicyDocument", trustDoc)
	for i := range 49 {
		e.must(t, "TagRole", "RoleName", "tagged", "Tags.member.1.Key", "k"+strconv.Itoa(i), "Tags.member.1.Value", "v")
	}
	oidc := "arn:aws:iam::123456789012:oidc-provider/oidc.example.com"
	e.must(t, "CreateOpenIDConnectProvider", "Url", "https://oidc.example.com", "ClientIDList.member.1", "sts.amazonaws.com")

	identityWithPrincipal := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}]}`
	trustWithResource := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole","Resource":"*"}]}`
	bigTrust := `{"Version":"2012-10-17","Statement":[{"Sid":"` + strings.Repeat("A", 2100) + `","Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
	tooManyTags := func(n int, prefix string) []string {
		var kv []string
		for i := 1; i <= n; i++ {
			p := "Tags.member." + strconv.Itoa(i)
			kv = append(kv, p+".Key", prefix+strconv.Itoa(i), p+".Value", "v")
		}
		return kv
	}
	role := func(extra ...string) []string {
		return append([]string{"RoleName", "new", "AssumeRolePolicyDocument", trustDoc}, extra...)
	}
	members := func(param string, n int, value func(int) string) []string {
		var kv []string
		for i := 1; i <= n; i++ {
			kv = append(kv, param+".member."+strconv.Itoa(i), value(i))
		}
		return kv
	}

	cases := []struct {
		name    string
		action  string
		kv      []string
		code    string
		status  int
		message string // substring, when it matters
	}{
		{"role name missing", "CreateRole", []string{"AssumeRolePolicyDocument", trustDoc}, "ValidationError", 400, "Value null at 'roleName'"},
		{"role name too long", "CreateRole", []string{"RoleName", strings.Repeat("a", 65), "AssumeRolePolicyDocument", trustDoc}, "ValidationError", 400, "at 'roleName' failed to satisfy constraint: Member must have length less than or equal to 64"},
		{"role name bad char", "CreateRole", []string{"RoleName", "a/b", "AssumeRolePolicyDocument", trustDoc}, "ValidationError", 400, "1 validation error detected: Value 'a/b' at 'roleName'"},
		{"role name empty", "CreateRole", []string{"RoleName", "", "AssumeRolePolicyDocument", trustDoc}, "ValidationError", 400, ""},
		{"path without slashes", "CreateRole", role("Path", "team"), "ValidationError", 400, "at 'path'"},
		{"path without trailing slash", "CreateRole", role("Path", "/team"), "ValidationError", 400, "at 'path'"},
		{"path too long", "CreateRole", role("Path", "/"+strings.Repeat("a", 511)+"/"), "ValidationError", 400, "at 'path'"},
		{"trust policy missing", "CreateRole", []string{"RoleName", "new"}, "ValidationError", 400, "assumeRolePolicyDocument"},
		{"trust policy not JSON", "CreateRole", []string{"RoleName", "new", "AssumeRolePolicyDocument", "{nope"}, "MalformedPolicyDocument", 400, ""},
		{"trust policy with Resource", "CreateRole", []string{"RoleName", "new", "AssumeRolePolicyDocument", trustWithResource}, "MalformedPolicyDocument", 400, ""},
		{"trust policy too large", "CreateRole", []string{"RoleName", "new", "AssumeRolePolicyDocument", bigTrust}, "LimitExceeded", 409, "ACLSizePerRole: 2048"},
		{"session duration too short", "CreateRole", role("MaxSessionDuration", "3599"), "ValidationError", 400, "maxSessionDuration"},
		{"session duration too long", "CreateRole", role("MaxSessionDuration", "43201"), "ValidationError", 400, "maxSessionDuration"},
		{"session duration not a number", "CreateRole", role("MaxSessionDuration", "1h"), "ValidationError", 400, "maxSessionDuration"},
		{"description too long", "CreateRole", role("Description", strings.Repeat("d", 1001)), "ValidationError", 400, "at 'description'"},
		{"description bad character", "CreateRole", role("Description", "bell\a"), "ValidationError", 400, "at 'description'"},
		{"too many tags", "CreateRole", role(tooManyTags(51, "k")...), "ValidationError", 400, "at 'tags'"},
		{"duplicate tag keys", "CreateRole", role("Tags.member.1.Key", "Env", "Tags.member.1.Value", "a", "Tags.member.2.Key", "env", "Tags.member.2.Value", "b"), "InvalidInput", 400, "Duplicate tag keys"},
		{"reserved tag prefix", "CreateRole", role("Tags.member.1.Key", "AWS:thing", "Tags.member.1.Value", "a"), "InvalidInput", 400, "aws:"},
		{"tag key too long", "CreateRole", role("Tags.member.1.Key", strings.Repeat("k", 129), "Tags.member.1.Value", "a"), "ValidationError", 400, "tags.1.member.key"},
		{"tag key missing", "CreateRole", role("Tags.member.1.Value", "a"), "ValidationError", 400, "tags.1.member.key"},
		{"tag value too long", "CreateRole", role("Tags.member.1.Key", "k", "Tags.member.1.Value", strings.Repeat("v", 257)), "ValidationError", 400, "tags.1.member.value"},
		{"permissions boundary", "CreateRole", role("PermissionsBoundary", policyARN("m")), "InvalidInput", 400, "not supported"},
		{"role exists", "CreateRole", []string{"RoleName", "App", "AssumeRolePolicyDocument", trustDoc}, "EntityAlreadyExists", 409, ""},
		{"update duration out of range", "UpdateRole", []string{"RoleName", "app", "MaxSessionDuration", "100"}, "ValidationError", 400, ""},
		{"update missing role", "UpdateRole", []string{"RoleName", "ghost", "Description", "x"}, "NoSuchEntity", 404, "The role with name ghost cannot be found."},
		{"update trust malformed", "UpdateAssumeRolePolicy", []string{"RoleName", "app", "PolicyDocument", `{"Statement":[]}`}, "MalformedPolicyDocument", 400, ""},
		{"update trust missing role", "UpdateAssumeRolePolicy", []string{"RoleName", "ghost", "PolicyDocument", trustDoc}, "NoSuchEntity", 404, ""},
		{"tag past quota", "TagRole", []string{"RoleName", "tagged", "Tags.member.1.Key", "x1", "Tags.member.1.Value", "", "Tags.member.2.Key", "x2", "Tags.member.2.Value", ""}, "LimitExceeded", 409, "TagsPerRole"},
		{"tag without tags", "TagRole", []string{"RoleName", "app"}, "ValidationError", 400, "tags"},
		{"tag missing role", "TagRole", []string{"RoleName", "ghost", "Tags.member.1.Key", "a", "Tags.member.1.Value", "b"}, "NoSuchEntity", 404, ""},
		{"untag without keys", "UntagRole", []string{"RoleName", "app"}, "ValidationError", 400, "tagKeys"},
		{"inline policy with Principal", "PutRolePolicy", []string{"RoleName", "app", "PolicyName", "p", "PolicyDocument", identityWithPrincipal}, "MalformedPolicyDocument", 400, ""},
		{"inline policy name too long", "PutRolePolicy", []string{"RoleName", "app", "PolicyName", strings.Repeat("p", 129), "PolicyDocument", s3Doc}, "ValidationError", 400, "policyName"},
		{"inline policy document missing", "PutRolePolicy", []string{"RoleName", "app", "PolicyName", "p"}, "ValidationError", 400, "policyDocument"},
		{"inline policy missing role", "PutRolePolicy", []string{"RoleName", "ghost", "PolicyName", "p", "PolicyDocument", s3Doc}, "NoSuchEntity", 404, ""},
		{"delete role with policies", "DeleteRole", []string{"RoleName", "app"}, "DeleteConflict", 409, "must detach all policies first"},
		{"managed policy too large", "CreatePolicy", []string{"PolicyName", "big", "PolicyDocument", bigIdentityDoc(6300)}, "LimitExceeded", 409, "PolicySize: 6144"},
		{"managed policy malformed", "CreatePolicy", []string{"PolicyName", "bad", "PolicyDocument", `{"Version":"2012-10-17","Statement":{"Effect":"Maybe","Action":"s3:*","Resource":"*"}}`}, "MalformedPolicyDocument", 400, ""},
		{"managed policy bad name", "CreatePolicy", []string{"PolicyName", "a b", "PolicyDocument", s3Doc}, "ValidationError", 400, "policyName"},
		{"managed policy exists", "CreatePolicy", []string{"PolicyName", "m", "PolicyDocument", s3Doc}, "EntityAlreadyExists", 409, ""},
		{"policy ARN not an ARN", "GetPolicy", []string{"PolicyArn", "not-an-arn-at-all-really"}, "InvalidInput", 400, ""},
		{"policy ARN of a role", "DeletePolicy", []string{"PolicyArn", roleARN("app")}, "InvalidInput", 400, ""},
		{"delete attached policy", "DeletePolicy", []string{"PolicyArn", policyARN("m")}, "DeleteConflict", 409, ""},
		{"attach missing policy", "AttachRolePolicy", []string{"RoleName", "app", "PolicyArn", policyARN("ghost")}, "NoSuchEntity", 404, "does not exist or is not attachable"},
		{"attach AWS managed policy", "AttachRolePolicy", []string{"RoleName", "app", "PolicyArn", "arn:aws:iam::aws:policy/ReadOnlyAccess"}, "NoSuchEntity", 404, ""},
		{"attach to missing role", "AttachRolePolicy", []string{"RoleName", "ghost", "PolicyArn", policyARN("m")}, "NoSuchEntity", 404, "role with name ghost"},
		{"OIDC over http", "CreateOpenIDConnectProvider", []string{"Url", "http://issuer.example.com"}, "InvalidInput", 400, ""},
		{"OIDC with query", "CreateOpenIDConnectProvider", []string{"Url", "https://issuer.example.com/?a=b"}, "InvalidInput", 400, ""},
		{"OIDC with fragment", "CreateOpenIDConnectProvider", []string{"Url", "https://issuer.example.com/#x"}, "InvalidInput", 400, ""},
		{"OIDC URL too long", "CreateOpenIDConnectProvider", []string{"Url", "https://" + strings.Repeat("a", 248)}, "ValidationError", 400, "at 'url'"},
		{"OIDC URL missing", "CreateOpenIDConnectProvider", nil, "ValidationError", 400, "Value null at 'url'"},
		{"OIDC thumbprint not hex", "CreateOpenIDConnectProvider", []string{"Url", "https://issuer.example.com", "ThumbprintList.member.1", strings.Repeat("g", 40)}, "ValidationError", 400, "thumbprintList"},
		{"OIDC too many thumbprints", "CreateOpenIDConnectProvider", append([]string{"Url", "https://issuer.example.com"}, members("ThumbprintList", 6, func(i int) string { return strings.Repeat(strconv.Itoa(i), 40) })...), "ValidationError", 400, "thumbprintList"},
		{"OIDC too many client IDs", "CreateOpenIDConnectProvider", append([]string{"Url", "https://issuer.example.com"}, members("ClientIDList", 101, strconv.Itoa)...), "LimitExceeded", 409, ""},
		{"OIDC client ID too long", "CreateOpenIDConnectProvider", []string{"Url", "https://issuer.example.com", "ClientIDList.member.1", strings.Repeat("c", 256)}, "ValidationError", 400, "clientIDList"},
		{"OIDC exists", "CreateOpenIDConnectProvider", []string{"Url", "https://oidc.example.com"}, "EntityAlreadyExists", 409, ""},
		{"OIDC add without client ID", "AddClientIDToOpenIDConnectProvider", []string{"OpenIDConnectProviderArn", oidc}, "ValidationError", 400, "clientID"},
		{"OIDC bad ARN", "DeleteOpenIDConnectProvider", []string{"OpenIDConnectProviderArn", roleARN("app")}, "InvalidInput", 400, ""},
		{"MaxItems zero", "ListRoles", []string{"MaxItems", "0"}, "ValidationError", 400, "maxItems"},
		{"MaxItems too large", "ListPolicies", []string{"MaxItems", "1001"}, "ValidationError", 400, "maxItems"},
		{"ListPolicies bad scope", "ListPolicies", []string{"Scope", "Mine"}, "ValidationError", 400, "scope"},
		{"ListPolicies bad OnlyAttached", "ListPolicies", []string{"OnlyAttached", "yes"}, "ValidationError", 400, "onlyAttached"},
		{"bad path prefix", "ListRoles", []string{"PathPrefix", "team"}, "ValidationError", 400, "pathPrefix"},
		{"simulate without actions", "SimulatePrincipalPolicy", []string{"PolicySourceArn", roleARN("app")}, "ValidationError", 400, "actionNames"},
		{"simulate other account", "SimulatePrincipalPolicy", []string{"PolicySourceArn", "arn:aws:iam::999999999999:role/app", "ActionNames.member.1", "s3:GetObject"}, "NoSuchEntity", 404, ""},
		{"simulate wrong path", "SimulatePrincipalPolicy", []string{"PolicySourceArn", "arn:aws:iam::123456789012:role/x/app", "ActionNames.member.1", "s3:GetObject"}, "NoSuchEntity", 404, ""},
		{"simulate malformed input policy", "SimulatePrincipalPolicy", []string{"PolicySourceArn", roleARN("app"), "ActionNames.member.1", "s3:GetObject", "PolicyInputList.member.1", "[]"}, "MalformedPolicyDocument", 400, ""},
		{"simulate bad context type", "SimulatePrincipalPolicy", []string{"PolicySourceArn", roleARN("app"), "ActionNames.member.1", "s3:GetObject", "ContextEntries.member.1.ContextKeyName", "aws:SourceIp", "ContextEntries.member.1.ContextKeyType", "text", "ContextEntries.member.1.ContextKeyValues.member.1", "1.2.3.4"}, "ValidationError", 400, "contextKeyType"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := e.snapshot(t)
			_, err := e.call(c.action, c.kv...)
			ae := wantCode(t, err, c.code, c.status)
			if !strings.Contains(ae.Message, c.message) {
				t.Errorf("message %q does not contain %q", ae.Message, c.message)
			}
			if after := e.snapshot(t); after != before {
				t.Errorf("store changed:\n%s\n---\n%s", before, after)
			}
		})
	}
}
