// Package sts implements the STS API (query protocol): AssumeRole,
// AssumeRoleWithWebIdentity, GetCallerIdentity and GetSessionToken, and the
// role-assumption core that EKS Pod Identity reuses.
package sts

import (
	"context"
	"net/http"
	"regexp"
	"sync"
	"time"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/oidc"
	"github.com/podid/podid/internal/policy"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
	"github.com/podid/podid/internal/ttlcache"
)

// Namespace is the STS XML namespace.
const Namespace = "https://sts.amazonaws.com/doc/2011-06-15/"

// Store is what STS reads.
type Store interface {
	GetRole(ctx context.Context, name string) (store.Role, error)
	GetPolicy(ctx context.Context, arn string) (store.ManagedPolicy, error)
	ListOIDCProviders(ctx context.Context) ([]store.OIDCProvider, error)
}

// Authorizer checks the caller's identity policies.
type Authorizer interface {
	AuthorizeContext(ctx context.Context, p *session.Principal, action, resource string, extra policy.Context) error
}

// Service serves STS.
type Service struct {
	Store   Store
	Authz   Authorizer
	Sealer  *session.Sealer
	Account string
	// IssuerKeys returns the key set of an OIDC issuer (web identity).
	IssuerKeys func(issuer string) *oidc.KeySet
	Now        func() time.Time
	// CacheTTL is how long roles and OIDC providers are served from memory;
	// 0 means DefaultCacheTTL. Make it longer only when Invalidate hears of
	// every change to the store (see store.Notifier): the TTL is then the
	// safety net, a periodic full resync.
	CacheTTL time.Duration

	cacheOnce sync.Once
	roles     *ttlcache.Cache[string, trustedRole]            // role name → role and parsed trust policy
	providers *ttlcache.Cache[struct{}, []store.OIDCProvider] // the account's OIDC providers
}

// DefaultCacheTTL bounds how stale a role or provider read may be when no
// change notifications arrive: a trust policy change takes effect within
// it, as IAM changes take a moment on AWS.
const DefaultCacheTTL = time.Second

// trustedRole is a role with its trust policy parsed once.
type trustedRole struct {
	role  store.Role
	trust *policy.Document // nil when the stored policy does not parse
}

func (s *Service) caches() {
	s.cacheOnce.Do(func() {
		ttl := s.CacheTTL
		if ttl <= 0 {
			ttl = DefaultCacheTTL
		}
		s.roles = ttlcache.New[string, trustedRole](ttl, 10000)
		s.providers = ttlcache.New[struct{}, []store.OIDCProvider](ttl, 1)
	})
}

// Forget drops every cached role and provider, so that a change made on
// this server is seen by the next call at once (other replicas see it
// through Invalidate, or within the cache TTL).
func (s *Service) Forget() {
	s.caches()
	s.roles.Clear()
	s.providers.Clear()
}

// Invalidate drops what the service caches about a change to the store,
// made by this replica or another (the server subscribes it to the store's
// notifications).
func (s *Service) Invalidate(c store.Change) {
	s.caches()
	switch c.Kind {
	case store.ChangeRole:
		s.roles.Delete(c.Key)
	case store.ChangeOIDCProvider:
		s.providers.Clear()
	case store.ChangeAll:
		s.Forget()
	}
}

// role reads a role and its parsed trust policy, through the cache.
func (s *Service) role(ctx context.Context, name string) (trustedRole, error) {
	s.caches()
	now := s.now()
	if r, ok := s.roles.Get(name, now); ok {
		return r, nil
	}
	gen := s.roles.Generation()
	role, err := s.Store.GetRole(ctx, name)
	if err != nil {
		return trustedRole{}, err
	}
	r := trustedRole{role: role}
	r.trust, _ = policy.Parse(role.AssumeRolePolicy, policy.Trust)
	// Not cached if a role changed meanwhile: this one may be the old row.
	s.roles.PutIfGeneration(name, r, now, gen)
	return r, nil
}

