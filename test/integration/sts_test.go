package integration

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	ststypes "github.com/aws/aws-sdk-go-v2/service/sts/types"
	"github.com/aws/smithy-go"

	"github.com/podid/podid/internal/server/servertest"
)

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func createRole(t *testing.T, ic *iam.Client, name string, trust any) string {
	t.Helper()
	out, err := ic.CreateRole(ctx(t), &iam.CreateRoleInput{RoleName: aws.String(name), AssumeRolePolicyDocument: aws.String(mustJSON(trust))})
	if err != nil {
		t.Fatalf("CreateRole %s: %v", name, err)
	}
	return aws.ToString(out.Role.Arn)
}

func TestGetCallerIdentityAsRoot(t *testing.T) {
	inst := servertest.Start(t)
	_, sc := adminClients(inst)
	out, err := sc.GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := aws.ToString(out.Arn), "arn:aws:iam::111122223333:root"; got != want {
		t.Errorf("Arn = %q, want %q", got, want)
	}
	if aws.ToString(out.Account) != "111122223333" {
		t.Errorf("Account = %q", aws.ToString(out.Account))
	}
}

func TestAssumeRoleThenCallerIdentity(t *testing.T) {
	inst := servertest.Start(t)
	ic, sc := adminClients(inst)
	roleARN := createRole(t, ic, "app", map[string]any{
		"Version":   "2012-10-17",
		"Statement": []any{map[string]any{"Effect": "Allow", "Principal": map[string]any{"AWS": "arn:aws:iam::111122223333:root"}, "Action": "sts:AssumeRole"}},
	})
	out, err := sc.AssumeRole(ctx(t), &sts.AssumeRoleInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("s1"), DurationSeconds: aws.Int32(900)})
	if err != nil {
		t.Fatal(err)
	}
	c := out.Credentials
	if !strings.HasPrefix(aws.ToString(c.AccessKeyId), "ASIA") || len(aws.ToString(c.AccessKeyId)) != 20 || len(aws.ToString(c.SecretAccessKey)) != 40 {
		t.Errorf("credentials shape: %q / %d-char secret", aws.ToString(c.AccessKeyId), len(aws.ToString(c.SecretAccessKey)))
	}
	sess := sts.NewFromConfig(awsConfig(inst, aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken)))
	who, err := sess.GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := aws.ToString(who.Arn), "arn:aws:sts::111122223333:assumed-role/app/s1"; got != want {
		t.Errorf("Arn = %q, want %q", got, want)
	}
	if got := aws.ToString(who.UserId); !strings.HasPrefix(got, "AROA") || !strings.HasSuffix(got, ":s1") {
		t.Errorf("UserId = %q", got)
	}

	// A tampered session token is refused.
	bad := sts.NewFromConfig(awsConfig(inst, aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken)+"x"))
	if _, err := bad.GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{}); apiCode(err) != "InvalidClientTokenId" {
		t.Errorf("tampered token: err = %v, want InvalidClientTokenId", err)
	}
	// Chaining past one hour is refused (the role may assume itself).
	if _, err := ic.PutRolePolicy(ctx(t), &iam.PutRolePolicyInput{RoleName: aws.String("app"), PolicyName: aws.String("self"),
		PolicyDocument: aws.String(mustJSON(map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": roleARN}}}))}); err != nil {
		t.Fatal(err)
	}
	if _, err := sess.AssumeRole(ctx(t), &sts.AssumeRoleInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("s2"), DurationSeconds: aws.Int32(7200)}); apiCode(err) != "ValidationError" {
		t.Errorf("chained 2h: err = %v, want ValidationError", err)
	}
}

// Session tags set on one AssumeRole are principal tags of that session,
// and the next role's trust policy can require them.
func TestSessionTagsReachNextTrustPolicy(t *testing.T) {
	inst := servertest.Start(t)
	ic, sc := adminClients(inst)
	first := createRole(t, ic, "first", map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{map[string]any{"Effect": "Allow", "Principal": map[string]any{"AWS": "111122223333"},
			"Action": []string{"sts:AssumeRole", "sts:TagSession"}}},
	})
	second := createRole(t, ic, "second", map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{map[string]any{"Effect": "Allow", "Principal": map[string]any{"AWS": first},
			"Action":    "sts:AssumeRole",
			"Condition": map[string]any{"StringEquals": map[string]any{"aws:PrincipalTag/team": "blue"}}}},
	})
	if _, err := ic.PutRolePolicy(ctx(t), &iam.PutRolePolicyInput{RoleName: aws.String("first"), PolicyName: aws.String("chain"),
		PolicyDocument: aws.String(mustJSON(map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": second}}}))}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		team     string
		wantCode string
	}{{"blue", ""}, {"red", "AccessDenied"}} {
		out, err := sc.AssumeRole(ctx(t), &sts.AssumeRoleInput{RoleArn: aws.String(first), RoleSessionName: aws.String("tagged"),
			Tags: []ststypes.Tag{{Key: aws.String("team"), Value: aws.String(tc.team)}}})
		if err != nil {
			t.Fatalf("team %s: first AssumeRole: %v", tc.team, err)
		}
		if out.SessionTokenUtilization == nil {
			t.Errorf("SessionTokenUtilization missing with session tags")
		}
		if got, want := aws.ToInt32(out.SessionTokenSize), int32(len(aws.ToString(out.Credentials.SessionToken))); got != want {
			t.Errorf("SessionTokenSize = %d, want the token's length %d", got, want)
		}
		c := out.Credentials
		chain := sts.NewFromConfig(awsConfig(inst, aws.ToString(c.AccessKeyId), aws.ToString(c.SecretAccessKey), aws.ToString(c.SessionToken)))
		_, err = chain.AssumeRole(ctx(t), &sts.AssumeRoleInput{RoleArn: aws.String(second), RoleSessionName: aws.String("chained")})
		if got := apiCode(err); got != tc.wantCode {
			t.Errorf("team %s: second AssumeRole code = %q (%v), want %q", tc.team, got, err, tc.wantCode)
		}
	}
}

func irsaTrust(is *issuer, providerARN, sub string) map[string]any {
	return map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{map[string]any{
			"Effect":    "Allow",
			"Principal": map[string]any{"Federated": providerARN},
			"Action":    "sts:AssumeRoleWithWebIdentity",
			"Condition": map[string]any{"StringEquals": map[string]any{is.Host() + ":sub": sub, is.Host() + ":aud": "sts.amazonaws.com"}},
		}},
	}
}

func setupIRSA(t *testing.T) (*servertest.Instance, *issuer, string) {
	is := newIssuer(t)
	inst := servertest.Start(t, withOIDCCA(is.CAFile))
	ic, _ := adminClients(inst)
	p, err := ic.CreateOpenIDConnectProvider(ctx(t), &iam.CreateOpenIDConnectProviderInput{Url: aws.String(is.URL), ClientIDList: []string{"sts.amazonaws.com"}})
	if err != nil {
		t.Fatalf("CreateOpenIDConnectProvider: %v", err)
	}
	roleARN := createRole(t, ic, "irsa", irsaTrust(is, aws.ToString(p.OpenIDConnectProviderArn), "system:serviceaccount:default:app"))
	return inst, is, roleARN
}

// The SDK's own web-identity provider, configured only through the
// environment, as the webhook configures pods.
func TestWebIdentityRoundTripGoSDK(t *testing.T) {
	inst, is, roleARN := setupIRSA(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(is.token(t, "system:serviceaccount:default:app", []string{"sts.amazonaws.com"})), 0o600); err != nil {
		t.Fatal(err)
	}
	isolateEnv(t)
	t.Setenv("AWS_ROLE_ARN", roleARN)
	t.Setenv("AWS_WEB_IDENTITY_TOKEN_FILE", tokenFile)
	t.Setenv("AWS_ROLE_SESSION_NAME", "pod-session")
	t.Setenv("AWS_ENDPOINT_URL", inst.URL)
	// The SDK resolves credentials before it reads AWS_ENDPOINT_URL, so its
	// web-identity provider would call the real STS: hand it an STS client
	// aimed at podid. Role ARN and token file still come from the env.
	stsAtPodid := sts.NewFromConfig(aws.Config{Region: region, BaseEndpoint: aws.String(inst.URL), RetryMaxAttempts: 1})
	cfg, err := config.LoadDefaultConfig(ctx(t), config.WithWebIdentityRoleCredentialOptions(func(o *stscreds.WebIdentityRoleOptions) {
		o.Client = stsAtPodid
	}))
	if err != nil {
		t.Fatal(err)
	}
	who, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx(t), &sts.GetCallerIdentityInput{})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := aws.ToString(who.Arn), "arn:aws:sts::111122223333:assumed-role/irsa/pod-session"; got != want {
		t.Errorf("Arn = %q, want %q", got, want)
	}
}

