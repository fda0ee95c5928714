package integration

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	jose "github.com/go-jose/go-jose/v4"

	podideks "github.com/podid/podid/internal/eks"
	"github.com/podid/podid/internal/server/servertest"
)

// podAssume calls AssumeRoleForPodIdentity as the administrator, on the wire.
func podAssume(t *testing.T, inst *servertest.Instance, cluster, token string) restAnswer {
	t.Helper()
	return signedJSON(t, inst, adminCreds(inst), "eks-auth", http.MethodPost, "/clusters/"+cluster+"/assume-role-for-pod-identity", map[string]string{"token": token})
}

// Every key source verifies tokens; a JWKS URL is refetched for an unknown
// kid, so a rotated-in key works at once and the old one until it leaves.
func TestPodIdentityKeySources(t *testing.T) {
	is := newIssuer(t) // HTTPS, with discovery and /keys
	inst := servertest.Start(t, withOIDCCA(is.CAFile))
	ic, _ := adminClients(inst)
	roleARN := createRole(t, ic, "app", podIdentityTrust())

	newKey := rsaKey(t)
	var mu sync.Mutex
	keys := []jose.JSONWebKey{{Key: &is.key.PublicKey, KeyID: is.kid, Algorithm: "RS256", Use: "sig"}}
	rotating := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: keys})
	}))
	t.Cleanup(rotating.Close)
	sources := map[string]podideks.RegisterClusterInput{
		"by-jwks":      {JWKS: jwksOf(keys[0])},
		"by-jwks-url":  {JWKSURL: is.URL + "/keys"},
		"by-discovery": {Discovery: true},
		"rotating":     {JWKSURL: rotating.URL},
	}
	ec := eksClient(inst)
	for name, in := range sources {
		in.Name, in.Issuer = name, is.URL
		registerCluster(t, inst, in)
		if _, err := ec.CreatePodIdentityAssociation(ctx(t), &eks.CreatePodIdentityAssociationInput{ClusterName: aws.String(name),
			Namespace: aws.String("ns"), ServiceAccount: aws.String("sa"), RoleArn: &roleARN}); err != nil {
			t.Fatal(err)
		}
	}
	oldToken := signJWT(t, is.key, is.kid, "RS256", podClaims(is.URL, "ns", "sa", "pod"))
	for name := range sources {
		if a := podAssume(t, inst, name, oldToken); a.status != http.StatusOK || !strings.Contains(string(a.body), `"accessKeyId":"ASIA`) {
			t.Errorf("%s: HTTP %d %s: %s", name, a.status, a.code, a.body)
		}
	}

	// The signing key rotates: the new key is published beside the old one.
	// Its first token names an unknown kid, which refetches the JWKS URL.
	newToken := signJWT(t, newKey, "rotated-in", "RS256", podClaims(is.URL, "ns", "sa", "pod"))
	mu.Lock()
	keys = append(keys, jose.JSONWebKey{Key: &newKey.PublicKey, KeyID: "rotated-in", Algorithm: "RS256", Use: "sig"})
	mu.Unlock()
	for _, tc := range []struct{ cluster, what, token, code string }{
		{"rotating", "new key", newToken, ""},
		{"rotating", "old key, still published", oldToken, ""},
		{"by-jwks", "new key, static JWKS", newToken, "InvalidTokenException"},
	} {
		a := podAssume(t, inst, tc.cluster, tc.token)
		if a.code != tc.code || (tc.code == "") != (a.status == http.StatusOK) {
			t.Errorf("%s: HTTP %d %s: %s, want %q", tc.what, a.status, a.code, a.body, tc.code)
		}
	}
}
