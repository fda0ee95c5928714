package sts

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/oidc"
	"github.com/podid/podid/internal/policy"
	"github.com/podid/podid/internal/store"
)

// webIdentitySkew is the clock skew allowed on exp and nbf.
const webIdentitySkew = 5 * time.Minute

func invalidIdentityToken(format string, args ...any) error {
	return awsproto.Errorf(http.StatusBadRequest, "InvalidIdentityToken", format, args...)
}

func (s *Service) assumeRoleWithWebIdentity(ctx context.Context, form awsproto.Form) (any, error) {
	roleARN, err := form.Required("RoleArn")
	if err != nil {
		return nil, err
	}
	name, err := form.Required("RoleSessionName")
	if err != nil {
		return nil, err
	}
	raw, err := form.Required("WebIdentityToken")
	if err != nil {
		return nil, err
	}
	if len(raw) < 4 || len(raw) > 20000 {
		return nil, awsproto.ValidationError("1 validation error detected: Value at 'webIdentityToken' failed to satisfy constraint: Member must have length between 4 and 20000")
	}
	secs, err := form.Int("DurationSeconds", 0, 900, 43200)
	if err != nil {
		return nil, err
	}
	if err := validateSessionName(name); err != nil {
		return nil, err
	}

	tok, err := oidc.Parse(raw)
	if err != nil {
		if errors.Is(err, oidc.ErrAlgorithm) {
			return nil, invalidIdentityToken("The web identity token is signed with an algorithm that is not allowed")
		}
		return nil, invalidIdentityToken("The web identity token provided could not be parsed")
	}
	provider, err := s.findProvider(ctx, tok.Claims.Issuer)
	if err != nil {
		return nil, err
	}
	audience := ""
	for _, a := range tok.Claims.Audience {
		for _, id := range provider.ClientIDs {
			if a == id {
				audience = a
			}
		}
	}
	if audience == "" {
		return nil, invalidIdentityToken("Incorrect token audience")
	}
	keys := s.IssuerKeys(tok.Claims.Issuer)
	switch err := tok.Verify(ctx, keys.Key, s.now(), webIdentitySkew); {
	case err == nil:
	case errors.Is(err, oidc.ErrExpired) && tok.Claims.Expiry.IsZero():
		return nil, invalidIdentityToken("The web identity token has no expiration (exp) claim")
	case errors.Is(err, oidc.ErrExpired):
		return nil, awsproto.Errorf(http.StatusBadRequest, "ExpiredTokenException", "Token expired: current date/time %s must be before the expiration date/time %s",
			s.now().UTC().Format(time.RFC3339), tok.Claims.Expiry.UTC().Format(time.RFC3339))
	case errors.Is(err, oidc.ErrNotYetValid):
		return nil, invalidIdentityToken("The web identity token is not valid yet (nbf)")
	case errors.Is(err, oidc.ErrKeysNotReady):
		return nil, awsproto.Errorf(http.StatusBadRequest, "IDPCommunicationError", "Couldn't retrieve verification key from your identity provider, please reference AssumeRoleWithWebIdentity documentation for requirements")
	case errors.Is(err, oidc.ErrUnknownKey):
		return nil, invalidIdentityToken("Couldn't retrieve verification key from your identity provider for key ID %q", tok.KeyID)
	case errors.Is(err, oidc.ErrAlgorithm), errors.Is(err, oidc.ErrSignature):
		return nil, invalidIdentityToken("The web identity token signature could not be verified")
	default:
		return nil, fmt.Errorf("sts: verify web identity token: %w", err)
	}

	prefix := provider.URL + ":"
	c := policy.Context{}
	c.Set(prefix+"sub", tok.Claims.Subject)
	c.Set(prefix+"aud", audience)
	if amr, ok := tok.Claims.Raw["amr"]; ok {
		c.Set(prefix+"amr", strings.Trim(string(amr), `"`))
	}
	c.Set("aws:FederatedProvider", provider.ARN)
	in := AssumeInput{
		Principal:   &policy.Principal{Type: "Federated", ID: provider.ARN},
		Action:      "sts:AssumeRoleWithWebIdentity",
		RoleARN:     roleARN,
		SessionName: name,
		Duration:    time.Duration(secs) * time.Second,
		Policy:      form.Get("Policy"),
		Context:     c,
	}
	for i := 1; ; i++ {
		arn := form.Get("PolicyArns.member." + strconv.Itoa(i) + ".arn")
		if arn == "" {
			break
		}
		in.PolicyARNs = append(in.PolicyARNs, arn)
	}
	out, err := s.Assume(ctx, in)
	if err != nil {
		var ae *awsproto.Error
		if errors.As(err, &ae) && ae.Code == "AccessDenied" {
			return nil, awsproto.AccessDenied("Not authorized to perform sts:AssumeRoleWithWebIdentity")
		}
		return nil, err
	}
	return assumeRoleWithWebIdentityResult{
		Credentials:                 credentialsOf(out.Session, out.Token),
		SubjectFromWebIdentityToken: tok.Claims.Subject,
		AssumedRoleUser:             assumedRoleUserXML{AssumedRoleId: out.Session.RoleID + ":" + out.Session.SessionName, Arn: out.Session.AssumedRoleARN()},
		PackedPolicySize:            out.PackedPolicySize,
		SessionTokenSize:            len(out.Token),
		SessionTokenUtilization:     out.PackedPolicySize,
		Provider:                    provider.ARN,
		Audience:                    audience,
	}, nil
}

// findProvider returns the IAM OIDC provider registered for issuer.
func (s *Service) findProvider(ctx context.Context, issuer string) (store.OIDCProvider, error) {
	if !strings.HasPrefix(issuer, "https://") {
		return store.OIDCProvider{}, invalidIdentityToken("The issuer %q of the web identity token is not an https URL", issuer)
	}
	url := strings.TrimSuffix(strings.TrimPrefix(issuer, "https://"), "/")
	providers, err := s.oidcProviders(ctx)
	if err != nil {
		return store.OIDCProvider{}, fmt.Errorf("sts: list OIDC providers: %w", err)
	}
	for _, p := range providers {
		if p.URL == url {
			return p, nil
		}
	}
	return store.OIDCProvider{}, invalidIdentityToken("No OpenIDConnect provider found in your account for %s", issuer)
}
