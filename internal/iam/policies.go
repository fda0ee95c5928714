package iam

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/policy"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
)

// Customer managed policies and their attachment to roles. Only one
// version (v1) of each policy exists: policy versions are not served.

func (s *Service) createPolicy(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	name, err := requiredName(form, "PolicyName", maxPolicyName)
	if err != nil {
		return nil, err
	}
	path, err := optionalPath(form)
	if err != nil {
		return nil, err
	}
	desc := form.Get("Description")
	if err := checkDescription(desc); err != nil {
		return nil, err
	}
	tags, err := tagList(form, "Tags")
	if err != nil {
		return nil, err
	}
	arn := s.policyARN(path, name)
	if err := s.authorize(ctx, caller, "CreatePolicy", arn); err != nil {
		return nil, err
	}
	doc, _, err := requiredDocument(form, "PolicyDocument", policy.Identity)
	if err != nil {
		return nil, err
	}
	if policy.Size(doc) > maxManagedSize {
		return nil, limitExceeded("Cannot exceed quota for PolicySize: %d", maxManagedSize)
	}
	now := s.now()
	p := store.ManagedPolicy{
		ARN:            arn,
		PolicyID:       session.NewUniqueID("ANPA"),
		Name:           name,
		Path:           path,
		Description:    desc,
		Document:       doc,
		DefaultVersion: "v1",
		Tags:           tags,
		CreatedAt:      now,
		UpdatedAt:      now,
	}
	if err := s.Store.CreatePolicy(ctx, p); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, awsproto.Errorf(http.StatusConflict, "EntityAlreadyExists", "A policy called %s already exists. Duplicate names are not allowed.", name)
		}
		return nil, storeErr("create policy", err, nil)
	}
	return &CreatePolicyResult{Policy: policyOut(p, true)}, nil
}

// requiredPolicyARN reads a PolicyArn parameter.
func requiredPolicyARN(form awsproto.Form) (string, error) {
	if !form.Has("PolicyArn") {
		return "", null("policyArn")
	}
	arn := form.Get("PolicyArn")
	if err := checkLen("policyArn", arn, 20, 2048); err != nil {
		return "", err
	}
	rest, ok := strings.CutPrefix(arn, "arn:aws:iam::")
	if !ok {
		return "", invalidInput("ARN %s is not valid.", arn)
	}
	_, res, ok := strings.Cut(rest, ":")
	if !ok || !strings.HasPrefix(res, "policy/") || strings.HasSuffix(res, "/") {
		return "", invalidInput("ARN %s is not valid.", arn)
	}
	return arn, nil
}

func (s *Service) getPolicy(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	arn, err := requiredPolicyARN(form)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, caller, "GetPolicy", arn); err != nil {
		return nil, err
	}
	p, err := s.Store.GetPolicy(ctx, arn)
	if err != nil {
		return nil, storeErr("get policy", err, func() error { return noSuchPolicy(arn) })
	}
	return &GetPolicyResult{Policy: policyOut(p, true)}, nil
}

func (s *Service) listPolicies(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	scope := form.Get("Scope")
	switch scope {
	case "", "All", "AWS", "Local":
	default:
		return nil, invalid("scope", scope, "Member must satisfy enum value set: [All, AWS, Local]")
	}
	usage := form.Get("PolicyUsageFilter")
	switch usage {
	case "", "PermissionsPolicy", "PermissionsBoundary":
	default:
		return nil, invalid("policyUsageFilter", usage, "Member must satisfy enum value set: [PermissionsPolicy, PermissionsBoundary]")
	}
	onlyAttached, err := form.Bool("OnlyAttached")
	if err != nil {
		return nil, err
	}
	prefix, err := optionalPathPrefix(form)
	if err != nil {
		return nil, err
	}
	p, err := page(form)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, caller, "ListPolicies", s.policyARN(prefix, "")); err != nil {
		return nil, err
	}
	res := &ListPoliciesResult{Policies: []Policy{}}
	// Only customer managed policies exist, and none is used as a
	// permissions boundary.
	if scope == "AWS" || usage == "PermissionsBoundary" {
		return res, nil
	}
	ps, next, err := s.Store.ListPolicies(ctx, store.PolicyFilter{PathPrefix: prefix, OnlyAttached: onlyAttached}, p)
	if err != nil {
		return nil, storeErr("list policies", err, nil)
	}
	for _, mp := range ps {
		res.Policies = append(res.Policies, policyOut(mp, false))
	}
	res.IsTruncated, res.Marker = next != "", next
	return res, nil
}