func TestWebIdentityTrustRejectsOtherServiceAccount(t *testing.T) {
	inst, is, roleARN := setupIRSA(t)
	_, sc := adminClients(inst)
	out, err := sc.AssumeRoleWithWebIdentity(ctx(t), &sts.AssumeRoleWithWebIdentityInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("xx"),
		WebIdentityToken: aws.String(is.token(t, "system:serviceaccount:default:app", []string{"sts.amazonaws.com"}))})
	if err != nil {
		t.Fatalf("right service account: %v", err)
	}
	if aws.ToString(out.SubjectFromWebIdentityToken) != "system:serviceaccount:default:app" || aws.ToString(out.Audience) != "sts.amazonaws.com" || !strings.Contains(aws.ToString(out.Provider), "oidc-provider/") {
		t.Errorf("response fields: sub=%q aud=%q provider=%q", aws.ToString(out.SubjectFromWebIdentityToken), aws.ToString(out.Audience), aws.ToString(out.Provider))
	}
	_, err = sc.AssumeRoleWithWebIdentity(ctx(t), &sts.AssumeRoleWithWebIdentityInput{RoleArn: aws.String(roleARN), RoleSessionName: aws.String("xx"),
		WebIdentityToken: aws.String(is.token(t, "system:serviceaccount:default:other", []string{"sts.amazonaws.com"}))})
	if apiCode(err) != "AccessDenied" {
		t.Errorf("other service account: err = %v, want AccessDenied", err)
	}
}

