package integration

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/podid/podid/internal/secretbox"
	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/server/servertest"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
)

const region = "us-east-1"

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// awsConfig returns an SDK config aimed at the server with static credentials.
func awsConfig(inst *servertest.Instance, id, secret, token string) aws.Config {
	return aws.Config{
		Region:       region,
		Credentials:  credentials.NewStaticCredentialsProvider(id, secret, token),
		BaseEndpoint: aws.String(inst.URL),
		// Tests assert on the first answer: no retries hiding errors.
		RetryMaxAttempts: 1,
	}
}

func adminClients(inst *servertest.Instance) (*iam.Client, *sts.Client) {
	cfg := awsConfig(inst, inst.AccessKeyID, inst.SecretAccessKey, "")
	return iam.NewFromConfig(cfg), sts.NewFromConfig(cfg)
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// issuer is a test OIDC issuer served over HTTPS with its own RSA key.
type issuer struct {
	srv    *httptest.Server
	key    *rsa.PrivateKey
	kid    string
	URL    string
	CAFile string
}

func newIssuer(t *testing.T) *issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{key: key, kid: "test-key-1"}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": is.URL, "jwks_uri": is.URL + "/keys", "id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &is.key.PublicKey, KeyID: is.kid, Algorithm: "RS256", Use: "sig"}}})
	})
	is.srv = httptest.NewTLSServer(mux)
	t.Cleanup(is.srv.Close)
	is.URL = is.srv.URL
	is.CAFile = filepath.Join(t.TempDir(), "issuer-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw})
	if err := os.WriteFile(is.CAFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	return is
}

// Host returns the issuer URL without its scheme: IAM's provider URL and
// the prefix of its condition keys.
func (is *issuer) Host() string { return is.URL[len("https://"):] }

// token signs claims with the issuer's key; zero fields get sane defaults.
func (is *issuer) token(t *testing.T, sub string, aud []string, mutate ...func(*jwt.Claims)) string {
	t.Helper()
	return signToken(t, is.key, is.kid, jose.RS256, is.URL, sub, aud, mutate...)
}

func signToken(t *testing.T, key any, kid string, alg jose.SignatureAlgorithm, iss, sub string, aud []string, mutate ...func(*jwt.Claims)) string {
	t.Helper()
	now := time.Now()
	c := jwt.Claims{Issuer: iss, Subject: sub, Audience: aud, IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), Expiry: jwt.NewNumericDate(now.Add(time.Hour))}
	for _, m := range mutate {
		m(&c)
	}
	return signJWT(t, key, kid, alg, c)
}

func withOIDCCA(file string) func(*server.Config) {
	return func(c *server.Config) { c.OIDCCAFile = file }
}

// expiredSession mints credentials whose session token expired a minute
// ago, sealed under the server's own current key. No API hands out an
// expired token and waiting out the 15-minute minimum is too slow, so it
// does what any replica does: reads the sealing keys from the store in the
// data dir and opens them with the master key next to it.
func expiredSession(t *testing.T, inst *servertest.Instance) (id, secret, token string) {
	t.Helper()
	master, err := secretbox.LoadOrCreateKey(filepath.Join(inst.DataDir, "master.key"), false)
	if err != nil {
		t.Fatal(err)
	}
	box, err := secretbox.New(master)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(inst.DataDir, "podid.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stored, err := st.ListSealingKeys(ctx(t))
	if err != nil || len(stored) == 0 {
		t.Fatalf("sealing keys: %v (%d)", err, len(stored))
	}
	var keys []session.Key
	for _, sk := range stored {
		// The label the server binds sealing keys to (server.labelSealingKey).
		k, err := box.Open(sk.Sealed, "podid/sealing-key/"+sk.ID)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, session.Key{ID: sk.ID, Secret: k})
	}
	sealer, err := session.NewSealer(keys)
	if err != nil {
		t.Fatal(err)
	}
	sess := &session.Session{
		AccessKeyID: session.NewAccessKeyID("ASIA"), SecretAccessKey: session.NewSecretAccessKey(),
		Account: inst.Account(), PrincipalARN: "arn:aws:iam::" + inst.Account() + ":root",
		Expiration: time.Now().Add(-time.Minute).Truncate(time.Second),
	}
	token, err = sealer.Seal(sess)
	if err != nil {
		t.Fatal(err)
	}
	return sess.AccessKeyID, sess.SecretAccessKey, token
}
