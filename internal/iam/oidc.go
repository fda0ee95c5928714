package iam

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
)

// OpenID Connect providers: the issuers whose tokens
// AssumeRoleWithWebIdentity accepts (IRSA).

func (s *Service) createOIDCProvider(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	u, err := oidcURL(form)
	if err != nil {
		return nil, err
	}
	clientIDs, err := clientIDList(form)
	if err != nil {
		return nil, err
	}
	thumbprints, err := thumbprintList(form)
	if err != nil {
		return nil, err
	}
	tags, err := tagList(form, "Tags")
	if err != nil {
		return nil, err
	}
	arn := s.oidcARN(u)
	if err := s.authorize(ctx, caller, "CreateOpenIDConnectProvider", arn); err != nil {
		return nil, err
	}
	o := store.OIDCProvider{
		ARN:         arn,
		URL:         u,
		ClientIDs:   clientIDs,
		Thumbprints: thumbprints,
		Tags:        tags,
		CreatedAt:   s.now(),
	}
	if err := s.Store.CreateOIDCProvider(ctx, o); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, awsproto.Errorf(http.StatusConflict, "EntityAlreadyExists", "Provider with url https://%s already exists.", u)
		}
		return nil, storeErr("create OIDC provider", err, nil)
	}
	return &CreateOpenIDConnectProviderResult{OpenIDConnectProviderArn: arn, Tags: tagsOut(tags)}, nil
}

// oidcURL reads the Url parameter and returns it without the scheme, the
// form IAM stores and reports.
func oidcURL(form awsproto.Form) (string, error) {
	if !form.Has("Url") {
		return "", null("url")
	}
	raw := form.Get("Url")
	if err := checkLen("url", raw, 1, maxOIDCURL); err != nil {
		return "", err
	}
	u, err := url.Parse(raw)
	if err != nil || !strings.EqualFold(u.Scheme, "https") || u.Host == "" || u.User != nil || u.Opaque != "" {
		return "", invalidInput("Invalid URL: %s. The URL must begin with https:// and name a host.", raw)
	}
	if strings.ContainsAny(raw, "?#") {
		return "", invalidInput("Invalid URL: %s. The URL must not contain a query or a fragment.", raw)
	}
	return raw[len("https://"):], nil
}

func clientIDList(form awsproto.Form) ([]string, error) {
	ids := dedupe(form.Members("ClientIDList"))
	for i, id := range ids {
		if err := checkLen("clientIDList."+strconv.Itoa(i+1)+".member", id, 1, maxClientIDLen); err != nil {
			return nil, err
		}
	}
	if len(ids) > maxClientIDs {
		return nil, limitExceeded("Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: %d", maxClientIDs)
	}
	return ids, nil
}

func thumbprintList(form awsproto.Form) ([]string, error) {
	tps := dedupe(form.Members("ThumbprintList"))
	if len(tps) > maxThumbprints {
		return nil, invalid("thumbprintList", "["+strings.Join(tps, ", ")+"]", "Member must have length less than or equal to "+strconv.Itoa(maxThumbprints))
	}
	for i, tp := range tps {
		if !thumbprintRE.MatchString(tp) {
			return nil, invalid("thumbprintList."+strconv.Itoa(i+1)+".member", tp, "Member must be 40 hexadecimal characters")
		}
	}
	return tps, nil
}

