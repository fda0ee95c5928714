// Package authz answers whether a principal's identity policies allow an
// action: the check every API call of a role session goes through.
package authz

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/policy"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
)

// Store is what authz reads: a role's inline and attached policies.
type Store interface {
	ListRolePolicies(ctx context.Context, role string, p store.Page) ([]store.RolePolicy, string, error)
	ListAttachedRolePolicies(ctx context.Context, role string, f store.PolicyFilter, p store.Page) ([]store.ManagedPolicy, string, error)
	GetPolicy(ctx context.Context, arn string) (store.ManagedPolicy, error)
}

// DefaultCacheTTL bounds how stale a role's policies may be when no change
// notifications arrive. Short, because a revoked permission must stop
// working quickly; long enough that a burst of calls from one node parses
// the policies once.
const DefaultCacheTTL = time.Second

// Authorizer evaluates identity policies.
type Authorizer struct {
	Store Store
	Now   func() time.Time
	// CacheTTL is how long a role's policies are served from memory; 0
	// means DefaultCacheTTL. Make it longer only when Invalidate hears of
	// every change to the store (see store.Notifier).
	CacheTTL time.Duration

	mu    sync.Mutex
	cache map[string]cachedPolicies
	gen   uint64 // counts invalidations; guarded by mu
}

// Invalidate drops the cached policies a change to the store affects: a
// role's, when its inline or attached policies change, or all of them.
func (a *Authorizer) Invalidate(c store.Change) {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch c.Kind {
	case store.ChangeRole:
		delete(a.cache, c.Key)
	case store.ChangeAll:
		clear(a.cache)
	default:
		return
	}
	a.gen++
}

type cachedPolicies struct {
	docs    []*policy.Document
	fetched time.Time
}

// Authorize returns nil when p may perform action on resource, and an
// AccessDenied *awsproto.Error otherwise.
func (a *Authorizer) Authorize(ctx context.Context, p *session.Principal, action, resource string) error {
	return a.AuthorizeContext(ctx, p, action, resource, nil)
}

// AuthorizeContext is Authorize with extra request context keys.
func (a *Authorizer) AuthorizeContext(ctx context.Context, p *session.Principal, action, resource string, extra policy.Context) error {
	ok, err := a.Allowed(ctx, p, action, resource, extra)
	if err != nil {
		return err
	}
	if !ok {
		return awsproto.Errorf(http.StatusForbidden, "AccessDenied",
			"User: %s is not authorized to perform: %s on resource: %s because no identity-based policy allows the %s action",
			p.ARN, action, resource, action)
	}
	return nil
}

// Allowed reports whether the principal's policies allow the action.
func (a *Authorizer) Allowed(ctx context.Context, p *session.Principal, action, resource string, extra policy.Context) (bool, error) {
	if p.IsRoot() {
		// The account root may do everything, as in AWS (a GetSessionToken
		// session of root included).
		return true, nil
	}
	if !p.IsRoleSession() {
		return false, nil
	}
	sess := p.Session
	docs, err := a.rolePolicies(ctx, session.RoleName(sess.RoleARN))
	if err != nil {
		return false, err
	}
	req := &policy.Request{Action: action, Resource: resource, Context: PrincipalContext(p)}
	for k, v := range extra {
		req.Context[k] = v
	}
	if policy.Evaluate(req, docs...) != policy.Allow {
		return false, nil
	}
	// A session policy can only narrow what the role allows.
	if sess.Policy != "" || len(sess.PolicyARNs) > 0 {
		var sessionDocs []*policy.Document
		if sess.Policy != "" {
			d, err := policy.Parse(sess.Policy, policy.Identity)
			if err != nil {
				return false, fmt.Errorf("authz: session policy: %w", err)
			}
			sessionDocs = append(sessionDocs, d)
		}
		for _, arn := range sess.PolicyARNs {
			mp, err := a.Store.GetPolicy(ctx, arn)
			if errors.Is(err, store.ErrNotFound) {
				continue
			}
			if err != nil {
				return false, fmt.Errorf("authz: session policy %s: %w", arn, err)
			}
			d, err := policy.Parse(mp.Document, policy.Identity)
			if err != nil {
				continue
			}
			sessionDocs = append(sessionDocs, d)
		}
		if policy.Evaluate(req, sessionDocs...) != policy.Allow {
			return false, nil
		}
	}
	return true, nil
}

// PrincipalContext returns the global condition keys that describe p.
func PrincipalContext(p *session.Principal) policy.Context {
	c := policy.Context{}
	c.Set("aws:PrincipalAccount", p.Account)
	c.Set("aws:userid", p.UserID)
	if p.IsRoleSession() {
		c.Set("aws:PrincipalArn", p.Session.RoleARN)
		c.Set("aws:PrincipalType", "AssumedRole")
		for _, t := range p.Session.Tags {
			c.Set("aws:PrincipalTag/"+t.Key, t.Value)
		}
		if p.Session.SourceIdentity != "" {
			c.Set("aws:SourceIdentity", p.Session.SourceIdentity)
		}
	} else {
		c.Set("aws:PrincipalArn", p.ARN)
		c.Set("aws:PrincipalType", "Account")
	}
	return c
}

func (a *Authorizer) rolePolicies(ctx context.Context, role string) ([]*policy.Document, error) {
	now := time.Now()
	if a.Now != nil {
		now = a.Now()
	}
	ttl := a.CacheTTL
	if ttl <= 0 {
		ttl = DefaultCacheTTL
	}
	a.mu.Lock()
	if c, ok := a.cache[role]; ok && now.Sub(c.fetched) < ttl {
		a.mu.Unlock()
		return c.docs, nil
	}
	gen := a.gen
	a.mu.Unlock()

	var docs []*policy.Document
	add := func(src, text string) error {
		d, err := policy.Parse(text, policy.Identity)
		if err != nil {
			return fmt.Errorf("authz: stored policy %s of role %s: %w", src, role, err)
		}
		docs = append(docs, d)
		return nil
	}
	for marker := ""; ; {
		page, next, err := a.Store.ListRolePolicies(ctx, role, store.Page{Marker: marker, MaxItems: 1000})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("authz: list role policies: %w", err)
		}
		for _, rp := range page {
			if err := add(rp.PolicyName, rp.Document); err != nil {
				return nil, err
			}
		}
		if next == "" {
			break
		}
		marker = next
	}
	for marker := ""; ; {
		page, next, err := a.Store.ListAttachedRolePolicies(ctx, role, store.PolicyFilter{}, store.Page{Marker: marker, MaxItems: 1000})
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("authz: list attached policies: %w", err)
		}
		for _, mp := range page {
			if err := add(mp.ARN, mp.Document); err != nil {
				return nil, err
			}
		}
		if next == "" {
			break
		}
		marker = next
	}
	a.mu.Lock()
	if a.cache == nil {
		a.cache = map[string]cachedPolicies{}
	}
	if a.gen == gen { // else what was read may predate a change
		a.cache[role] = cachedPolicies{docs: docs, fetched: now}
	}
	a.mu.Unlock()
	return docs, nil
}
