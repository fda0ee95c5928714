package server

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/sigv4"
	"github.com/podid/podid/internal/store"
)

// keyCacheTTL bounds how long a long-term key's secret is served from
// memory before the store is asked again (so a deleted key stops working).
const keyCacheTTL = 15 * time.Second

// authenticate verifies the request's SigV4 signature, made for service,
// and returns who signed it. Temporary (ASIA) credentials are verified from the sealed
// session token alone; long-term (AKIA) keys come from the store.
func (s *Server) authenticate(ctx context.Context, r *http.Request, body []byte, service string) (*session.Principal, error) {
	auth, err := sigv4.Parse(r)
	if err != nil {
		return nil, sigv4Error(err)
	}
	if err := auth.CheckScope(service); err != nil {
		return nil, sigv4Error(err)
	}
	now := time.Now()
	if auth.SecurityToken != "" {
		sess, err := s.openToken(ctx, auth.SecurityToken, now)
		switch {
		case errors.Is(err, session.ErrExpired):
			return nil, awsproto.Errorf(http.StatusForbidden, "ExpiredToken", "The security token included in the request is expired")
		case err != nil, sess.AccessKeyID != auth.AccessKeyID:
			return nil, awsproto.Errorf(http.StatusForbidden, "InvalidClientTokenId", "The security token included in the request is invalid.")
		}
		if err := auth.Verify(r, body, sess.SecretAccessKey, now); err != nil {
			return nil, sigv4Error(err)
		}
		return session.PrincipalOf(sess), nil
	}

	secret, principalARN, err := s.longTermKey(ctx, auth.AccessKeyID)
	if err != nil {
		return nil, err
	}
	if err := auth.Verify(r, body, secret, now); err != nil {
		return nil, sigv4Error(err)
	}
	p := &session.Principal{Account: s.account, ARN: principalARN, AccessKeyID: auth.AccessKeyID, UserID: s.account}
	return p, nil
}

func (s *Server) longTermKey(ctx context.Context, id string) (secret, principal string, err error) {
	s.keysMu.Lock()
	c, ok := s.keys[id]
	s.keysMu.Unlock()
	if ok && time.Since(c.fetched) < keyCacheTTL {
		return c.secret, c.principal, nil
	}
	invalid := awsproto.Errorf(http.StatusForbidden, "InvalidClientTokenId", "The security token included in the request is invalid.")
	k, err := s.store.GetAccessKey(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return "", "", invalid
	}
	if err != nil {
		return "", "", err
	}
	if k.Status != "" && k.Status != "Active" {
		return "", "", invalid
	}
	b, err := s.box.Open(k.SecretSealed, labelAccessKey+"/"+id)
	if err != nil {
		return "", "", err
	}
	s.keysMu.Lock()
	s.keys[id] = cachedKey{secret: string(b), principal: k.PrincipalARN, fetched: time.Now()}
	s.keysMu.Unlock()
	return string(b), k.PrincipalARN, nil
}

// sigv4Error turns a verification failure into the API error SDKs expect.
func sigv4Error(err error) error {
	var e *sigv4.Error
	if !errors.As(err, &e) {
		return err
	}
	status := http.StatusForbidden
	if e.Code == sigv4.CodeIncompleteSignature || e.Code == sigv4.CodeMissingAuthenticationToken {
		status = http.StatusBadRequest
		if e.Code == sigv4.CodeMissingAuthenticationToken {
			status = http.StatusForbidden
		}
	}
	return &awsproto.Error{Code: e.Code, Message: e.Message, Status: status}
}
