// Package oidc verifies JSON Web Tokens against an issuer's keys and fetches
// those keys: from an OpenID discovery document, a JWKS URL, or a fixed set.
// IAM OIDC providers (web identity) and registered clusters (Pod Identity)
// both use it.
package oidc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Verification failures. Callers map them to their API's error codes.
var (
	ErrMalformed    = errors.New("token is not a well-formed JWT")
	ErrAlgorithm    = errors.New("token signing algorithm is not allowed")
	ErrUnknownKey   = errors.New("token key ID not found in the issuer's keys")
	ErrSignature    = errors.New("token signature is invalid")
	ErrExpired      = errors.New("token is expired")
	ErrNotYetValid  = errors.New("token is not valid yet")
	ErrKeysNotReady = errors.New("issuer keys could not be fetched")
)

// allowedAlgs excludes "none" and every HMAC algorithm: a public key must
// never be usable as a shared secret.
var allowedAlgs = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
}

// Claims are the registered claims podid checks, plus the whole payload.
type Claims struct {
	Issuer    string
	Subject   string
	Audience  []string
	Expiry    time.Time
	NotBefore time.Time
	IssuedAt  time.Time
	Raw       map[string]json.RawMessage
}

// Token is a parsed, not yet verified JWT.
type Token struct {
	jws    *jwt.JSONWebToken
	KeyID  string
	Claims Claims // unverified until Verify succeeds
}

// Parse decodes a compact JWT without verifying it, so the caller can pick
// the issuer's keys.
func Parse(raw string) (*Token, error) {
	if len(raw) > 64<<10 {
		return nil, ErrMalformed
	}
	tok, err := jwt.ParseSigned(raw, allowedAlgs)
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			return nil, ErrAlgorithm
		}
		return nil, ErrMalformed
	}
	if len(tok.Headers) != 1 {
		return nil, ErrMalformed
	}
	t := &Token{jws: tok, KeyID: tok.Headers[0].KeyID}
	// One pass over the payload fills both views of it.
	var raws map[string]json.RawMessage
	var std jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&raws, &std); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	t.Claims = claimsOf(std, raws)
	return t, nil
}

func claimsOf(std jwt.Claims, raws map[string]json.RawMessage) Claims {
	c := Claims{Issuer: std.Issuer, Subject: std.Subject, Audience: []string(std.Audience), Raw: raws}
	if std.Expiry != nil {
		c.Expiry = std.Expiry.Time()
	}
	if std.NotBefore != nil {
		c.NotBefore = std.NotBefore.Time()
	}
	if std.IssuedAt != nil {
		c.IssuedAt = std.IssuedAt.Time()
	}
	return c
}

// KeyFunc returns the key for a key ID; it may refetch the issuer's keys
// when kid is unknown.
type KeyFunc func(ctx context.Context, kid string) (*jose.JSONWebKey, error)

// Verify checks the signature with the key named by the token's kid, then
// exp (required) and nbf with the given clock skew.
func (t *Token) Verify(ctx context.Context, keys KeyFunc, now time.Time, skew time.Duration) error {
	key, err := keys(ctx, t.KeyID)
	if err != nil {
		return err
	}
	if key.Algorithm != "" && key.Algorithm != t.jws.Headers[0].Algorithm {
		return ErrAlgorithm
	}
	// The claims were decoded by Parse; only the signature is left to check.
	if err := t.jws.Claims(key.Key); err != nil {
		return ErrSignature
	}
	if t.Claims.Expiry.IsZero() || !now.Before(t.Claims.Expiry.Add(skew)) {
		return ErrExpired
	}
	if !t.Claims.NotBefore.IsZero() && now.Add(skew).Before(t.Claims.NotBefore) {
		return ErrNotYetValid
	}
	return nil
}

// HasAudience reports whether aud is among the token's audiences.
func (c *Claims) HasAudience(aud string) bool {
	for _, a := range c.Audience {
		if a == aud {
			return true
		}
	}
	return false
}
