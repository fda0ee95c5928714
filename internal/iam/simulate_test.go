package iam

import (
	"slices"
	"testing"
)

func TestSimulatePrincipalPolicy(t *testing.T) {
	e := newEnv(t)
	e.must(t, "CreateRole", "RoleName", "app", "AssumeRolePolicyDocument", trustDoc)
	e.must(t, "PutRolePolicy", "RoleName", "app", "PolicyName", "s3read", "PolicyDocument", s3Doc)
	e.must(t, "PutRolePolicy", "RoleName", "app", "PolicyName", "tagged", "PolicyDocument",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:PutObject","Resource":"*","Condition":{"StringEquals":{"aws:RequestTag/team":"a"}}}]}`)
	e.must(t, "CreatePolicy", "PolicyName", "no-delete", "PolicyDocument",
		`{"Version":"2012-10-17","Statement":[{"Effect":"Deny","Action":"s3:DeleteObject","Resource":"*"},{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::other/*"}]}`)
	e.must(t, "AttachRolePolicy", "RoleName", "app", "PolicyArn", policyARN("no-delete"))

	simulate := func(kv ...string) []EvaluationResult {
		t.Helper()
		args := append([]string{"PolicySourceArn", roleARN("app")}, kv...)
		res := e.must(t, "SimulatePrincipalPolicy", args...).(*SimulatePrincipalPolicyResult)
		if res.IsTruncated {
			t.Errorf("IsTruncated")
		}
		return res.EvaluationResults
	}

	rs := simulate("ActionNames.member.1", "s3:GetObject", "ActionNames.member.2", "s3:DeleteObject",
		"ActionNames.member.3", "s3:PutObject", "ActionNames.member.4", "s3:ListBucket",
		"ResourceArns.member.1", "arn:aws:s3:::bucket/key")
	want := []EvaluationResult{
		{"s3:GetObject", "arn:aws:s3:::bucket/key", "allowed", []Statement{{"s3read", "role"}}, []string{}},
		{"s3:DeleteObject", "arn:aws:s3:::bucket/key", "explicitDeny", []Statement{{"no-delete", "user-managed"}}, []string{}},
		{"s3:PutObject", "arn:aws:s3:::bucket/key", "implicitDeny", []Statement{}, []string{"aws:RequestTag/team"}},
		{"s3:ListBucket", "arn:aws:s3:::bucket/key", "implicitDeny", []Statement{}, []string{}},
	}
	checkResults(t, rs, want)

	// With the context key supplied, the conditional statement allows.
	rs = simulate("ActionNames.member.1", "s3:PutObject", "ResourceArns.member.1", "arn:aws:s3:::bucket/key",
		"ContextEntries.member.1.ContextKeyName", "aws:RequestTag/team",
		"ContextEntries.member.1.ContextKeyType", "string",
		"ContextEntries.member.1.ContextKeyValues.member.1", "a")
	checkResults(t, rs, []EvaluationResult{
		{"s3:PutObject", "arn:aws:s3:::bucket/key", "allowed", []Statement{{"tagged", "role"}}, []string{}},
	})

	// Extra policies from PolicyInputList take part; the resource defaults to "*".
	rs = simulate("ActionNames.member.1", "s3:ListBucket",
		"PolicyInputList.member.1", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:List*","Resource":"*"}]}`)
	checkResults(t, rs, []EvaluationResult{
		{"s3:ListBucket", "*", "allowed", []Statement{{"PolicyInputList.1", "IAM Policy"}}, []string{}},
	})

	res := &SimulatePrincipalPolicyResult{EvaluationResults: want[1:3]}
	wantPaths(t, res, "EvaluationResults", "EvaluationResults/member", "EvaluationResults/member/EvalActionName",
		"EvaluationResults/member/EvalResourceName", "EvaluationResults/member/EvalDecision",
		"EvaluationResults/member/MatchedStatements", "EvaluationResults/member/MatchedStatements/member",
		"EvaluationResults/member/MatchedStatements/member/SourcePolicyId",
		"EvaluationResults/member/MatchedStatements/member/SourcePolicyType",
		"EvaluationResults/member/MissingContextValues", "EvaluationResults/member/MissingContextValues/member",
		"IsTruncated")
}

func checkResults(t *testing.T, got, want []EvaluationResult) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d results, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.EvalActionName != w.EvalActionName || g.EvalResourceName != w.EvalResourceName || g.EvalDecision != w.EvalDecision ||
			!slices.Equal(g.MatchedStatements, w.MatchedStatements) || !slices.Equal(g.MissingContextValues, w.MissingContextValues) {
			t.Errorf("result %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
}
