package iam

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/policy"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
)

func (s *Service) createRole(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	name, err := requiredName(form, "RoleName", maxRoleName)
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
	maxDur, err := form.Int("MaxSessionDuration", minSessionDuration, minSessionDuration, maxSessionDuration)
	if err != nil {
		return nil, err
	}
	tags, err := tagList(form, "Tags")
	if err != nil {
		return nil, err
	}
	// Ignoring a boundary would grant more than the caller meant to.
	if form.Get("PermissionsBoundary") != "" {
		return nil, invalidInput("Permissions boundaries are not supported.")
	}
	arn := s.roleARN(path, name)
	if err := s.authorize(ctx, caller, "CreateRole", arn); err != nil {
		return nil, err
	}
	doc, err := trustDocument(form)
	if err != nil {
		return nil, err
	}
	r := store.Role{
		RoleID:             session.NewUniqueID("AROA"),
		Name:               name,
		Path:               path,
		ARN:                arn,
		AssumeRolePolicy:   doc,
		Description:        desc,
		MaxSessionDuration: int32(maxDur),
		Tags:               tags,
		CreatedAt:          s.now(),
	}
	if err := s.Store.CreateRole(ctx, r); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, awsproto.Errorf(http.StatusConflict, "EntityAlreadyExists", "Role with name %s already exists.", name)
		}
		return nil, storeErr("create role", err, nil)
	}
	return &CreateRoleResult{Role: roleOut(r, true)}, nil
}

// trustDocument reads and checks an AssumeRolePolicyDocument (CreateRole)
// or PolicyDocument (UpdateAssumeRolePolicy) parameter.
func trustDocument(form awsproto.Form) (string, error) {
	param := "AssumeRolePolicyDocument"
	if !form.Has(param) && form.Has("PolicyDocument") {
		param = "PolicyDocument"
	}
	doc, _, err := requiredDocument(form, param, policy.Trust)
	if err != nil {
		return "", err
	}
	if policy.Size(doc) > maxTrustSize {
		return "", limitExceeded("Cannot exceed quota for ACLSizePerRole: %d", maxTrustSize)
	}
	return doc, nil
}

func (s *Service) getRole(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	name, err := requiredName(form, "RoleName", maxRoleName)
	if err != nil {
		return nil, err
	}
	r, err := s.authorizedRole(ctx, caller, "GetRole", name)
	if err != nil {
		return nil, err
	}
	return &GetRoleResult{Role: roleOut(r, true)}, nil
}

func (s *Service) listRoles(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	prefix, err := optionalPathPrefix(form)
	if err != nil {
		return nil, err
	}
	p, err := page(form)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, caller, "ListRoles", s.roleARN(prefix, "")); err != nil {
		return nil, err
	}
	roles, next, err := s.Store.ListRoles(ctx, store.RoleFilter{PathPrefix: prefix}, p)
	if err != nil {
		return nil, storeErr("list roles", err, nil)
	}
	res := &ListRolesResult{Roles: make([]Role, 0, len(roles)), IsTruncated: next != "", Marker: next}
	for _, r := range roles {
		res.Roles = append(res.Roles, roleOut(r, false))
	}
	return res, nil
}

func (s *Service) deleteRole(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	name, err := requiredName(form, "RoleName", maxRoleName)
	if err != nil {
		return nil, err
	}
	if _, err := s.authorizedRole(ctx, caller, "DeleteRole", name); err != nil {
		return nil, err
	}
	if err := s.Store.DeleteRole(ctx, name); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return nil, awsproto.Errorf(http.StatusConflict, "DeleteConflict", "Cannot delete entity, must detach all policies first.")
		}
		return nil, storeErr("delete role", err, func() error { return noSuchRole(name) })
	}
	return nil, nil
}

func (s *Service) updateAssumeRolePolicy(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	name, err := requiredName(form, "RoleName", maxRoleName)
	if err != nil {
		return nil, err
	}
	if _, err := s.authorizedRole(ctx, caller, "UpdateAssumeRolePolicy", name); err != nil {
		return nil, err
	}
	doc, err := trustDocument(form)
	if err != nil {
		return nil, err
	}
	_, err = s.Store.UpdateRole(ctx, name, func(r *store.Role) error {
		r.AssumeRolePolicy = doc
		return nil
	})
	if err != nil {
		return nil, storeErr("update assume role policy", err, func() error { return noSuchRole(name) })
	}
	return nil, nil
}

