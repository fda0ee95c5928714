package loadgen

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Pod Identity token facts.
const (
	ClusterIssuer  = "https://kubernetes.default.svc"
	PodAudience    = "pods.eks.amazonaws.com"
	STSAudience    = "sts.amazonaws.com"
	BenchNamespace = "bench"
	BenchSA        = "app"
)

// KeyPair is an RSA signing key with its key ID.
type KeyPair struct {
	Key    *rsa.PrivateKey
	KID    string
	signer jose.Signer
}

// NewKeyPair makes a 2048-bit RSA key, the size Kubernetes uses.
func NewKeyPair(kid string) (*KeyPair, error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return withSigner(key, kid)
}

func withSigner(key *rsa.PrivateKey, kid string) (*KeyPair, error) {
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		return nil, err
	}
	return &KeyPair{Key: key, KID: kid, signer: s}, nil
}

// JWKS is the public half as a JSON Web Key Set.
func (k *KeyPair) JWKS() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &k.Key.PublicKey, KeyID: k.KID, Algorithm: "RS256", Use: "sig"}}}
}

// Sign makes an RS256 JWT of the standard claims plus extra.
func (k *KeyPair) Sign(std jwt.Claims, extra map[string]any) (string, error) {
	b := jwt.Signed(k.signer).Claims(std)
	if extra != nil {
		b = b.Claims(extra)
	}
	return b.Serialize()
}

// PodToken is a projected service-account token as the kubelet would get it
// for pod i: pod-bound, audience pods.eks.amazonaws.com, 24 h.
func (k *KeyPair) PodToken(i int) (string, error) {
	now := time.Now()
	std := jwt.Claims{
		Issuer: ClusterIssuer, Subject: "system:serviceaccount:" + BenchNamespace + ":" + BenchSA,
		Audience: jwt.Audience{PodAudience}, IssuedAt: jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), Expiry: jwt.NewNumericDate(now.Add(24 * time.Hour)),
		ID: fmt.Sprintf("bench-%d-%d", now.UnixNano(), i),
	}
	kube := map[string]any{"kubernetes.io": map[string]any{
		"namespace":      BenchNamespace,
		"serviceaccount": map[string]any{"name": BenchSA, "uid": "0b1c2d3e-0000-4000-8000-000000000001"},
		"pod":            map[string]any{"name": fmt.Sprintf("app-%d", i), "uid": fmt.Sprintf("5f6e7d8c-0000-4000-8000-%012d", i)},
		"node":           map[string]any{"name": "node-1", "uid": "9a8b7c6d-0000-4000-8000-000000000001"},
	}}
	return k.Sign(std, kube)
}

// PodTokens signs n distinct pod tokens on all cores, before any timed
// phase, so that JWT signing is not charged to the run.
func (k *KeyPair) PodTokens(n int) ([]string, error) {
	out := make([]string, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			// A signer per goroutine: jose does not promise concurrent use.
			kp, err := withSigner(k.Key, k.KID)
			for i := w; i < n && err == nil; i += workers {
				var t string
				t, err = kp.PodToken(i)
				out[i] = t
			}
			if err != nil {
				mu.Lock()
				firstErr = err
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out, firstErr
}

// Issuer is an OIDC issuer served over HTTPS with a self-signed
// certificate, in this process: discovery document and JWKS, as IAM OIDC
// providers (IRSA) need.
type Issuer struct {
	URL    string
	CAFile string
	Keys   *KeyPair
	srv    *httptest.Server
}

// StartIssuer serves the issuer on loopback and writes its CA to dir.
func StartIssuer(dir string) (*Issuer, error) {
	keys, err := NewKeyPair("bench-issuer-1")
	if err != nil {
		return nil, err
	}
	is := &Issuer{Keys: keys}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": is.URL, "jwks_uri": is.URL + "/keys", "id_token_signing_alg_values_supported": []string{"RS256"}})
	})
	mux.HandleFunc("/keys", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(keys.JWKS())
	})
	is.srv = httptest.NewTLSServer(mux)
	is.URL = is.srv.URL
	is.CAFile = filepath.Join(dir, "issuer-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: is.srv.Certificate().Raw})
	if err := os.WriteFile(is.CAFile, pemBytes, 0o600); err != nil {
		is.srv.Close()
		return nil, err
	}
	return is, nil
}

// Host is the issuer URL without scheme: the IAM condition-key prefix.
func (is *Issuer) Host() string { return is.URL[len("https://"):] }

// WebIdentityToken is an IRSA token (audience sts.amazonaws.com).
func (is *Issuer) WebIdentityToken() (string, error) {
	now := time.Now()
	return is.Keys.Sign(jwt.Claims{
		Issuer: is.URL, Subject: "system:serviceaccount:" + BenchNamespace + ":" + BenchSA,
		Audience: jwt.Audience{STSAudience}, IssuedAt: jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now.Add(-time.Minute)), Expiry: jwt.NewNumericDate(now.Add(24 * time.Hour)),
	}, nil)
}

// Close stops the issuer.
func (is *Issuer) Close() { is.srv.Close() }
