// Package iam implements the IAM API operations podid serves (roles, inline
// and managed policies, OpenID Connect providers and policy simulation) in
// the shape the AWS SDKs and CLI expect from the query protocol.
//
// The package knows nothing about HTTP: the server decodes the form, calls
// Handle and writes the result inside <ActionResult>.
package iam

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
)

// Namespace is the XML namespace of IAM responses.
const Namespace = "https://iam.amazonaws.com/doc/2010-05-08/"

// Store is the part of store.Store IAM needs.
type Store interface {
	CreateRole(ctx context.Context, r store.Role) error
	GetRole(ctx context.Context, name string) (store.Role, error)
	ListRoles(ctx context.Context, f store.RoleFilter, p store.Page) ([]store.Role, string, error)
	UpdateRole(ctx context.Context, name string, fn func(*store.Role) error) (store.Role, error)
	DeleteRole(ctx context.Context, name string) error

	PutRolePolicy(ctx context.Context, p store.RolePolicy) error
	GetRolePolicy(ctx context.Context, role, name string) (store.RolePolicy, error)
	ListRolePolicies(ctx context.Context, role string, p store.Page) ([]store.RolePolicy, string, error)
	DeleteRolePolicy(ctx context.Context, role, name string) error

	CreatePolicy(ctx context.Context, p store.ManagedPolicy) error
	GetPolicy(ctx context.Context, arn string) (store.ManagedPolicy, error)
	ListPolicies(ctx context.Context, f store.PolicyFilter, p store.Page) ([]store.ManagedPolicy, string, error)
	DeletePolicy(ctx context.Context, arn string) error
	AttachRolePolicy(ctx context.Context, role, policyARN string) error
	DetachRolePolicy(ctx context.Context, role, policyARN string) error
	ListAttachedRolePolicies(ctx context.Context, role string, f store.PolicyFilter, p store.Page) ([]store.ManagedPolicy, string, error)

	CreateOIDCProvider(ctx context.Context, o store.OIDCProvider) error
	GetOIDCProvider(ctx context.Context, arn string) (store.OIDCProvider, error)
	ListOIDCProviders(ctx context.Context) ([]store.OIDCProvider, error)
	UpdateOIDCProvider(ctx context.Context, arn string, fn func(*store.OIDCProvider) error) (store.OIDCProvider, error)
	DeleteOIDCProvider(ctx context.Context, arn string) error
}

// Authorizer decides whether a principal may call an IAM action on a
// resource (root is always allowed; role sessions are checked against their
// identity policies). It returns an *awsproto.Error AccessDenied when not.
type Authorizer interface {
	Authorize(ctx context.Context, p *session.Principal, action, resource string) error
}

// Service runs IAM actions against a store.
type Service struct {
	Store   Store
	Authz   Authorizer       // nil allows everything (tests)
	Account string           // 12-digit account ID
	Now     func() time.Time // nil means time.Now
}

type handler func(s *Service, ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error)

var handlers = map[string]handler{
	"CreateRole":                         (*Service).createRole,
	"GetRole":                            (*Service).getRole,
	"ListRoles":                          (*Service).listRoles,
	"DeleteRole":                         (*Service).deleteRole,
	"UpdateAssumeRolePolicy":             (*Service).updateAssumeRolePolicy,
	"UpdateRole":                         (*Service).updateRole,
	"TagRole":                            (*Service).tagRole,
	"UntagRole":                          (*Service).untagRole,
	"ListRoleTags":                       (*Service).listRoleTags,
	"PutRolePolicy":                      (*Service).putRolePolicy,
	"GetRolePolicy":                      (*Service).getRolePolicy,
	"ListRolePolicies":                   (*Service).listRolePolicies,
	"DeleteRolePolicy":                   (*Service).deleteRolePolicy,
	"CreatePolicy":                       (*Service).createPolicy,
	"GetPolicy":                          (*Service).getPolicy,
	"ListPolicies":                       (*Service).listPolicies,
	"DeletePolicy":                       (*Service).deletePolicy,
	"AttachRolePolicy":                   (*Service).attachRolePolicy,
	"DetachRolePolicy":                   (*Service).detachRolePolicy,
	"ListAttachedRolePolicies":           (*Service).listAttachedRolePolicies,
	"CreateOpenIDConnectProvider":        (*Service).createOIDCProvider,
	"GetOpenIDConnectProvider":           (*Service).getOIDCProvider,
	"ListOpenIDConnectProviders":         (*Service).listOIDCProviders,
	"DeleteOpenIDConnectProvider":        (*Service).deleteOIDCProvider,
	"AddClientIDToOpenIDConnectProvider": (*Service).addClientID,
	"RemoveClientIDFromOpenIDConnectProvider": (*Service).removeClientID,
	"SimulatePrincipalPolicy":                 (*Service).simulatePrincipalPolicy,
}

