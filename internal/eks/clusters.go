package eks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/k8stoken"
	"github.com/podid/podid/internal/oidc"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
	"github.com/podid/podid/internal/ttlcache"
)

// Key sources a cluster can be registered with.
const (
	SourceJWKSFile   = "jwks-file"
	SourceJWKSURL    = "jwks-url"
	SourceDiscovery  = "discovery"
	SourceKubeconfig = "kubeconfig"
)

// keyMaxAge is how long a cluster's keys are used before a refetch; an
// unknown kid refetches sooner.
const keyMaxAge = 10 * time.Minute

// RegisterClusterInput is the body of POST /podid/clusters.
type RegisterClusterInput struct {
	Name        string            `json:"name"`
	Issuer      string            `json:"issuer"`
	JWKS        json.RawMessage   `json:"jwks,omitempty"`       // --jwks-file content
	JWKSURL     string            `json:"jwksUrl,omitempty"`    // --jwks-url
	Discovery   bool              `json:"discovery,omitempty"`  // --discovery
	Kubeconfig  string            `json:"kubeconfig,omitempty"` // --kubeconfig content
	TokenReview bool              `json:"tokenReview,omitempty"`
	Tags        map[string]string `json:"tags,omitempty"`
}

// ClusterOut is the Cluster shape of DescribeCluster.
type ClusterOut struct {
	Name      string            `json:"name"`
	Arn       string            `json:"arn"`
	CreatedAt float64           `json:"createdAt"`
	Status    string            `json:"status"`
	Identity  clusterIdentity   `json:"identity"`
	Tags      map[string]string `json:"tags,omitempty"`
	// podid's own description of where the keys come from.
	KeySource   string `json:"podidKeySource,omitempty"`
	TokenReview bool   `json:"podidTokenReview,omitempty"`
}

type clusterIdentity struct {
	OIDC struct {
		Issuer string `json:"issuer"`
	} `json:"oidc"`
}

var clusterNameRE = regexp.MustCompile(`^[0-9A-Za-z][A-Za-z0-9\-_]{0,99}$`)

func (s *Service) registerCluster(ctx context.Context, p *session.Principal, req *Request) (int, any, error) {
	var in RegisterClusterInput
	if err := awsproto.DecodeJSON(req.Body, &in); err != nil {
		return 0, nil, err
	}
	if !clusterNameRE.MatchString(in.Name) {
		return 0, nil, invalidParameter("name %q must be 1-100 characters: letters, digits, hyphens and underscores, starting with a letter or digit", in.Name)
	}
	u, err := url.Parse(in.Issuer)
	if err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return 0, nil, invalidParameter("issuer %q must be an http(s) URL", in.Issuer)
	}
	c := store.Cluster{Name: in.Name, ARN: s.clusterARN(in.Name), Issuer: in.Issuer, TokenReview: in.TokenReview, Tags: tagList(in.Tags), CreatedAt: s.now().UTC()}
	sources := 0
	if len(in.JWKS) > 0 {
		sources++
		c.KeySource = SourceJWKSFile
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(in.JWKS, &set); err != nil || len(set.Keys) == 0 {
			return 0, nil, invalidParameter("jwks is not a JSON Web Key Set with at least one key")
		}
		for _, k := range set.Keys {
			if !k.IsPublic() {
				return 0, nil, invalidParameter("jwks key %q is not a public key", k.KeyID)
			}
		}
		c.JWKS = in.JWKS
	}
	if in.JWKSURL != "" {
		sources++
		c.KeySource, c.KeySourceArg = SourceJWKSURL, in.JWKSURL
	}
	if in.Discovery {
		sources++
		c.KeySource = SourceDiscovery
	}
	if in.Kubeconfig != "" {
		if _, err := clientcmd.RESTConfigFromKubeConfig([]byte(in.Kubeconfig)); err != nil {
			return 0, nil, invalidParameter("kubeconfig cannot be used: %v", err)
		}
		c.Kubeconfig = in.Kubeconfig
		if sources == 0 {
			sources++
			c.KeySource = SourceKubeconfig
		}
	}
	if sources != 1 {
		return 0, nil, invalidParameter("give exactly one key source: jwks, jwksUrl, discovery or kubeconfig")
	}
	if c.TokenReview && c.Kubeconfig == "" {
		return 0, nil, invalidParameter("tokenReview needs a kubeconfig")
	}
	if err := s.authorize(ctx, p, "eks:CreateCluster", c.ARN); err != nil {
		return 0, nil, err
	}
	// Fetch the keys now, so a wrong source fails the registration rather
	// than every pod later.
	rt, err := s.newRuntime(c)
	if err != nil {
		return 0, nil, invalidParameter("%v", err)
	}
	keys, err := rt.keys.Keys(ctx)
	if err != nil || len(keys.Keys) == 0 {
		return 0, nil, invalidParameter("cannot read the cluster's signing keys: %v", err)
	}
	c.JWKS, _ = json.Marshal(keys)
	if err := s.Store.CreateCluster(ctx, c); err != nil {
		if errors.Is(err, store.ErrExists) {
			return 0, nil, awsproto.Errorf(http.StatusConflict, "ResourceInUseException", "Cluster already exists with name: %s", c.Name)
		}
		return 0, nil, fmt.Errorf("eks: create cluster: %w", err)
	}
	return http.StatusOK, map[string]any{"cluster": clusterOut(c)}, nil
}

