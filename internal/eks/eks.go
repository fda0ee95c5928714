// Package eks implements the EKS APIs Pod Identity needs, over restJson1:
// clusters (podid registers them; DescribeCluster and ListClusters as in
// EKS), the Pod Identity association API (SigV4 service "eks") and EKS
// Auth's AssumeRoleForPodIdentity (SigV4 service "eks-auth").
package eks

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/policy"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
	"github.com/podid/podid/internal/sts"
	"github.com/podid/podid/internal/ttlcache"
)

// Store is what the EKS APIs read and write.
type Store interface {
	GetRole(ctx context.Context, name string) (store.Role, error)
	CreateCluster(ctx context.Context, c store.Cluster) error
	GetCluster(ctx context.Context, name string) (store.Cluster, error)
	ListClusters(ctx context.Context, p store.Page) ([]store.Cluster, string, error)
	UpdateCluster(ctx context.Context, name string, fn func(*store.Cluster) error) (store.Cluster, error)
	DeleteCluster(ctx context.Context, name string) error
	CreateAssociation(ctx context.Context, a store.Association) error
	GetAssociation(ctx context.Context, cluster, id string) (store.Association, error)
	FindAssociation(ctx context.Context, cluster, namespace, serviceAccount string) (store.Association, error)
	FindAssociationByRequestToken(ctx context.Context, cluster, token string) (store.Association, error)
	ListAssociations(ctx context.Context, cluster string, f store.AssociationFilter, p store.Page) ([]store.Association, string, error)
	UpdateAssociation(ctx context.Context, cluster, id string, fn func(*store.Association) error) (store.Association, error)
	DeleteAssociation(ctx context.Context, cluster, id string) (store.Association, error)
}

// Authorizer checks identity policies.
type Authorizer interface {
	AuthorizeContext(ctx context.Context, p *session.Principal, action, resource string, extra policy.Context) error
}

// Assumer mints role sessions (the STS core).
type Assumer interface {
	Assume(ctx context.Context, in sts.AssumeInput) (*sts.AssumeOutput, error)
}

// Service serves the EKS and EKS Auth APIs.
type Service struct {
	Store   Store
	Authz   Authorizer
	STS     Assumer
	Account string
	Region  string
	// HTTPClient fetches JWKS and discovery documents.
	HTTPClient *http.Client
	// AgentServiceAccounts are the namespace/name pairs whose tokens (with
	// audience AgentAudience) authenticate a node agent.
	AgentServiceAccounts []string
	Now                  func() time.Time
	// CacheTTL is how long association and cluster rows are served from
	// memory; 0 means DefaultCacheTTL. Make it longer only when Invalidate
	// hears of every change to the store (see store.Notifier): the TTL is
	// then the safety net, a periodic full resync.
	CacheTTL time.Duration

	mu         sync.Mutex
	clusters   map[string]*clusterRuntime
	clusterGen uint64 // counts cluster invalidations; guarded by mu

	assocOnce sync.Once
	assocs    *ttlcache.Cache[assocKey, store.Association]
}

// DefaultCacheTTL bounds how stale an association or cluster row read by
// EKS Auth may be on another replica when no change notifications arrive;
// this replica forgets its cache on every change it makes.
const DefaultCacheTTL = time.Second

func (s *Service) cacheTTL() time.Duration {
	if s.CacheTTL > 0 {
		return s.CacheTTL
	}
	return DefaultCacheTTL
}

type assocKey struct{ cluster, namespace, serviceAccount string }

func (s *Service) associationCache() *ttlcache.Cache[assocKey, store.Association] {
	s.assocOnce.Do(func() { s.assocs = ttlcache.New[assocKey, store.Association](s.cacheTTL(), 100000) })
	return s.assocs
}