func (s *Service) updateRole(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	name, err := requiredName(form, "RoleName", maxRoleName)
	if err != nil {
		return nil, err
	}
	setDesc := form.Has("Description")
	desc := form.Get("Description")
	if err := checkDescription(desc); err != nil {
		return nil, err
	}
	setDur := form.Get("MaxSessionDuration") != ""
	maxDur, err := form.Int("MaxSessionDuration", 0, minSessionDuration, maxSessionDuration)
	if err != nil {
		return nil, err
	}
	if _, err := s.authorizedRole(ctx, caller, "UpdateRole", name); err != nil {
		return nil, err
	}
	_, err = s.Store.UpdateRole(ctx, name, func(r *store.Role) error {
		if setDesc {
			r.Description = desc
		}
		if setDur {
			r.MaxSessionDuration = int32(maxDur)
		}
		return nil
	})
	if err != nil {
		return nil, storeErr("update role", err, func() error { return noSuchRole(name) })
	}
	return &UpdateRoleResult{}, nil
}

func (s *Service) tagRole(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	name, err := requiredName(form, "RoleName", maxRoleName)
	if err != nil {
		return nil, err
	}
	tags, err := tagList(form, "Tags")
	if err != nil {
		return nil, err
	}
	if len(tags) == 0 {
		return nil, null("tags")
	}
	if _, err := s.authorizedRole(ctx, caller, "TagRole", name); err != nil {
		return nil, err
	}
	_, err = s.Store.UpdateRole(ctx, name, func(r *store.Role) error {
		merged, err := mergeTags(r.Tags, tags, "TagsPerRole")
		if err != nil {
			return err
		}
		r.Tags = merged
		return nil
	})
	if err != nil {
		return nil, storeErr("tag role", err, func() error { return noSuchRole(name) })
	}
	return nil, nil
}

func (s *Service) untagRole(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	name, err := requiredName(form, "RoleName", maxRoleName)
	if err != nil {
		return nil, err
	}
	keys := form.Members("TagKeys")
	if len(keys) == 0 {
		return nil, null("tagKeys")
	}
	if len(keys) > maxTags {
		return nil, invalid("tagKeys", "["+strconv.Itoa(len(keys))+" keys]", "Member must have length less than or equal to "+strconv.Itoa(maxTags))
	}
	for i, k := range keys {
		field := "tagKeys." + strconv.Itoa(i+1) + ".member"
		if err := checkLen(field, k, 1, maxTagKey); err != nil {
			return nil, err
		}
		if !tagKeyRE.MatchString(k) {
			return nil, invalid(field, k, `Member must satisfy regular expression pattern: [\p{L}\p{Z}\p{N}_.:/=+\-@]+`)
		}
	}
	if _, err := s.authorizedRole(ctx, caller, "UntagRole", name); err != nil {
		return nil, err
	}
	_, err = s.Store.UpdateRole(ctx, name, func(r *store.Role) error {
		r.Tags = removeTags(r.Tags, keys)
		return nil
	})
	if err != nil {
		return nil, storeErr("untag role", err, func() error { return noSuchRole(name) })
	}
	return nil, nil
}

// removeTags drops tags whose key matches one of keys case-insensitively;
// keys that are not present are ignored, as in IAM.
func removeTags(tags []store.Tag, keys []string) []store.Tag {
	out := tags[:0:0]
	for _, t := range tags {
		drop := false
		for _, k := range keys {
			if strings.EqualFold(t.Key, k) {
				drop = true
				break
			}
		}
		if !drop {
			out = append(out, t)
		}
	}
	return out
}

func (s *Service) listRoleTags(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	name, err := requiredName(form, "RoleName", maxRoleName)
	if err != nil {
		return nil, err
	}
	p, err := page(form)
	if err != nil {
		return nil, err
	}
	// A role has at most 50 tags, so they are paged in memory; the marker
	// is the index of the next tag.
	start := 0
	if p.Marker != "" {
		start, err = strconv.Atoi(p.Marker)
		if err != nil || start < 0 {
			return nil, invalidInput("Invalid Marker.")
		}
	}
	r, err := s.authorizedRole(ctx, caller, "ListRoleTags", name)
	if err != nil {
		return nil, err
	}
	tags := tagsOut(r.Tags)
	if start > len(tags) {
		return nil, invalidInput("Invalid Marker.")
	}
	end := min(start+p.MaxItems, len(tags))
	res := &ListRoleTagsResult{Tags: tags[start:end]}
	if end < len(tags) {
		res.IsTruncated = true
		res.Marker = strconv.Itoa(end)
	}
	return res, nil
}

// Inline role policies.

