package integration

import (
	"bytes"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/podid/podid/internal/cli"
	podideks "github.com/podid/podid/internal/eks"
	"github.com/podid/podid/internal/server"
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

// --serve-oidc: the server itself hosts each cluster's issuer documents
// under /podid/oidc/CLUSTER/, here behind a TLS-terminating proxy as a
// public issuer host would be, and STS trusts tokens of that issuer.
func TestServeOIDCIssuerDocuments(t *testing.T) {
	var target atomic.Pointer[url.URL]
	front := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httputil.NewSingleHostReverseProxy(target.Load()).ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: front.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	inst := servertest.Start(t, withOIDCCA(caFile), func(c *server.Config) { c.ServeOIDC = true })
	u, _ := url.Parse(inst.URL)
	target.Store(u)
	issuerURL := front.URL + "/podid/oidc/self"
	key := rsaKey(t)
	registerCluster(t, inst, podideks.RegisterClusterInput{Name: "self", Issuer: issuerURL,
		JWKS: jwksOf(jose.JSONWebKey{Key: &key.PublicKey, KeyID: "k", Algorithm: "RS256", Use: "sig"})})

	for path, want := range map[string]int{"/podid/oidc/self/.well-known/openid-configuration": 200, "/podid/oidc/self/keys.json": 200,
		"/podid/oidc/other/keys.json": 404, "/podid/oidc/self/secrets": 404} {
		resp, err := http.Get(inst.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("GET %s: HTTP %d, want %d", path, resp.StatusCode, want)
		}
	}

	ic, sc := adminClients(inst)
	p, err := ic.CreateOpenIDConnectProvider(ctx(t), &iam.CreateOpenIDConnectProviderInput{Url: &issuerURL, ClientIDList: []string{"sts.amazonaws.com"}})
	if err != nil {
		t.Fatal(err)
	}
	roleARN := createRole(t, ic, "irsa", irsaTrust(&issuer{URL: issuerURL}, aws.ToString(p.OpenIDConnectProviderArn), "system:serviceaccount:default:app"))
	tok := signToken(t, key, "k", jose.RS256, issuerURL, "system:serviceaccount:default:app", []string{"sts.amazonaws.com"})
	if _, err := sc.AssumeRoleWithWebIdentity(ctx(t), &sts.AssumeRoleWithWebIdentityInput{RoleArn: &roleARN, RoleSessionName: aws.String("pod"), WebIdentityToken: &tok}); err != nil {
		t.Fatalf("AssumeRoleWithWebIdentity through the served issuer: %v", err)
	}
}
