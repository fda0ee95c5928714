package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/podid/podid/internal/server"
)

// Names of what the fixture creates.
const (
	ClusterName    = "bench"
	AssumeRoleName = "bench-assume"
	WebRoleName    = "bench-web"
	PodRoleName    = "bench-pod"
	SessionName    = "bench"
)

// Fixture is what the STS and EKS Auth scenarios need on one endpoint.
type Fixture struct {
	URL        string
	Account    string
	Admin      aws.Credentials
	AssumeRole string // role ARN for AssumeRole (trusts the account root)
	WebRole    string // role ARN for AssumeRoleWithWebIdentity
	PodRole    string // role ARN of the Pod Identity association
	WebToken   string // the IRSA token, reused as the SDK rereads one file
	// AssociationID is the Pod Identity association SetupPodid created.
	AssociationID string
}

// MotoAccount is moto's default account.
const MotoAccount = "123456789012"

func trust(principal map[string]any, actions []string, cond map[string]any) string {
	st := map[string]any{"Effect": "Allow", "Principal": principal, "Action": actions}
	if cond != nil {
		st["Condition"] = cond
	}
	b, _ := json.Marshal(map[string]any{"Version": "2012-10-17", "Statement": []any{st}})
	return string(b)
}

func iamClient(url string, creds aws.Credentials) *iam.Client {
	return iam.New(iam.Options{Region: Region, BaseEndpoint: aws.String(url), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken)})
}

// setupSTS creates, through the real aws-sdk-go-v2 IAM client, the role
// AssumeRole targets, the OIDC provider and the web-identity role.
func setupSTS(ctx context.Context, f *Fixture, is *Issuer) error {
	ic := iamClient(f.URL, f.Admin)
	out, err := ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(AssumeRoleName),
		AssumeRolePolicyDocument: aws.String(trust(map[string]any{"AWS": "arn:aws:iam::" + f.Account + ":root"}, []string{"sts:AssumeRole"}, nil))})
	if err != nil {
		return fmt.Errorf("create role %s: %w", AssumeRoleName, err)
	}
	f.AssumeRole = aws.ToString(out.Role.Arn)

	p, err := ic.CreateOpenIDConnectProvider(ctx, &iam.CreateOpenIDConnectProviderInput{Url: aws.String(is.URL),
		ClientIDList: []string{STSAudience}, ThumbprintList: []string{strings.Repeat("0", 40)}})
	if err != nil {
		return fmt.Errorf("create OIDC provider: %w", err)
	}
	cond := map[string]any{"StringEquals": map[string]any{
		is.Host() + ":sub": "system:serviceaccount:" + BenchNamespace + ":" + BenchSA,
		is.Host() + ":aud": STSAudience,
	}}
	out, err = ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(WebRoleName),
		AssumeRolePolicyDocument: aws.String(trust(map[string]any{"Federated": aws.ToString(p.OpenIDConnectProviderArn)}, []string{"sts:AssumeRoleWithWebIdentity"}, cond))})
	if err != nil {
		return fmt.Errorf("create role %s: %w", WebRoleName, err)
	}
	f.WebRole = aws.ToString(out.Role.Arn)
	f.WebToken, err = is.WebIdentityToken()
	return err
}

// SetupPodid prepares a podid server: the STS roles, then a cluster whose
// inline JWKS holds clusterKey, a role trusting pods.eks.amazonaws.com and
// an association created with the real aws-sdk-go-v2 EKS client.
func SetupPodid(ctx context.Context, url string, admin aws.Credentials, is *Issuer, clusterKey *KeyPair) (*Fixture, error) {
	f := &Fixture{URL: url, Account: BenchAccount, Admin: admin}
	if err := setupSTS(ctx, f, is); err != nil {
		return nil, err
	}
	ic := iamClient(url, admin)
	out, err := ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String(PodRoleName),
		AssumeRolePolicyDocument: aws.String(trust(map[string]any{"Service": PodAudience}, []string{"sts:AssumeRole", "sts:TagSession"}, nil))})
	if err != nil {
		return nil, fmt.Errorf("create role %s: %w", PodRoleName, err)
	}
	f.PodRole = aws.ToString(out.Role.Arn)

	jwks, _ := json.Marshal(clusterKey.JWKS())
	body, _ := json.Marshal(map[string]any{"name": ClusterName, "issuer": ClusterIssuer, "jwks": json.RawMessage(jwks)})
	req, err := NewSigner(admin).JSON(ctx, url, "/podid/clusters", "eks", body)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("register cluster: %w", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("register cluster: %s: %s", resp.Status, b)
	}

	ec := eks.New(eks.Options{Region: Region, BaseEndpoint: aws.String(url), RetryMaxAttempts: 1,
		Credentials: credentials.NewStaticCredentialsProvider(admin.AccessKeyID, admin.SecretAccessKey, "")})
	ao, err := ec.CreatePodIdentityAssociation(ctx, &eks.CreatePodIdentityAssociationInput{
		ClusterName: aws.String(ClusterName), Namespace: aws.String(BenchNamespace),
		ServiceAccount: aws.String(BenchSA), RoleArn: aws.String(f.PodRole),
	})
	if err != nil {
		return nil, fmt.Errorf("create pod identity association: %w", err)
	}
	f.AssociationID = aws.ToString(ao.Association.AssociationId)
	return f, nil
}

// SetupMoto creates the same role and OIDC provider in moto_server, which
// accepts any credentials and never checks signatures or tokens.
func SetupMoto(ctx context.Context, url string, is *Issuer, webToken string) (*Fixture, error) {
	f := &Fixture{URL: url, Account: MotoAccount, Admin: aws.Credentials{AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}}
	if err := setupSTS(ctx, f, is); err != nil {
		return nil, err
	}
	f.WebToken = webToken // the same bytes podid verifies
	return f, nil
}

// readAdminCredentials reads the key pair of a data dir's admin-credentials.
func readAdminCredentials(dataDir string) (aws.Credentials, error) {
	id, secret, err := server.ReadAdminCredentials(filepath.Join(dataDir, "admin-credentials"))
	return aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}, err
}