func (s *Service) putRolePolicy(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	roleName, err := requiredName(form, "RoleName", maxRoleName)
	if err != nil {
		return nil, err
	}
	policyName, err := requiredName(form, "PolicyName", maxPolicyName)
	if err != nil {
		return nil, err
	}
	if _, err := s.authorizedRole(ctx, caller, "PutRolePolicy", roleName); err != nil {
		return nil, err
	}
	doc, _, err := requiredDocument(form, "PolicyDocument", policy.Identity)
	if err != nil {
		return nil, err
	}
	// The quota is on the sum of all inline policies of the role, with the
	// one being replaced counted at its new size.
	total := policy.Size(doc)
	err = s.eachRolePolicy(ctx, roleName, func(p store.RolePolicy) {
		if p.PolicyName != policyName {
			total += policy.Size(p.Document)
		}
	})
	if err != nil {
		return nil, storeErr("list role policies", err, func() error { return noSuchRole(roleName) })
	}
	if total > maxInlineSize {
		return nil, limitExceeded("Maximum policy size of %d bytes exceeded for role %s", maxInlineSize, roleName)
	}
	err = s.Store.PutRolePolicy(ctx, store.RolePolicy{RoleName: roleName, PolicyName: policyName, Document: doc})
	if err != nil {
		return nil, storeErr("put role policy", err, func() error { return noSuchRole(roleName) })
	}
	return nil, nil
}

// eachRolePolicy calls fn for every inline policy of a role.
func (s *Service) eachRolePolicy(ctx context.Context, role string, fn func(store.RolePolicy)) error {
	p := store.Page{MaxItems: 1000}
	for {
		ps, next, err := s.Store.ListRolePolicies(ctx, role, p)
		if err != nil {
			return err
		}
		for _, rp := range ps {
			fn(rp)
		}
		if next == "" {
			return nil
		}
		p.Marker = next
	}
}

func (s *Service) getRolePolicy(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	roleName, err := requiredName(form, "RoleName", maxRoleName)
	if err != nil {
		return nil, err
	}
	policyName, err := requiredName(form, "PolicyName", maxPolicyName)
	if err != nil {
		return nil, err
	}
	if _, err := s.authorizedRole(ctx, caller, "GetRolePolicy", roleName); err != nil {
		return nil, err
	}
	p, err := s.Store.GetRolePolicy(ctx, roleName, policyName)
	if err != nil {
		return nil, storeErr("get role policy", err, func() error { return noSuchRolePolicy(policyName) })
	}
	return &GetRolePolicyResult{RoleName: roleName, PolicyName: p.PolicyName, PolicyDocument: urlEncode(p.Document)}, nil
}

func noSuchRolePolicy(name string) error {
	return awsproto.Errorf(http.StatusNotFound, "NoSuchEntity", "The role policy with name %s cannot be found.", name)
}

func (s *Service) listRolePolicies(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	roleName, err := requiredName(form, "RoleName", maxRoleName)
	if err != nil {
		return nil, err
	}
	p, err := page(form)
	if err != nil {
		return nil, err
	}
	if _, err := s.authorizedRole(ctx, caller, "ListRolePolicies", roleName); err != nil {
		return nil, err
	}
	ps, next, err := s.Store.ListRolePolicies(ctx, roleName, p)
	if err != nil {
		return nil, storeErr("list role policies", err, func() error { return noSuchRole(roleName) })
	}
	res := &ListRolePoliciesResult{PolicyNames: make([]string, 0, len(ps)), IsTruncated: next != "", Marker: next}
	for _, rp := range ps {
		res.PolicyNames = append(res.PolicyNames, rp.PolicyName)
	}
	return res, nil
}

func (s *Service) deleteRolePolicy(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	roleName, err := requiredName(form, "RoleName", maxRoleName)
	if err != nil {
		return nil, err
	}
	policyName, err := requiredName(form, "PolicyName", maxPolicyName)
	if err != nil {
		return nil, err
	}
	if _, err := s.authorizedRole(ctx, caller, "DeleteRolePolicy", roleName); err != nil {
		return nil, err
	}
	if err := s.Store.DeleteRolePolicy(ctx, roleName, policyName); err != nil {
		return nil, storeErr("delete role policy", err, func() error { return noSuchRolePolicy(policyName) })
	}
	return nil, nil
}

// roleNameFromARN returns the name of a role ARN of this account, or an
// error naming field when arn is not one.
func (s *Service) roleNameFromARN(field, arn string) (string, error) {
	prefix := "arn:aws:iam::" + s.Account + ":role/"
	if !strings.HasPrefix(arn, prefix) {
		if strings.HasPrefix(arn, "arn:aws:iam::") && strings.Count(arn, ":") == 5 {
			return "", awsproto.Errorf(http.StatusNotFound, "NoSuchEntity", "The %s %s does not exist.", field, arn)
		}
		return "", invalidInput("Invalid ARN: %s", arn)
	}
	name := arn[strings.LastIndex(arn, "/")+1:]
	if name == "" || !nameRE.MatchString(name) || len(name) > maxRoleName {
		return "", invalidInput("Invalid ARN: %s", arn)
	}
	return name, nil
}