// oidcProviders lists the account's OIDC providers, through the cache.
func (s *Service) oidcProviders(ctx context.Context) ([]store.OIDCProvider, error) {
	s.caches()
	now := s.now()
	if ps, ok := s.providers.Get(struct{}{}, now); ok {
		return ps, nil
	}
	gen := s.providers.Generation()
	ps, err := s.Store.ListOIDCProviders(ctx)
	if err != nil {
		return nil, err
	}
	s.providers.PutIfGeneration(struct{}{}, ps, now, gen)
	return ps, nil
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// ReadOnly reports whether an action changes nothing (for audit records).
func ReadOnly(action string) bool {
	return action == "GetCallerIdentity"
}

// Unsigned reports whether action is called without a signature.
func Unsigned(action string) bool {
	return action == "AssumeRoleWithWebIdentity"
}

// Handle runs one STS action. caller is nil for unsigned actions.
func (s *Service) Handle(ctx context.Context, caller *session.Principal, action string, form awsproto.Form) (any, error) {
	switch action {
	case "GetCallerIdentity":
		return getCallerIdentityResult{Account: caller.Account, Arn: caller.ARN, UserId: caller.UserID}, nil
	case "AssumeRole":
		return s.assumeRole(ctx, caller, form)
	case "AssumeRoleWithWebIdentity":
		return s.assumeRoleWithWebIdentity(ctx, form)
	case "GetSessionToken":
		return s.getSessionToken(ctx, caller, form)
	}
	return nil, awsproto.Errorf(http.StatusBadRequest, "InvalidAction", "Could not find operation %s for version 2011-06-15", action)
}

type getCallerIdentityResult struct {
	UserId  string
	Account string
	Arn     string
}

type credentialsXML struct {
	AccessKeyId     string
	SecretAccessKey string
	SessionToken    string
	Expiration      string
}

type assumedRoleUserXML struct {
	AssumedRoleId string
	Arn           string
}

type assumeRoleResult struct {
	Credentials      credentialsXML
	AssumedRoleUser  assumedRoleUserXML
	PackedPolicySize *int `xml:",omitempty"`
	// SessionTokenSize and SessionTokenUtilization are the fields newer SDKs
	// read in place of the deprecated PackedPolicySize; podid's utilization is
	// the same share of its packed-policy budget.
	SessionTokenSize        int    `xml:",omitempty"`
	SessionTokenUtilization *int   `xml:",omitempty"`
	SourceIdentity          string `xml:",omitempty"`
}

type assumeRoleWithWebIdentityResult struct {
	Credentials                 credentialsXML
	SubjectFromWebIdentityToken string
	AssumedRoleUser             assumedRoleUserXML
	PackedPolicySize            *int `xml:",omitempty"`
	SessionTokenSize            int  `xml:",omitempty"`
	SessionTokenUtilization     *int `xml:",omitempty"`
	Provider                    string
	Audience                    string
	SourceIdentity              string `xml:",omitempty"`
}

type getSessionTokenResult struct {
	Credentials credentialsXML
}

func credentialsOf(sess *session.Session, token string) credentialsXML {
	return credentialsXML{
		AccessKeyId:     sess.AccessKeyID,
		SecretAccessKey: sess.SecretAccessKey,
		SessionToken:    token,
		Expiration:      sess.Expiration.UTC().Format(time.RFC3339),
	}
}

var sessionNameRE = regexp.MustCompile(`^[\w+=,.@-]{2,64}$`)

func validateSessionName(name string) error {
	if name == "" {
		return awsproto.ValidationError("1 validation error detected: Value null at 'roleSessionName' failed to satisfy constraint: Member must not be null")
	}
	if !sessionNameRE.MatchString(name) {
		return awsproto.ValidationError("1 validation error detected: Value '%s' at 'roleSessionName' failed to satisfy constraint: Member must satisfy regular expression pattern: [\\w+=,.@-]* and have length between 2 and 64", name)
	}
	return nil
}