func clusterOut(c store.Cluster) ClusterOut {
	out := ClusterOut{Name: c.Name, Arn: c.ARN, CreatedAt: epoch(c.CreatedAt), Status: "ACTIVE", Tags: tagMap(c.Tags), KeySource: c.KeySource, TokenReview: c.TokenReview}
	out.Identity.OIDC.Issuer = c.Issuer
	return out
}

func (s *Service) describeCluster(ctx context.Context, p *session.Principal, op Op) (int, any, error) {
	if err := s.authorize(ctx, p, "eks:DescribeCluster", s.clusterARN(op.Cluster)); err != nil {
		return 0, nil, err
	}
	c, err := s.getCluster(ctx, op.Cluster)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"cluster": clusterOut(c)}, nil
}

func (s *Service) listClusters(ctx context.Context, p *session.Principal, req *Request) (int, any, error) {
	if err := s.authorize(ctx, p, "eks:ListClusters", "arn:aws:eks:"+s.Region+":"+s.Account+":cluster/*"); err != nil {
		return 0, nil, err
	}
	max, err := maxResults(req.Query, 100)
	if err != nil {
		return 0, nil, err
	}
	cs, next, err := s.Store.ListClusters(ctx, store.Page{Marker: req.Query.Get("nextToken"), MaxItems: max})
	if err != nil {
		return 0, nil, fmt.Errorf("eks: list clusters: %w", err)
	}
	names := make([]string, 0, len(cs))
	for _, c := range cs {
		names = append(names, c.Name)
	}
	out := map[string]any{"clusters": names}
	if next != "" {
		out["nextToken"] = next
	}
	return http.StatusOK, out, nil
}

func (s *Service) deleteCluster(ctx context.Context, p *session.Principal, op Op) (int, any, error) {
	if err := s.authorize(ctx, p, "eks:DeleteCluster", s.clusterARN(op.Cluster)); err != nil {
		return 0, nil, err
	}
	c, err := s.getCluster(ctx, op.Cluster)
	if err != nil {
		return 0, nil, err
	}
	if err := s.Store.DeleteCluster(ctx, op.Cluster); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return 0, nil, notFound("No cluster found for name: %s.", op.Cluster)
		}
		return 0, nil, fmt.Errorf("eks: delete cluster: %w", err)
	}
	s.forgetCluster(op.Cluster)
	return http.StatusOK, map[string]any{"cluster": clusterOut(c)}, nil
}

func (s *Service) getCluster(ctx context.Context, name string) (store.Cluster, error) {
	c, err := s.Store.GetCluster(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return c, notFound("No cluster found for name: %s.", name)
	}
	if err != nil {
		return c, fmt.Errorf("eks: get cluster: %w", err)
	}
	return c, nil
}

// clusterRuntime is what verifying a cluster's tokens needs, kept between
// calls: the key set (with its cache) and the apiserver client.
type clusterRuntime struct {
	row      store.Cluster
	loaded   time.Time // guarded by Service.mu
	keys     *oidc.KeySet
	verifier *k8stoken.Verifier
	kube     kubernetes.Interface // nil unless a kubeconfig was given
	verified *ttlcache.Cache[verifiedKey, *k8stoken.Claims]
}

// verifiedTokenTTL bounds how long a verified token is trusted without
// checking its signature again: agents and SDK retries send the same token
// many times. A key removed from the cluster's JWKS stops working within
// it; TokenReview, when enabled, still runs on every call.
const verifiedTokenTTL = 30 * time.Second

type verifiedKey struct {
	audience string
	token    [sha256.Size]byte // the hash: raw tokens are not kept in memory maps
}

// verify checks a token through the cache of recently verified ones.
func (rt *clusterRuntime) verify(ctx context.Context, token, audience string, now time.Time) (*k8stoken.Claims, error) {
	key := verifiedKey{audience: audience, token: sha256.Sum256([]byte(token))}
	if c, ok := rt.verified.Get(key, now); ok {
		return c, nil
	}
	c, err := rt.verifier.Verify(ctx, token, audience)
	if err != nil {
		return nil, err
	}
	expires := now.Add(verifiedTokenTTL)
	if c.Expiry.Before(expires) {
		expires = c.Expiry
	}
	rt.verified.PutUntil(key, c, expires)
	return c, nil
}