func (s *Service) deletePolicy(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	arn, err := requiredPolicyARN(form)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, caller, "DeletePolicy", arn); err != nil {
		return nil, err
	}
	if err := s.Store.DeletePolicy(ctx, arn); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, awsproto.Errorf(http.StatusConflict, "DeleteConflict", "Cannot delete a policy attached to entities.")
		}
		return nil, storeErr("delete policy", err, func() error { return noSuchPolicy(arn) })
	}
	return nil, nil
}

func (s *Service) attachRolePolicy(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	roleName, err := requiredName(form, "RoleName", maxRoleName)
	if err != nil {
		return nil, err
	}
	arn, err := requiredPolicyARN(form)
	if err != nil {
		return nil, err
	}
	if _, err := s.authorizedRole(ctx, caller, "AttachRolePolicy", roleName); err != nil {
		return nil, err
	}
	notAttachable := func() error {
		return awsproto.Errorf(http.StatusNotFound, "NoSuchEntity", "Policy %s does not exist or is not attachable.", arn)
	}
	if _, err := s.Store.GetPolicy(ctx, arn); err != nil {
		return nil, storeErr("get policy", err, notAttachable)
	}
	attached, err := s.attachedARNs(ctx, roleName)
	if err != nil {
		return nil, storeErr("list attached role policies", err, func() error { return noSuchRole(roleName) })
	}
	for _, a := range attached {
		if a == arn {
			return nil, nil // attaching twice is not an error in IAM
		}
	}
	if len(attached) >= maxAttached {
		return nil, limitExceeded("Cannot exceed quota for PoliciesPerRole: %d", maxAttached)
	}
	if err := s.Store.AttachRolePolicy(ctx, roleName, arn); err != nil && !errors.Is(err, store.ErrExists) {
		// The role was checked above; a policy deleted since is the likelier miss.
		return nil, storeErr("attach role policy", err, notAttachable)
	}
	return nil, nil
}

// attachedARNs returns the ARNs of the managed policies attached to a role.
func (s *Service) attachedARNs(ctx context.Context, role string) ([]string, error) {
	var out []string
	p := store.Page{MaxItems: 1000}
	for {
		ps, next, err := s.Store.ListAttachedRolePolicies(ctx, role, store.PolicyFilter{}, p)
		if err != nil {
			return nil, err
		}
		for _, mp := range ps {
			out = append(out, mp.ARN)
		}
		if next == "" {
			return out, nil
		}
		p.Marker = next
	}
}

func (s *Service) detachRolePolicy(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	roleName, err := requiredName(form, "RoleName", maxRoleName)
	if err != nil {
		return nil, err
	}
	arn, err := requiredPolicyARN(form)
	if err != nil {
		return nil, err
	}
	if _, err := s.authorizedRole(ctx, caller, "DetachRolePolicy", roleName); err != nil {
		return nil, err
	}
	if err := s.Store.DetachRolePolicy(ctx, roleName, arn); err != nil {
		return nil, storeErr("detach role policy", err, func() error { return noSuchPolicy(arn) })
	}
	return nil, nil
}

func (s *Service) listAttachedRolePolicies(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	roleName, err := requiredName(form, "RoleName", maxRoleName)
	if err != nil {
		return nil, err
	}
	prefix, err := optionalPathPrefix(form)
	if err != nil {
		return nil, err
	}
	p, err := page(form)
	if err != nil {
		return nil, err
	}
	if _, err := s.authorizedRole(ctx, caller, "ListAttachedRolePolicies", roleName); err != nil {
		return nil, err
	}
	ps, next, err := s.Store.ListAttachedRolePolicies(ctx, roleName, store.PolicyFilter{PathPrefix: prefix}, p)
	if err != nil {
		return nil, storeErr("list attached role policies", err, func() error { return noSuchRole(roleName) })
	}
	res := &ListAttachedRolePoliciesResult{AttachedPolicies: make([]AttachedPolicy, 0, len(ps)), IsTruncated: next != "", Marker: next}
	for _, mp := range ps {
		res.AttachedPolicies = append(res.AttachedPolicies, AttachedPolicy{PolicyName: mp.Name, PolicyArn: mp.ARN})
	}
	return res, nil
}
