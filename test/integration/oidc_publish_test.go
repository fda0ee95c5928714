package integration

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/podid/podid/internal/cli"
	podideks "github.com/podid/podid/internal/eks"
	"github.com/podid/podid/internal/server/servertest"
)

// The self-managed IRSA recipe end to end: `podid oidc publish` writes the
// issuer's documents from the stored key set, a plain static HTTPS file
// server hosts them at the issuer URL, and STS AssumeRoleWithWebIdentity
// (podid's own, which fetches discovery and keys like AWS IAM does)
// accepts the cluster's token.
func TestOIDCPublishStaticIssuer(t *testing.T) {
	dir := t.TempDir()
	static := httptest.NewTLSServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(static.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: static.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	inst := servertest.Start(t, withOIDCCA(caFile))
	key := rsaKey(t)
	registerCluster(t, inst, podideks.RegisterClusterInput{Name: "self", Issuer: static.URL,
		JWKS: jwksOf(jose.JSONWebKey{Key: &key.PublicKey, KeyID: "k", Algorithm: "RS256", Use: "sig"})})

	root := cli.NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs([]string{"oidc", "publish", "--cluster", "self", "--out", dir, "--data-dir", inst.DataDir})
	if err := root.ExecuteContext(ctx(t)); err != nil {
		t.Fatalf("podid oidc publish: %v", err)
	}
	var disc struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	b, err := os.ReadFile(filepath.Join(dir, ".well-known", "openid-configuration"))
	if err != nil || json.Unmarshal(b, &disc) != nil || disc.Issuer != static.URL || disc.JWKSURI != static.URL+"/keys.json" {
		t.Fatalf("discovery document %s (%v)", b, err)
	}

	ic, sc := adminClients(inst)
	p, err := ic.CreateOpenIDConnectProvider(ctx(t), &iam.CreateOpenIDConnectProviderInput{Url: aws.String(static.URL), ClientIDList: []string{"sts.amazonaws.com"}})
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{URL: static.URL}
	roleARN := createRole(t, ic, "irsa", irsaTrust(is, aws.ToString(p.OpenIDConnectProviderArn), "system:serviceaccount:default:app"))
	tok := signToken(t, key, "k", jose.RS256, static.URL, "system:serviceaccount:default:app", []string{"sts.amazonaws.com"})
	if _, err := sc.AssumeRoleWithWebIdentity(ctx(t), &sts.AssumeRoleWithWebIdentityInput{RoleArn: &roleARN, RoleSessionName: aws.String("pod"), WebIdentityToken: &tok}); err != nil {
		t.Fatalf("AssumeRoleWithWebIdentity through the published issuer: %v", err)
	}
}
