package oidc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Timing of key refreshes. An unknown kid triggers a refetch at most once
// per minRefetch, so a flood of forged kids cannot hammer the issuer.
const (
	defaultMaxAge = time.Hour
	minRefetch    = 10 * time.Second
	fetchTimeout  = 10 * time.Second
	maxDocSize    = 1 << 20
)

// HTTPClient returns a client that trusts the system roots (which honour
// SSL_CERT_FILE) plus the PEM certificates in caFile, if given.
func HTTPClient(caFile string) (*http.Client, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("oidc: read CA file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("oidc: no certificates in %s", caFile)
		}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: fetchTimeout}, nil
}

// Source fetches a key set.
type Source func(ctx context.Context) (jose.JSONWebKeySet, error)

// KeySet caches a Source's keys, refetching them when they are old or when a
// token names a key ID it does not hold.
type KeySet struct {
	source Source
	maxAge time.Duration

	mu        sync.Mutex
	keys      jose.JSONWebKeySet
	fetched   time.Time
	lastFetch time.Time
	lastErr   error
}

// NewKeySet wraps source; initial, if not empty, is used until the first
// refresh (keys remembered from an earlier run).
func NewKeySet(source Source, initial jose.JSONWebKeySet, maxAge time.Duration) *KeySet {
	if maxAge <= 0 {
		maxAge = defaultMaxAge
	}
	ks := &KeySet{source: source, maxAge: maxAge, keys: initial}
	if len(initial.Keys) > 0 {
		ks.fetched = time.Now()
	}
	return ks
}

// Key implements KeyFunc.
func (ks *KeySet) Key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	now := time.Now()
	if now.Sub(ks.fetched) > ks.maxAge {
		ks.refreshLocked(ctx, now)
	}
	if k := find(ks.keys, kid); k != nil {
		return k, nil
	}
	if now.Sub(ks.lastFetch) >= minRefetch {
		ks.refreshLocked(ctx, now)
		if k := find(ks.keys, kid); k != nil {
			return k, nil
		}
	}
	if len(ks.keys.Keys) == 0 && ks.lastErr != nil {
		return nil, fmt.Errorf("%w: %v", ErrKeysNotReady, ks.lastErr)
	}
	return nil, ErrUnknownKey
}

// Keys returns the cached key set, fetching it when none is held.
func (ks *KeySet) Keys(ctx context.Context) (jose.JSONWebKeySet, error) {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	if len(ks.keys.Keys) == 0 || time.Since(ks.fetched) > ks.maxAge {
		ks.refreshLocked(ctx, time.Now())
	}
	if len(ks.keys.Keys) == 0 && ks.lastErr != nil {
		return ks.keys, ks.lastErr
	}
	return ks.keys, nil
}

// Refresh fetches the keys now.
func (ks *KeySet) Refresh(ctx context.Context) error {
	ks.mu.Lock()
	defer ks.mu.Unlock()
	ks.refreshLocked(ctx, time.Now())
	return ks.lastErr
}

// refreshLocked keeps the old keys when the fetch fails: an issuer that is
// briefly away must not break tokens signed with keys we already trust.
func (ks *KeySet) refreshLocked(ctx context.Context, now time.Time) {
	ks.lastFetch = now
	keys, err := ks.source(ctx)
	if err != nil {
		ks.lastErr = err
		return
	}
	ks.keys, ks.fetched, ks.lastErr = keys, now, nil
}

func find(set jose.JSONWebKeySet, kid string) *jose.JSONWebKey {
	for i := range set.Keys {
		k := &set.Keys[i]
		if k.KeyID == kid && (k.Use == "" || k.Use == "sig") {
			return k
		}
	}
	// A token without kid may use the only key of a one-key set.
	if kid == "" && len(set.Keys) == 1 {
		return &set.Keys[0]
	}
	return nil
}

// FromJWKSURL fetches a JWKS document.
func FromJWKSURL(client *http.Client, url string) Source {
	return func(ctx context.Context) (jose.JSONWebKeySet, error) {
		var set jose.JSONWebKeySet
		err := getJSON(ctx, client, url, &set)
		return set, err
	}
}

// FromDiscovery reads issuer/.well-known/openid-configuration, checks that
// it names the same issuer, and fetches its jwks_uri.
func FromDiscovery(client *http.Client, issuer string) Source {
	return func(ctx context.Context) (jose.JSONWebKeySet, error) {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		u := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
		if err := getJSON(ctx, client, u, &doc); err != nil {
			return jose.JSONWebKeySet{}, err
		}
		if strings.TrimSuffix(doc.Issuer, "/") != strings.TrimSuffix(issuer, "/") {
			return jose.JSONWebKeySet{}, fmt.Errorf("oidc: discovery document at %s names issuer %q", u, doc.Issuer)
		}
		if doc.JWKSURI == "" {
			return jose.JSONWebKeySet{}, fmt.Errorf("oidc: discovery document at %s has no jwks_uri", u)
		}
		var set jose.JSONWebKeySet
		err := getJSON(ctx, client, doc.JWKSURI, &set)
		return set, err
	}
}

// Static serves a fixed key set.
func Static(set jose.JSONWebKeySet) Source {
	return func(context.Context) (jose.JSONWebKeySet, error) { return set, nil }
}

func getJSON(ctx context.Context, client *http.Client, url string, v any) error {
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("oidc: %w", err)
	}
	// kube-apiserver answers 406 to a JWKS request that does not accept
	// application/jwk-set+json, the type it serves /openid/v1/jwks as.
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("oidc: fetch %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("oidc: fetch %s: status %s", url, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocSize))
	if err != nil {
		return fmt.Errorf("oidc: read %s: %w", url, err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("oidc: decode %s: %w", url, err)
	}
	return nil
}
