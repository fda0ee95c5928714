// Package store keeps podid's durable state: the account, access keys, IAM
// roles and policies, OIDC providers, clusters, Pod Identity associations and
// the sealing keys for session tokens.
//
// Every method is atomic: a multi-step write (deleting a role only when no
// policy is left on it, say) runs in one transaction, so a failed or
// interrupted call leaves nothing half written. Consumers declare the small
// interface they need; Store is the whole surface a backend implements.
package store

import (
	"context"
	"errors"
	"time"
)

// Errors that callers map to AWS error codes.
var (
	ErrNotFound = errors.New("store: not found")      // NoSuchEntity / ResourceNotFoundException
	ErrExists   = errors.New("store: already exists") // EntityAlreadyExists / ResourceInUseException
	ErrConflict = errors.New("store: still in use")   // DeleteConflict
)

// Tag is an AWS resource tag.
type Tag struct {
	Key   string `json:"Key"`
	Value string `json:"Value"`
}

// AccessKey is a long-term AKIA key. The secret is sealed by the caller with
// the master key before it reaches the store.
type AccessKey struct {
	AccessKeyID  string
	SecretSealed []byte
	PrincipalARN string // arn:aws:iam::ACCOUNT:root for the administrator
	Status       string // Active | Inactive
	CreatedAt    time.Time
}

// SealingKey encrypts session tokens. Key is sealed with the master key.
type SealingKey struct {
	ID        string
	Sealed    []byte
	CreatedAt time.Time
}

// Role is an IAM role.
type Role struct {
	RoleID             string // AROA…
	Name               string
	Path               string
	ARN                string
	AssumeRolePolicy   string
	Description        string
	MaxSessionDuration int32 // seconds, 3600..43200
	Tags               []Tag
	CreatedAt          time.Time
}

// RolePolicy is an inline policy embedded in a role.
type RolePolicy struct {
	RoleName   string
	PolicyName string
	Document   string
}

