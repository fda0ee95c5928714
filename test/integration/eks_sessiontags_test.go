package integration

import (
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	jose "github.com/go-jose/go-jose/v4"

	podideks "github.com/podid/podid/internal/eks"
	"github.com/podid/podid/internal/server/servertest"
)

// The six session tags proven by behaviour: a target role whose trust
// policy wants aws:PrincipalTag/kubernetes-namespace = team-a (and one of
// the associations' external IDs) is reached from team-a only, and not at
// all once the association disables session tags.
func TestPodIdentitySessionTagsGateTargetRole(t *testing.T) {
	requireBoto3(t)
	inst, key, issuer := servertest.Start(t), rsaKey(t), "https://tags.issuer.test"
	registerCluster(t, inst, podideks.RegisterClusterInput{Name: "tags", Issuer: issuer,
		JWKS: jwksOf(jose.JSONWebKey{Key: &key.PublicKey, KeyID: "k", Algorithm: "RS256", Use: "sig"})})
	ic, _ := adminClients(inst)
	ec := eksClient(inst)
	firstARN := createRole(t, ic, "first", podIdentityTrust())
	if _, err := ic.PutRolePolicy(ctx(t), &iam.PutRolePolicyInput{RoleName: aws.String("first"), PolicyName: aws.String("chain"),
		PolicyDocument: aws.String(policyDoc(stmt("Allow", []string{"sts:AssumeRole", "sts:TagSession"}, "*")))}); err != nil {
		t.Fatal(err)
	}
	targetARN := createRole(t, ic, "target", trustAccount())

	assoc := map[string]*eks.CreatePodIdentityAssociationOutput{}
	for _, nsSA := range [][2]string{{"team-a", "app"}, {"team-b", "app"}, {"team-a", "other"}} {
		out, err := ec.CreatePodIdentityAssociation(ctx(t), &eks.CreatePodIdentityAssociationInput{ClusterName: aws.String("tags"),
			Namespace: aws.String(nsSA[0]), ServiceAccount: aws.String(nsSA[1]), RoleArn: &firstARN, TargetRoleArn: &targetARN})
		if err != nil {
			t.Fatal(err)
		}
		assoc[nsSA[0]+"/"+nsSA[1]] = out
	}
	externalID := func(k string) string { return aws.ToString(assoc[k].Association.ExternalId) }
	trust := map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{
		"Effect": "Allow", "Principal": map[string]any{"AWS": firstARN}, "Action": []string{"sts:AssumeRole", "sts:TagSession"},
		"Condition": map[string]any{"StringEquals": map[string]any{
			"aws:PrincipalTag/kubernetes-namespace": "team-a",
			// team-b's external ID is allowed too: only its namespace tag keeps it out.
			"sts:ExternalId": []string{externalID("team-a/app"), externalID("team-b/app")},
		}},
	}}}
	if _, err := ic.UpdateAssumeRolePolicy(ctx(t), &iam.UpdateAssumeRolePolicyInput{RoleName: aws.String("target"), PolicyDocument: aws.String(mustJSON(trust))}); err != nil {
		t.Fatal(err)
	}
	token := func(ns, sa string) string {
		return signJWT(t, key, "k", jose.RS256, podClaims(issuer, ns, sa, "pod-"+ns))
	}
	setTags := func(disable bool) {
		t.Helper()
		if _, err := ec.UpdatePodIdentityAssociation(ctx(t), &eks.UpdatePodIdentityAssociationInput{ClusterName: aws.String("tags"),
			AssociationId: assoc["team-a/app"].Association.AssociationId, DisableSessionTags: aws.Bool(disable)}); err != nil {
			t.Fatal(err)
		}
	}

	res := botoAssume(t, inst,
		podCall{Cluster: "tags", Token: token("team-a", "app")},
		podCall{Cluster: "tags", Token: token("team-b", "app")},
		podCall{Cluster: "tags", Token: token("team-a", "other")})
	if res[0].Code != "" {
		t.Fatalf("team-a: %s: %s", res[0].Code, res[0].Message)
	}
	for i, what := range []string{"team-b (namespace tag)", "team-a/other (external ID)"} {
		if r := res[i+1]; r.Code != "AccessDeniedException" || r.Status != 400 || r.Response != nil {
			t.Errorf("%s: %s (HTTP %d) %v, want AccessDeniedException", what, r.Code, r.Status, r.Response)
		}
	}
	c := res[0].credsOf(t)
	who, err := sts.NewFromConfig(awsConfig(inst, c.AccessKeyID, c.SecretAccessKey, c.SessionToken)).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	sessionRE := regexp.MustCompile(`^arn:aws:sts::111122223333:assumed-role/target/eks-tags-pod-team-a-[0-9a-f-]{36}$`)
	if !sessionRE.MatchString(aws.ToString(who.Arn)) {
		t.Errorf("caller = %s, want the target role's session %s", aws.ToString(who.Arn), sessionRE)
	}
	if exp, err := time.Parse(time.RFC3339, res[0].Response["credentials"].(map[string]any)["expiration"].(string)); err != nil || time.Until(exp) > time.Hour+time.Minute {
		t.Errorf("chained credentials expire at %v (%v), want within 1 h", exp, err)
	}

	// The same chain without session tags, then with them again.
	for _, tc := range []struct {
		disable bool
		code    string
	}{{true, "AccessDeniedException"}, {false, ""}} {
		setTags(tc.disable)
		if a := podAssume(t, inst, "tags", token("team-a", "app")); a.code != tc.code || (tc.code == "") != (a.status == 200) {
			t.Errorf("team-a, disableSessionTags=%v: HTTP %d %s: %s, want %q", tc.disable, a.status, a.code, a.body, tc.code)
		}
	}
}