// botocore's web-identity provider (AWS_ROLE_ARN + AWS_WEB_IDENTITY_TOKEN_FILE)
// then GetCallerIdentity, through the aws CLI's own library.
func TestWebIdentityRoundTripBotocore(t *testing.T) {
	if err := exec.Command("python3", "-c", "import boto3").Run(); err != nil {
		t.Skip("boto3 not installed:", err)
	}
	inst, is, roleARN := setupIRSA(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(is.token(t, "system:serviceaccount:default:app", []string{"sts.amazonaws.com"})), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("python3", "-c", "import boto3; print(boto3.client('sts').get_caller_identity()['Arn'])")
	cmd.Env = append(cleanEnv(), "AWS_ROLE_ARN="+roleARN, "AWS_WEB_IDENTITY_TOKEN_FILE="+tokenFile, "AWS_ROLE_SESSION_NAME=boto-session",
		"AWS_ENDPOINT_URL="+inst.URL, "AWS_REGION="+region, "AWS_DEFAULT_REGION="+region)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("boto3: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "arn:aws:sts::111122223333:assumed-role/irsa/boto-session"; got != want {
		t.Errorf("boto3 Arn = %q, want %q", got, want)
	}
}

// cleanEnv is the process environment without any AWS_ variable, and with
// config files pointed at nothing, so only what a test sets is used.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "AWS_") {
			env = append(env, kv)
		}
	}
	return append(env, "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null", "AWS_EC2_METADATA_DISABLED=true")
}

func isolateEnv(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	t.Setenv("AWS_CONFIG_FILE", "/dev/null")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_REGION", region)
}