// findAssociation is the store's FindAssociation through the cache.
func (s *Service) findAssociation(ctx context.Context, cluster, namespace, serviceAccount string) (store.Association, error) {
	cache, key, now := s.associationCache(), assocKey{cluster, namespace, serviceAccount}, s.now()
	if a, ok := cache.Get(key, now); ok {
		return a, nil
	}
	gen := cache.Generation()
	a, err := s.Store.FindAssociation(ctx, cluster, namespace, serviceAccount)
	if err != nil {
		return a, err
	}
	// Not cached if it changed meanwhile: the row read may be the old one.
	cache.PutIfGeneration(key, a, now, gen)
	return a, nil
}

// Invalidate drops what the service caches about a change to the store,
// made by this replica or another (the server subscribes it to the store's
// notifications).
func (s *Service) Invalidate(c store.Change) {
	switch c.Kind {
	case store.ChangeAssociation:
		parts := strings.Split(c.Key, "/")
		if len(parts) == 3 {
			s.associationCache().Delete(assocKey{parts[0], parts[1], parts[2]})
			return
		}
		s.associationCache().Clear()
	case store.ChangeCluster:
		s.staleClusters(c.Key)
		// Deleting a cluster deletes its associations, announced with it.
		s.associationCache().Clear()
	case store.ChangeAll:
		s.staleClusters("")
		s.associationCache().Clear()
	}
}

// AgentAudience is the audience of the agent's own service-account token.
const AgentAudience = "podid"

// PodAudience is the audience of pod tokens for EKS Pod Identity.
const PodAudience = "pods.eks.amazonaws.com"

func (s *Service) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Request is a restJson1 request as the server received it.
type Request struct {
	Method string
	Path   string
	Query  url.Values
	Header http.Header
	Body   []byte
}

// Op is a routed operation.
type Op struct {
	Name     string // the API operation, e.g. CreatePodIdentityAssociation
	Service  string // SigV4 signing name: eks or eks-auth
	ReadOnly bool
	Cluster  string
	ID       string // association ID or resource ARN (tags)
}

// Caller is who called: a SigV4 principal, or a node agent that presented
// its service-account token.
type Caller struct {
	Principal *session.Principal
	Node      *NodeIdentity
}

// Route maps a method and path to an operation.
func Route(method, path string) (Op, bool) {
	if rest, ok := strings.CutPrefix(path, "/tags/"); ok {
		arn, err := url.PathUnescape(rest)
		if err != nil {
			return Op{}, false
		}
		switch method {
		case http.MethodGet:
			return Op{Name: "ListTagsForResource", Service: "eks", ReadOnly: true, ID: arn}, true
		case http.MethodPost:
			return Op{Name: "TagResource", Service: "eks", ID: arn}, true
		case http.MethodDelete:
			return Op{Name: "UntagResource", Service: "eks", ID: arn}, true
		}
		return Op{}, false
	}
	if path == "/podid/clusters" && method == http.MethodPost {
		return Op{Name: "RegisterCluster", Service: "eks"}, true
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) == 0 || parts[0] != "clusters" {
		return Op{}, false
	}
	for i := 1; i < len(parts); i++ {
		p, err := url.PathUnescape(parts[i])
		if err != nil || p == "" {
			return Op{}, false
		}
		parts[i] = p
	}
	switch {
	case len(parts) == 1 && method == http.MethodGet:
		return Op{Name: "ListClusters", Service: "eks", ReadOnly: true}, true
	case len(parts) == 2 && method == http.MethodGet:
		return Op{Name: "DescribeCluster", Service: "eks", ReadOnly: true, Cluster: parts[1]}, true
	case len(parts) == 2 && method == http.MethodDelete:
		return Op{Name: "DeleteCluster", Service: "eks", Cluster: parts[1]}, true
	case len(parts) == 3 && parts[2] == "assume-role-for-pod-identity" && method == http.MethodPost:
		return Op{Name: "AssumeRoleForPodIdentity", Service: "eks-auth", Cluster: parts[1]}, true
	case len(parts) == 3 && parts[2] == "pod-identity-associations":
		switch method {
		case http.MethodPost:
			return Op{Name: "CreatePodIdentityAssociation", Service: "eks", Cluster: parts[1]}, true
		case http.MethodGet:
			return Op{Name: "ListPodIdentityAssociations", Service: "eks", ReadOnly: true, Cluster: parts[1]}, true
		}
	case len(parts) == 4 && parts[2] == "pod-identity-associations":
		switch method {
		case http.MethodGet:
			return Op{Name: "DescribePodIdentityAssociation", Service: "eks", ReadOnly: true, Cluster: parts[1], ID: parts[3]}, true
		case http.MethodPost:
			return Op{Name: "UpdatePodIdentityAssociation", Service: "eks", Cluster: parts[1], ID: parts[3]}, true
		case http.MethodDelete:
			return Op{Name: "DeletePodIdentityAssociation", Service: "eks", Cluster: parts[1], ID: parts[3]}, true
		}
	}
	return Op{}, false
}