func (s *Service) newRuntime(c store.Cluster) (*clusterRuntime, error) {
	rt := &clusterRuntime{row: c, loaded: s.now(), verified: ttlcache.New[verifiedKey, *k8stoken.Claims](verifiedTokenTTL, 100000)}
	var initial jose.JSONWebKeySet
	if len(c.JWKS) > 0 {
		_ = json.Unmarshal(c.JWKS, &initial)
	}
	var restCfg *rest.Config
	if c.Kubeconfig != "" {
		cfg, err := clientcmd.RESTConfigFromKubeConfig([]byte(c.Kubeconfig))
		if err != nil {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
		cfg.Timeout = 5 * time.Second
		restCfg = cfg
		if rt.kube, err = kubernetes.NewForConfig(cfg); err != nil {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
	}
	var source oidc.Source
	switch c.KeySource {
	case SourceJWKSFile:
		source = oidc.Static(initial)
	case SourceJWKSURL:
		source = oidc.FromJWKSURL(s.HTTPClient, c.KeySourceArg)
	case SourceDiscovery:
		source = oidc.FromDiscovery(s.HTTPClient, c.Issuer)
	case SourceKubeconfig:
		client, err := rest.HTTPClientFor(restCfg)
		if err != nil {
			return nil, fmt.Errorf("kubeconfig: %w", err)
		}
		source = oidc.FromJWKSURL(client, restCfg.Host+"/openid/v1/jwks")
	default:
		return nil, fmt.Errorf("unknown key source %q", c.KeySource)
	}
	rt.keys = oidc.NewKeySet(source, initial, keyMaxAge)
	rt.verifier = &k8stoken.Verifier{Issuer: c.Issuer, Keys: rt.keys.Key, Now: s.Now}
	return rt, nil
}

// runtime returns the cluster's runtime, rebuilt when the row changed. The
// row is read again once it is CacheTTL old or was invalidated.
func (s *Service) runtime(ctx context.Context, name string) (*clusterRuntime, error) {
	now := s.now()
	s.mu.Lock()
	rt := s.clusters[name]
	fresh := rt != nil && now.Sub(rt.loaded) < s.cacheTTL()
	gen := s.clusterGen
	s.mu.Unlock()
	if fresh {
		return rt, nil
	}
	c, err := s.getCluster(ctx, name)
	if err != nil {
		s.forgetCluster(name)
		return nil, err
	}
	if rt != nil && sameSource(rt.row, c) {
		s.mu.Lock()
		if s.clusterGen == gen { // else the row read may predate the change
			rt.loaded = now
		}
		s.mu.Unlock()
		return rt, nil
	}
	rt, err = s.newRuntime(c)
	if err != nil {
		return nil, fmt.Errorf("eks: cluster %s: %w", name, err)
	}
	s.mu.Lock()
	if s.clusters == nil {
		s.clusters = map[string]*clusterRuntime{}
	}
	if s.clusterGen != gen {
		rt.loaded = time.Time{} // read the row again on the next call
	}
	s.clusters[name] = rt
	s.mu.Unlock()
	return rt, nil
}

// sameSource reports whether a runtime built from row old still serves
// the cluster as stored now (same registration, same keys).
func sameSource(old, now store.Cluster) bool {
	if !old.CreatedAt.Equal(now.CreatedAt) || old.Issuer != now.Issuer || old.KeySource != now.KeySource ||
		old.KeySourceArg != now.KeySourceArg || old.Kubeconfig != now.Kubeconfig || old.TokenReview != now.TokenReview {
		return false
	}
	// A JWKS given at registration is the key source itself; others only
	// remember the keys last fetched.
	return old.KeySource != SourceJWKSFile || bytes.Equal(old.JWKS, now.JWKS)
}

// staleClusters makes the next call for the cluster named name (every
// cluster when "") read its row again.
func (s *Service) staleClusters(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clusterGen++
	for n, rt := range s.clusters {
		if name == "" || n == name {
			rt.loaded = time.Time{}
		}
	}
}

func (s *Service) forgetCluster(name string) {
	s.mu.Lock()
	delete(s.clusters, name)
	s.mu.Unlock()
}

// tokenStillValid asks the apiserver whether the token is still valid (its
// bound pod still exists).
func (rt *clusterRuntime) tokenStillValid(ctx context.Context, token, audience string) (bool, error) {
	tr := &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{audience}}}
	out, err := rt.kube.AuthenticationV1().TokenReviews().Create(ctx, tr, metav1.CreateOptions{})
	if err != nil {
		return false, err
	}
	return out.Status.Authenticated, nil
}

func epoch(t time.Time) float64 {
	return float64(t.UnixNano()/1e6) / 1e3
}

func tagList(m map[string]string) []store.Tag {
	var tags []store.Tag
	for k, v := range m {
		tags = append(tags, store.Tag{Key: k, Value: v})
	}
	return tags
}

func tagMap(tags []store.Tag) map[string]string {
	if len(tags) == 0 {
		return nil
	}
	m := make(map[string]string, len(tags))
	for _, t := range tags {
		m[t.Key] = t.Value
	}
	return m
}

func maxResults(q url.Values, limit int) (int, error) {
	s := q.Get("maxResults")
	if s == "" {
		return limit, nil
	}
	var n int
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n < 1 || n > limit {
		return 0, invalidParameter("maxResults must be between 1 and %d", limit)
	}
	return n, nil
}