// An association's session policy narrows what the pod's credentials may
// do below the role's own permissions.
func TestPodIdentitySessionPolicy(t *testing.T) {
	inst, key, issuer := servertest.Start(t), rsaKey(t), "https://policy.issuer.test"
	registerCluster(t, inst, podideks.RegisterClusterInput{Name: "pol", Issuer: issuer,
		JWKS: jwksOf(jose.JSONWebKey{Key: &key.PublicKey, KeyID: "k", Algorithm: "RS256", Use: "sig"})})
	ic, _ := adminClients(inst)
	roleARN := createRole(t, ic, "reader", podIdentityTrust())
	if _, err := ic.PutRolePolicy(ctx(t), &iam.PutRolePolicyInput{RoleName: aws.String("reader"), PolicyName: aws.String("iam-read"),
		PolicyDocument: aws.String(policyDoc(stmt("Allow", []string{"iam:ListRoles", "iam:GetRole"}, "*")))}); err != nil {
		t.Fatal(err)
	}
	ec := eksClient(inst)
	for ns, policy := range map[string]*string{"narrowed": aws.String(policyDoc(stmt("Allow", "iam:GetRole", "*"))), "full": nil} {
		if _, err := ec.CreatePodIdentityAssociation(ctx(t), &eks.CreatePodIdentityAssociationInput{ClusterName: aws.String("pol"), Namespace: aws.String(ns),
			ServiceAccount: aws.String("app"), RoleArn: &roleARN, DisableSessionTags: aws.Bool(policy != nil), Policy: policy}); err != nil {
			t.Fatal(err)
		}
	}
	for ns, code := range map[string]string{"narrowed": "AccessDenied", "full": ""} {
		a := podAssume(t, inst, "pol", signJWT(t, key, "k", jose.RS256, podClaims(issuer, ns, "app", "pod")))
		var out struct {
			Credentials struct{ AccessKeyID, SecretAccessKey, SessionToken string }
		}
		if err := json.Unmarshal(a.body, &out); err != nil || a.status != 200 {
			t.Fatalf("%s: HTTP %d %s: %s", ns, a.status, a.code, a.body)
		}
		c := out.Credentials
		pod := iam.NewFromConfig(awsConfig(inst, c.AccessKeyID, c.SecretAccessKey, c.SessionToken))
		if _, err := pod.GetRole(ctx(t), &iam.GetRoleInput{RoleName: aws.String("reader")}); err != nil {
			t.Errorf("%s: GetRole: %v", ns, err)
		}
		_, err := pod.ListRoles(ctx(t), &iam.ListRolesInput{})
		wantCode(t, ns+": ListRoles", err, code)
	}
}