// Handle runs op. It returns the HTTP status and the JSON body.
func (s *Service) Handle(ctx context.Context, caller Caller, op Op, req *Request) (int, any, error) {
	if !op.ReadOnly && op.Name != "AssumeRoleForPodIdentity" {
		// An association or cluster may change: let the next
		// AssumeRoleForPodIdentity read it afresh.
		defer s.associationCache().Clear()
	}
	if op.Name != "AssumeRoleForPodIdentity" && caller.Principal == nil {
		return 0, nil, awsproto.Errorf(http.StatusForbidden, "AccessDeniedException", "This operation requires SigV4 credentials")
	}
	switch op.Name {
	case "AssumeRoleForPodIdentity":
		return s.assumeRoleForPodIdentity(ctx, caller, op, req)
	case "RegisterCluster":
		return s.registerCluster(ctx, caller.Principal, req)
	case "DescribeCluster":
		return s.describeCluster(ctx, caller.Principal, op)
	case "ListClusters":
		return s.listClusters(ctx, caller.Principal, req)
	case "DeleteCluster":
		return s.deleteCluster(ctx, caller.Principal, op)
	case "CreatePodIdentityAssociation":
		return s.createAssociation(ctx, caller.Principal, op, req)
	case "DescribePodIdentityAssociation":
		return s.describeAssociation(ctx, caller.Principal, op)
	case "ListPodIdentityAssociations":
		return s.listAssociations(ctx, caller.Principal, op, req)
	case "UpdatePodIdentityAssociation":
		return s.updateAssociation(ctx, caller.Principal, op, req)
	case "DeletePodIdentityAssociation":
		return s.deleteAssociation(ctx, caller.Principal, op)
	case "TagResource", "UntagResource", "ListTagsForResource":
		return s.tags(ctx, caller.Principal, op, req)
	}
	return 0, nil, awsproto.Errorf(http.StatusNotFound, "UnknownOperationException", "Unknown operation %s", op.Name)
}

func (s *Service) clusterARN(name string) string {
	return "arn:aws:eks:" + s.Region + ":" + s.Account + ":cluster/" + name
}

func (s *Service) associationARN(cluster, id string) string {
	return "arn:aws:eks:" + s.Region + ":" + s.Account + ":podidentityassociation/" + cluster + "/" + id
}

// Errors of the EKS APIs.
func invalidParameter(format string, args ...any) error {
	return awsproto.Errorf(http.StatusBadRequest, "InvalidParameterException", format, args...)
}

func notFound(format string, args ...any) error {
	return awsproto.Errorf(http.StatusNotFound, "ResourceNotFoundException", format, args...)
}

func (s *Service) authorize(ctx context.Context, p *session.Principal, action, resource string) error {
	err := s.Authz.AuthorizeContext(ctx, p, action, resource, nil)
	if err != nil {
		if e, ok := err.(*awsproto.Error); ok && e.Code == "AccessDenied" {
			return awsproto.Errorf(http.StatusForbidden, "AccessDeniedException", "%s", e.Message)
		}
	}
	return err
}