// dedupe drops repeated values, keeping the first of each.
func dedupe(vs []string) []string {
	out := vs[:0:0]
	for _, v := range vs {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// requiredOIDCARN reads an OpenIDConnectProviderArn parameter.
func requiredOIDCARN(form awsproto.Form) (string, error) {
	const param = "OpenIDConnectProviderArn"
	if !form.Has(param) {
		return "", null("openIDConnectProviderArn")
	}
	arn := form.Get(param)
	if err := checkLen("openIDConnectProviderArn", arn, 20, 2048); err != nil {
		return "", err
	}
	if !strings.HasPrefix(arn, "arn:aws:iam::") || !strings.Contains(arn, ":oidc-provider/") {
		return "", invalidInput("ARN %s is not valid.", arn)
	}
	return arn, nil
}

func (s *Service) getOIDCProvider(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	arn, err := requiredOIDCARN(form)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, caller, "GetOpenIDConnectProvider", arn); err != nil {
		return nil, err
	}
	o, err := s.Store.GetOIDCProvider(ctx, arn)
	if err != nil {
		return nil, storeErr("get OIDC provider", err, func() error { return noSuchOIDC(arn) })
	}
	return &GetOpenIDConnectProviderResult{
		URL:            o.URL,
		ClientIDList:   o.ClientIDs,
		ThumbprintList: o.Thumbprints,
		CreateDate:     isoTime(o.CreatedAt),
		Tags:           tagsOut(o.Tags),
	}, nil
}

func (s *Service) listOIDCProviders(ctx context.Context, caller *session.Principal, _ awsproto.Form) (any, error) {
	if err := s.authorize(ctx, caller, "ListOpenIDConnectProviders", "*"); err != nil {
		return nil, err
	}
	os, err := s.Store.ListOIDCProviders(ctx)
	if err != nil {
		return nil, storeErr("list OIDC providers", err, nil)
	}
	res := &ListOpenIDConnectProvidersResult{OpenIDConnectProviderList: make([]OIDCProviderEntry, 0, len(os))}
	for _, o := range os {
		res.OpenIDConnectProviderList = append(res.OpenIDConnectProviderList, OIDCProviderEntry{Arn: o.ARN})
	}
	return res, nil
}

func (s *Service) deleteOIDCProvider(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	arn, err := requiredOIDCARN(form)
	if err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, caller, "DeleteOpenIDConnectProvider", arn); err != nil {
		return nil, err
	}
	if err := s.Store.DeleteOIDCProvider(ctx, arn); err != nil {
		return nil, storeErr("delete OIDC provider", err, func() error { return noSuchOIDC(arn) })
	}
	return nil, nil
}

func (s *Service) addClientID(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	return s.changeClientIDs(ctx, caller, form, "AddClientIDToOpenIDConnectProvider", func(ids []string, id string) ([]string, error) {
		if slices.Contains(ids, id) {
			return ids, nil
		}
		if len(ids) >= maxClientIDs {
			return nil, limitExceeded("Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: %d", maxClientIDs)
		}
		return append(ids, id), nil
	})
}

func (s *Service) removeClientID(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	return s.changeClientIDs(ctx, caller, form, "RemoveClientIDFromOpenIDConnectProvider", func(ids []string, id string) ([]string, error) {
		return slices.DeleteFunc(ids, func(v string) bool { return v == id }), nil
	})
}

// changeClientIDs applies change to a provider's client IDs in one store
// transaction.
func (s *Service) changeClientIDs(ctx context.Context, caller *session.Principal, form awsproto.Form, action string, change func([]string, string) ([]string, error)) (any, error) {
	arn, err := requiredOIDCARN(form)
	if err != nil {
		return nil, err
	}
	if !form.Has("ClientID") {
		return nil, null("clientID")
	}
	id := form.Get("ClientID")
	if err := checkLen("clientID", id, 1, maxClientIDLen); err != nil {
		return nil, err
	}
	if err := s.authorize(ctx, caller, action, arn); err != nil {
		return nil, err
	}
	_, err = s.Store.UpdateOIDCProvider(ctx, arn, func(o *store.OIDCProvider) error {
		ids, err := change(slices.Clone(o.ClientIDs), id)
		if err != nil {
			return err
		}
		o.ClientIDs = ids
		return nil
	})
	if err != nil {
		return nil, storeErr("update OIDC provider", err, func() error { return noSuchOIDC(arn) })
	}
	return nil, nil
}