// ManagedPolicy is a customer managed policy. AttachmentCount is derived by
// the store from the attachments, never written.
type ManagedPolicy struct {
	ARN             string
	PolicyID        string // ANPA…
	Name            string
	Path            string
	Description     string
	Document        string
	DefaultVersion  string // v1
	AttachmentCount int
	Tags            []Tag
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// OIDCProvider is an IAM OpenID Connect provider. URL is stored without the
// scheme, as IAM reports it (oidc.example.com/id/ABC).
type OIDCProvider struct {
	ARN         string
	URL         string
	ClientIDs   []string
	Thumbprints []string
	Tags        []Tag
	CreatedAt   time.Time
}

// Cluster is a Kubernetes cluster whose service-account tokens podid accepts.
type Cluster struct {
	Name         string
	ARN          string
	Issuer       string
	KeySource    string // jwks-file | jwks-url | discovery | kubeconfig
	KeySourceArg string // the JWKS URL for jwks-url
	Kubeconfig   string // kubeconfig text, for the kubeconfig key source and TokenReview
	JWKS         []byte // last keys fetched, so a restart works while the source is away
	TokenReview  bool
	Tags         []Tag
	CreatedAt    time.Time
}

// Association binds a namespace/service account of a cluster to a role.
type Association struct {
	ID                 string // a- + 17 lowercase alphanumerics
	ARN                string
	ClusterName        string
	Namespace          string
	ServiceAccount     string
	RoleARN            string
	TargetRoleARN      string
	ExternalID         string
	DisableSessionTags bool
	Policy             string
	Tags               []Tag
	OwnerARN           string
	ClientRequestToken string
	RequestHash        string // hash of the create request, for idempotency checks
	CreatedAt          time.Time
	ModifiedAt         time.Time
}

// Page asks for one page of a listing. Marker is the opaque value a previous
// page returned as next ("" for the first page); MaxItems <= 0 means 100.
type Page struct {
	Marker   string
	MaxItems int
}

// RoleFilter, PolicyFilter and AssociationFilter narrow listings.
type (
	RoleFilter struct {
		PathPrefix string
	}
	PolicyFilter struct {
		PathPrefix   string
		OnlyAttached bool
	}
	AssociationFilter struct {
		Namespace      string
		ServiceAccount string
	}
)

// Store is the complete persistence surface. List methods return the items
// and the marker of the next page ("" when there is none).
type Store interface {
	Ping(ctx context.Context) error
	Close() error

	// Meta holds single values such as the account ID. PutMetaIfAbsent stores
	// value unless the key exists, and returns what is stored afterwards.
	GetMeta(ctx context.Context, key string) (string, error)
	PutMetaIfAbsent(ctx context.Context, key, value string) (string, error)

	// Sealing keys list oldest first (CreatedAt, then ID); the last one seals
	// new session tokens. DeleteSealingKey fails with ErrNotFound when the
	// key is already gone (another replica pruned it first).
	CreateSealingKey(ctx context.Context, k SealingKey) error
	ListSealingKeys(ctx context.Context) ([]SealingKey, error)
	DeleteSealingKey(ctx context.Context, id string) error

	CreateAccessKey(ctx context.Context, k AccessKey) error
	GetAccessKey(ctx context.Context, id string) (AccessKey, error)
	ListAccessKeys(ctx context.Context, principalARN string) ([]AccessKey, error)

	CreateRole(ctx context.Context, r Role) error
	GetRole(ctx context.Context, name string) (Role, error)
	ListRoles(ctx context.Context, f RoleFilter, p Page) ([]Role, string, error)
	// UpdateRole reads the role, applies fn and writes it back in one transaction.
	// fn runs again if the database aborts the transaction (a PostgreSQL
	// deadlock) and the store retries it, so it should only change *Role.
	UpdateRole(ctx context.Context, name string, fn func(*Role) error) (Role, error)
	// DeleteRole fails with ErrConflict while inline or attached policies remain.
	DeleteRole(ctx context.Context, name string) error

	PutRolePolicy(ctx context.Context, p RolePolicy) error // ErrNotFound if the role is missing
	GetRolePolicy(ctx context.Context, role, name string) (RolePolicy, error)
	ListRolePolicies(ctx context.Context, role string, p Page) ([]RolePolicy, string, error)
	DeleteRolePolicy(ctx context.Context, role, name string) error

	CreatePolicy(ctx context.Context, p ManagedPolicy) error
	GetPolicy(ctx context.Context, arn string) (ManagedPolicy, error)
	ListPolicies(ctx context.Context, f PolicyFilter, p Page) ([]ManagedPolicy, string, error)
	DeletePolicy(ctx context.Context, arn string) error // ErrConflict while attached
	AttachRolePolicy(ctx context.Context, role, policyARN string) error
	DetachRolePolicy(ctx context.Context, role, policyARN string) error // ErrNotFound if not attached
	ListAttachedRolePolicies(ctx context.Context, role string, f PolicyFilter, p Page) ([]ManagedPolicy, string, error)

	CreateOIDCProvider(ctx context.Context, o OIDCProvider) error // ErrExists on the same URL
	GetOIDCProvider(ctx context.Context, arn string) (OIDCProvider, error)
	ListOIDCProviders(ctx context.Context) ([]OIDCProvider, error)
	UpdateOIDCProvider(ctx context.Context, arn string, fn func(*OIDCProvider) error) (OIDCProvider, error)
	DeleteOIDCProvider(ctx context.Context, arn string) error

	CreateCluster(ctx context.Context, c Cluster) error
	GetCluster(ctx context.Context, name string) (Cluster, error)
	ListClusters(ctx context.Context, p Page) ([]Cluster, string, error)
	UpdateCluster(ctx context.Context, name string, fn func(*Cluster) error) (Cluster, error)
	DeleteCluster(ctx context.Context, name string) error // deletes its associations too

	// CreateAssociation fails with ErrExists when the cluster already has an
	// association for the namespace and service account, and ErrNotFound when
	// the cluster does not exist.
	CreateAssociation(ctx context.Context, a Association) error
	GetAssociation(ctx context.Context, cluster, id string) (Association, error)
	FindAssociation(ctx context.Context, cluster, namespace, serviceAccount string) (Association, error)
	FindAssociationByRequestToken(ctx context.Context, cluster, token string) (Association, error)
	ListAssociations(ctx context.Context, cluster string, f AssociationFilter, p Page) ([]Association, string, error)
	UpdateAssociation(ctx context.Context, cluster, id string, fn func(*Association) error) (Association, error)
	DeleteAssociation(ctx context.Context, cluster, id string) (Association, error)
}
