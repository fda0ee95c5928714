package iam

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsiam "github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/smithy-go"

	"github.com/podid/podid/internal/awsproto"
)

// sdkClient serves e.svc over HTTP the way the server does and returns an
// aws-sdk-go-v2 IAM client pointed at it, so the SDK's own deserializers
// check every element name.
func sdkClient(t *testing.T, e *testEnv) *awsiam.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		reqID := awsproto.NewRequestID()
		f, err := awsproto.ParseForm(body, r.URL.Query())
		if err != nil {
			awsproto.WriteQueryError(w, awsproto.AsError(err), reqID)
			return
		}
		action := f.Get("Action")
		res, err := e.svc.Handle(r.Context(), root, action, f)
		if err != nil {
			awsproto.WriteQueryError(w, awsproto.AsError(err), reqID)
			return
		}
		awsproto.WriteQueryResult(w, action, Namespace, reqID, res)
	}))
	t.Cleanup(srv.Close)
	return awsiam.New(awsiam.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(srv.URL),
		Credentials:      aws.AnonymousCredentials{},
		RetryMaxAttempts: 1,
	})
}

func TestSDKRoundTrip(t *testing.T) {
	e := newEnv(t)
	c := sdkClient(t, e)
	ctx := context.Background()
	created := time.Date(2026, 11, 23, 10, 30, 45, 0, time.UTC)

	cr, err := c.CreateRole(ctx, &awsiam.CreateRoleInput{
		RoleName:                 aws.String("app"),
		Path:                     aws.String("/team/"),
		AssumeRolePolicyDocument: aws.String(trustDoc),
		Description:              aws.String("d"),
		MaxSessionDuration:       aws.Int32(7200),
		Tags:                     []types.Tag{{Key: aws.String("env"), Value: aws.String("prod")}},
	})
	if err != nil {
		t.Fatalf("CreateRole: %v", err)
	}
	r := cr.Role
	if aws.ToString(r.Arn) != "arn:aws:iam::123456789012:role/team/app" || aws.ToString(r.RoleName) != "app" ||
		aws.ToString(r.Path) != "/team/" || len(aws.ToString(r.RoleId)) != 21 || !aws.ToTime(r.CreateDate).Equal(created) ||
		aws.ToString(r.Description) != "d" || aws.ToInt32(r.MaxSessionDuration) != 7200 || len(r.Tags) != 1 {
		t.Errorf("CreateRole role = %+v", r)
	}
	// The SDK hands back the URL-encoded document; callers decode it.
	if doc, _ := url.QueryUnescape(aws.ToString(r.AssumeRolePolicyDocument)); doc != trustDoc {
		t.Errorf("AssumeRolePolicyDocument = %q", aws.ToString(r.AssumeRolePolicyDocument))
	}

	gr, err := c.GetRole(ctx, &awsiam.GetRoleInput{RoleName: aws.String("app")})
	if err != nil || aws.ToString(gr.Role.RoleId) != aws.ToString(r.RoleId) || aws.ToString(gr.Role.Tags[0].Value) != "prod" {
		t.Fatalf("GetRole = %+v, %v", gr, err)
	}
	if _, err := c.UpdateRole(ctx, &awsiam.UpdateRoleInput{RoleName: aws.String("app"), MaxSessionDuration: aws.Int32(3600)}); err != nil {
		t.Errorf("UpdateRole: %v", err)
	}
	if _, err := c.UpdateAssumeRolePolicy(ctx, &awsiam.UpdateAssumeRolePolicyInput{RoleName: aws.String("app"), PolicyDocument: aws.String(trustDoc)}); err != nil {
		t.Errorf("UpdateAssumeRolePolicy: %v", err)
	}
	if _, err := c.TagRole(ctx, &awsiam.TagRoleInput{RoleName: aws.String("app"), Tags: []types.Tag{{Key: aws.String("a"), Value: aws.String("")}}}); err != nil {
		t.Errorf("TagRole: %v", err)
	}
	if _, err := c.UntagRole(ctx, &awsiam.UntagRoleInput{RoleName: aws.String("app"), TagKeys: []string{"env"}}); err != nil {
		t.Errorf("UntagRole: %v", err)
	}
	lt, err := c.ListRoleTags(ctx, &awsiam.ListRoleTagsInput{RoleName: aws.String("app")})
	if err != nil || len(lt.Tags) != 1 || aws.ToString(lt.Tags[0].Key) != "a" || lt.IsTruncated {
		t.Errorf("ListRoleTags = %+v, %v", lt, err)
	}

	// Listing with the SDK's paginator exercises IsTruncated and Marker.
	for _, n := range []string{"b", "c", "d"} {
		if _, err := c.CreateRole(ctx, &awsiam.CreateRoleInput{RoleName: aws.String(n), AssumeRolePolicyDocument: aws.String(trustDoc)}); err != nil {
			t.Fatalf("CreateRole %s: %v", n, err)
		}
	}
	var names []string
	pages := 0
	for p := awsiam.NewListRolesPaginator(c, &awsiam.ListRolesInput{MaxItems: aws.Int32(3)}); p.HasMorePages(); {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("ListRoles: %v", err)
		}
		pages++
		for _, r := range out.Roles {
			names = append(names, aws.ToString(r.RoleName))
		}
	}
	if !slices.Equal(names, []string{"app", "b", "c", "d"}) || pages != 2 {
		t.Errorf("ListRoles = %v in %d pages", names, pages)
	}

	if _, err := c.PutRolePolicy(ctx, &awsiam.PutRolePolicyInput{RoleName: aws.String("app"), PolicyName: aws.String("s3"), PolicyDocument: aws.String(s3Doc)}); err != nil {
		t.Fatalf("PutRolePolicy: %v", err)
	}
	grp, err := c.GetRolePolicy(ctx, &awsiam.GetRolePolicyInput{RoleName: aws.String("app"), PolicyName: aws.String("s3")})
	if err != nil || aws.ToString(grp.RoleName) != "app" || aws.ToString(grp.PolicyName) != "s3" {
		t.Errorf("GetRolePolicy = %+v, %v", grp, err)
	} else if doc, _ := url.QueryUnescape(aws.ToString(grp.PolicyDocument)); doc != s3Doc {
		t.Errorf("PolicyDocument = %q", doc)
	}
	lrp, err := c.ListRolePolicies(ctx, &awsiam.ListRolePoliciesInput{RoleName: aws.String("app")})
	if err != nil || !slices.Equal(lrp.PolicyNames, []string{"s3"}) {
		t.Errorf("ListRolePolicies = %+v, %v", lrp, err)
	}

	cp, err := c.CreatePolicy(ctx, &awsiam.CreatePolicyInput{PolicyName: aws.String("m"), PolicyDocument: aws.String(s3Doc), Description: aws.String("md")})
	if err != nil {
		t.Fatalf("CreatePolicy: %v", err)
	}
	parn := aws.ToString(cp.Policy.Arn)
	if parn != policyARN("m") || !cp.Policy.IsAttachable || aws.ToString(cp.Policy.DefaultVersionId) != "v1" ||
		aws.ToInt32(cp.Policy.AttachmentCount) != 0 || !aws.ToTime(cp.Policy.UpdateDate).Equal(created) {
		t.Errorf("CreatePolicy = %+v", cp.Policy)
	}
	if _, err := c.AttachRolePolicy(ctx, &awsiam.AttachRolePolicyInput{RoleName: aws.String("app"), PolicyArn: aws.String(parn)}); err != nil {
		t.Fatalf("AttachRolePolicy: %v", err)
	}
	gp, err := c.GetPolicy(ctx, &awsiam.GetPolicyInput{PolicyArn: aws.String(parn)})
	if err != nil || aws.ToInt32(gp.Policy.AttachmentCount) != 1 || aws.ToString(gp.Policy.Description) != "md" {
		t.Errorf("GetPolicy = %+v, %v", gp, err)
	}
	lp, err := c.ListPolicies(ctx, &awsiam.ListPoliciesInput{Scope: types.PolicyScopeTypeLocal, OnlyAttached: true})
	if err != nil || len(lp.Policies) != 1 || aws.ToString(lp.Policies[0].PolicyName) != "m" {
		t.Errorf("ListPolicies = %+v, %v", lp, err)
	}
	la, err := c.ListAttachedRolePolicies(ctx, &awsiam.ListAttachedRolePoliciesInput{RoleName: aws.String("app")})
	if err != nil || len(la.AttachedPolicies) != 1 || aws.ToString(la.AttachedPolicies[0].PolicyArn) != parn {
		t.Errorf("ListAttachedRolePolicies = %+v, %v", la, err)
	}

	sim, err := c.SimulatePrincipalPolicy(ctx, &awsiam.SimulatePrincipalPolicyInput{
		PolicySourceArn: r.Arn,
		ActionNames:     []string{"s3:GetObject", "s3:PutObject"},
		ResourceArns:    []string{"arn:aws:s3:::bucket/k"},
		ContextEntries: []types.ContextEntry{{
			ContextKeyName: aws.String("aws:SourceIp"), ContextKeyType: types.ContextKeyTypeEnumIp, ContextKeyValues: []string{"10.0.0.1"},
		}},
	})
	if err != nil || len(sim.EvaluationResults) != 2 {
		t.Fatalf("SimulatePrincipalPolicy = %+v, %v", sim, err)
	}
	if er := sim.EvaluationResults[0]; er.EvalDecision != types.PolicyEvaluationDecisionTypeAllowed ||
		aws.ToString(er.EvalActionName) != "s3:GetObject" || aws.ToString(er.EvalResourceName) != "arn:aws:s3:::bucket/k" ||
		len(er.MatchedStatements) != 2 || aws.ToString(er.MatchedStatements[0].SourcePolicyId) != "s3" {
		t.Errorf("evaluation 0 = %+v", er)
	}
	if er := sim.EvaluationResults[1]; er.EvalDecision != types.PolicyEvaluationDecisionTypeImplicitDeny {
		t.Errorf("evaluation 1 = %+v", er)
	}

	tp := "9e99a48a9960b14926bb7f3b02e22da2b0ab7280"
	co, err := c.CreateOpenIDConnectProvider(ctx, &awsiam.CreateOpenIDConnectProviderInput{
		Url: aws.String("https://oidc.example.com/id/X"), ClientIDList: []string{"sts.amazonaws.com"}, ThumbprintList: []string{tp},
	})
	if err != nil {
		t.Fatalf("CreateOpenIDConnectProvider: %v", err)
	}
	oarn := co.OpenIDConnectProviderArn
	if aws.ToString(oarn) != "arn:aws:iam::123456789012:oidc-provider/oidc.example.com/id/X" {
		t.Errorf("provider ARN = %q", aws.ToString(oarn))
	}
	if _, err := c.AddClientIDToOpenIDConnectProvider(ctx, &awsiam.AddClientIDToOpenIDConnectProviderInput{OpenIDConnectProviderArn: oarn, ClientID: aws.String("x")}); err != nil {
		t.Errorf("AddClientID: %v", err)
	}
	if _, err := c.RemoveClientIDFromOpenIDConnectProvider(ctx, &awsiam.RemoveClientIDFromOpenIDConnectProviderInput{OpenIDConnectProviderArn: oarn, ClientID: aws.String("sts.amazonaws.com")}); err != nil {
		t.Errorf("RemoveClientID: %v", err)
	}
	gop, err := c.GetOpenIDConnectProvider(ctx, &awsiam.GetOpenIDConnectProviderInput{OpenIDConnectProviderArn: oarn})
	if err != nil || aws.ToString(gop.Url) != "oidc.example.com/id/X" || !slices.Equal(gop.ClientIDList, []string{"x"}) ||
		!slices.Equal(gop.ThumbprintList, []string{tp}) || !aws.ToTime(gop.CreateDate).Equal(created) {
		t.Errorf("GetOpenIDConnectProvider = %+v, %v", gop, err)
	}
	lo, err := c.ListOpenIDConnectProviders(ctx, &awsiam.ListOpenIDConnectProvidersInput{})
	if err != nil || len(lo.OpenIDConnectProviderList) != 1 || aws.ToString(lo.OpenIDConnectProviderList[0].Arn) != aws.ToString(oarn) {
		t.Errorf("ListOpenIDConnectProviders = %+v, %v", lo, err)
	}
	if _, err := c.DeleteOpenIDConnectProvider(ctx, &awsiam.DeleteOpenIDConnectProviderInput{OpenIDConnectProviderArn: oarn}); err != nil {
		t.Errorf("DeleteOpenIDConnectProvider: %v", err)
	}

	// Errors arrive as the SDK's typed errors.
	_, err = c.DeleteRole(ctx, &awsiam.DeleteRoleInput{RoleName: aws.String("app")})
	var conflict *types.DeleteConflictException
	if !errors.As(err, &conflict) {
		t.Errorf("DeleteRole with policies: %v", err)
	}
	_, err = c.GetRole(ctx, &awsiam.GetRoleInput{RoleName: aws.String("ghost")})
	var nse *types.NoSuchEntityException
	if !errors.As(err, &nse) {
		t.Errorf("GetRole ghost: %v", err)
	}
	_, err = c.CreateRole(ctx, &awsiam.CreateRoleInput{RoleName: aws.String("bad"), AssumeRolePolicyDocument: aws.String("{")})
	var mpd *types.MalformedPolicyDocumentException
	if !errors.As(err, &mpd) {
		t.Errorf("CreateRole malformed: %v", err)
	}
	_, err = c.CreateRole(ctx, &awsiam.CreateRoleInput{RoleName: aws.String("bad/name"), AssumeRolePolicyDocument: aws.String(trustDoc)})
	var api smithy.APIError
	if !errors.As(err, &api) || api.ErrorCode() != "ValidationError" {
		t.Errorf("CreateRole bad name: %v", err)
	}

	// Tear everything down through the SDK.
	if _, err := c.DetachRolePolicy(ctx, &awsiam.DetachRolePolicyInput{RoleName: aws.String("app"), PolicyArn: aws.String(parn)}); err != nil {
		t.Errorf("DetachRolePolicy: %v", err)
	}
	if _, err := c.DeletePolicy(ctx, &awsiam.DeletePolicyInput{PolicyArn: aws.String(parn)}); err != nil {
		t.Errorf("DeletePolicy: %v", err)
	}
	if _, err := c.DeleteRolePolicy(ctx, &awsiam.DeleteRolePolicyInput{RoleName: aws.String("app"), PolicyName: aws.String("s3")}); err != nil {
		t.Errorf("DeleteRolePolicy: %v", err)
	}
	if _, err := c.DeleteRole(ctx, &awsiam.DeleteRoleInput{RoleName: aws.String("app")}); err != nil {
		t.Errorf("DeleteRole: %v", err)
	}
}
