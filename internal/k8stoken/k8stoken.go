// Package k8stoken verifies Kubernetes service-account tokens (projected,
// pod-bound JWTs) against a cluster's signing keys, and reads the
// kubernetes.io claims that say which pod on which node holds them.
package k8stoken

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/podid/podid/internal/oidc"
)

// Skew is the clock skew allowed on exp and nbf.
const Skew = 30 * time.Second

// Failure kinds; callers map them to API errors.
var (
	ErrInvalid  = errors.New("invalid service account token")
	ErrExpired  = errors.New("service account token expired")
	ErrAudience = errors.New("service account token audience not accepted")
	ErrIssuer   = errors.New("service account token issuer does not match the cluster")
)

// Claims are what podid needs from a pod's token.
type Claims struct {
	Issuer            string
	Audience          []string
	Subject           string
	Namespace         string
	ServiceAccount    string
	ServiceAccountUID string
	PodName           string
	PodUID            string
	NodeName          string
	NodeUID           string
	Expiry            time.Time
}

type kubernetesClaim struct {
	Namespace      string `json:"namespace"`
	ServiceAccount struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"serviceaccount"`
	Pod *struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"pod"`
	Node *struct {
		Name string `json:"name"`
		UID  string `json:"uid"`
	} `json:"node"`
}

// Verifier checks tokens of one cluster.
type Verifier struct {
	Issuer string
	Keys   oidc.KeyFunc
	Now    func() time.Time
}

// Verify checks signature, issuer, audience (one of audiences), exp and nbf,
// and decodes the kubernetes.io claim. The error wraps one of the failure
// kinds with a reason safe to return to the caller (it never holds the token).
func (v *Verifier) Verify(ctx context.Context, raw string, audiences ...string) (*Claims, error) {
	tok, err := oidc.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if tok.Claims.Issuer != v.Issuer {
		return nil, fmt.Errorf("%w: issuer %q", ErrIssuer, truncate(tok.Claims.Issuer))
	}
	if tok.Claims.Expiry.IsZero() {
		// Projected tokens always expire; one that never does is not one.
		return nil, fmt.Errorf("%w: no exp claim", ErrInvalid)
	}
	now := time.Now()
	if v.Now != nil {
		now = v.Now()
	}
	if err := tok.Verify(ctx, v.Keys, now, Skew); err != nil {
		if errors.Is(err, oidc.ErrExpired) {
			return nil, fmt.Errorf("%w: expired at %s", ErrExpired, tok.Claims.Expiry.UTC().Format(time.RFC3339))
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	ok := false
	for _, a := range audiences {
		if tok.Claims.HasAudience(a) {
			ok = true
		}
	}
	if !ok {
		return nil, fmt.Errorf("%w: token audiences %q", ErrAudience, tok.Claims.Audience)
	}
	raws, found := tok.Claims.Raw["kubernetes.io"]
	if !found {
		return nil, fmt.Errorf("%w: no kubernetes.io claim (not a service account token)", ErrInvalid)
	}
	var k kubernetesClaim
	if err := json.Unmarshal(raws, &k); err != nil || k.Namespace == "" || k.ServiceAccount.Name == "" {
		return nil, fmt.Errorf("%w: malformed kubernetes.io claim", ErrInvalid)
	}
	c := &Claims{
		Issuer:            tok.Claims.Issuer,
		Audience:          tok.Claims.Audience,
		Subject:           tok.Claims.Subject,
		Namespace:         k.Namespace,
		ServiceAccount:    k.ServiceAccount.Name,
		ServiceAccountUID: k.ServiceAccount.UID,
		Expiry:            tok.Claims.Expiry,
	}
	if want := "system:serviceaccount:" + k.Namespace + ":" + k.ServiceAccount.Name; c.Subject != want {
		return nil, fmt.Errorf("%w: subject does not match the kubernetes.io claim", ErrInvalid)
	}
	if k.Pod != nil {
		c.PodName, c.PodUID = k.Pod.Name, k.Pod.UID
	}
	if k.Node != nil {
		c.NodeName, c.NodeUID = k.Node.Name, k.Node.UID
	}
	return c, nil
}

func truncate(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}