// Actions returns the names of the actions Handle knows, for routing and
// documentation.
func Actions() []string {
	out := make([]string, 0, len(handlers))
	for a := range handlers {
		out = append(out, a)
	}
	return out
}

// Handle runs one IAM action. result is a pointer to one of the *Result
// types, marshalled by encoding/xml as the <ActionResult> element, or nil
// for actions whose response has no result element. Errors the
// client should see are *awsproto.Error; any other error is an internal
// fault the caller logs and hides.
func (s *Service) Handle(ctx context.Context, caller *session.Principal, action string, form awsproto.Form) (result any, err error) {
	h, ok := handlers[action]
	if !ok {
		return nil, awsproto.Errorf(http.StatusBadRequest, "InvalidAction", "Could not find operation %s for version 2010-05-08", action)
	}
	return h(s, ctx, caller, form)
}

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now().UTC()
	}
	return time.Now().UTC()
}

func (s *Service) authorize(ctx context.Context, caller *session.Principal, action, resource string) error {
	if s.Authz == nil {
		return nil
	}
	return s.Authz.Authorize(ctx, caller, "iam:"+action, resource)
}

func (s *Service) roleARN(path, name string) string {
	return "arn:aws:iam::" + s.Account + ":role" + path + name
}

func (s *Service) policyARN(path, name string) string {
	return "arn:aws:iam::" + s.Account + ":policy" + path + name
}

func (s *Service) oidcARN(url string) string {
	return "arn:aws:iam::" + s.Account + ":oidc-provider/" + url
}

// authorizedRole loads a role and checks that caller may run action on it.
// A missing role is authorized against the path-less ARN first, so callers
// without permission learn nothing about which roles exist.
func (s *Service) authorizedRole(ctx context.Context, caller *session.Principal, action, name string) (store.Role, error) {
	r, err := s.Store.GetRole(ctx, name)
	found := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return store.Role{}, fmt.Errorf("iam: get role %q: %w", name, err)
	}
	arn := s.roleARN("/", name)
	if found {
		arn = r.ARN
	}
	if err := s.authorize(ctx, caller, action, arn); err != nil {
		return store.Role{}, err
	}
	if !found {
		return store.Role{}, noSuchRole(name)
	}
	return r, nil
}

// Errors with the wording IAM uses.

func noSuchRole(name string) error {
	return awsproto.Errorf(http.StatusNotFound, "NoSuchEntity", "The role with name %s cannot be found.", name)
}

func noSuchPolicy(arn string) error {
	return awsproto.Errorf(http.StatusNotFound, "NoSuchEntity", "Policy %s was not found.", arn)
}

func noSuchOIDC(arn string) error {
	return awsproto.Errorf(http.StatusNotFound, "NoSuchEntity", "OpenIDConnect provider not found for arn %s", arn)
}

func invalidInput(format string, args ...any) error {
	return awsproto.Errorf(http.StatusBadRequest, "InvalidInput", format, args...)
}

func limitExceeded(format string, args ...any) error {
	return awsproto.Errorf(http.StatusConflict, "LimitExceeded", format, args...)
}

func malformed(msg string) error {
	return awsproto.Errorf(http.StatusBadRequest, "MalformedPolicyDocument", "%s", msg)
}

// storeErr maps the store's sentinel errors to AWS errors; notFound builds
// the NoSuchEntity error of the operation. Anything else is wrapped as an
// internal fault.
func storeErr(op string, err error, notFound func() error) error {
	var ae *awsproto.Error
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, store.ErrNotFound) && notFound != nil:
		return notFound()
	case errors.Is(err, store.ErrInvalidMarker):
		return invalidInput("Invalid Marker.")
	}
	return fmt.Errorf("iam: %s: %w", op, err)
}
