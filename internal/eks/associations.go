package eks

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/google/uuid"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/policy"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
)

// AssociationOut is the PodIdentityAssociation shape.
type AssociationOut struct {
	ClusterName        string            `json:"clusterName"`
	Namespace          string            `json:"namespace"`
	ServiceAccount     string            `json:"serviceAccount"`
	RoleArn            string            `json:"roleArn"`
	AssociationArn     string            `json:"associationArn"`
	AssociationId      string            `json:"associationId"`
	Tags               map[string]string `json:"tags,omitempty"`
	CreatedAt          float64           `json:"createdAt"`
	ModifiedAt         float64           `json:"modifiedAt"`
	OwnerArn           string            `json:"ownerArn,omitempty"`
	DisableSessionTags bool              `json:"disableSessionTags"`
	TargetRoleArn      string            `json:"targetRoleArn,omitempty"`
	ExternalId         string            `json:"externalId,omitempty"`
	Policy             string            `json:"policy,omitempty"`
}

// associationSummary is the PodIdentityAssociationSummary shape of List.
type associationSummary struct {
	ClusterName    string `json:"clusterName"`
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
	AssociationArn string `json:"associationArn"`
	AssociationId  string `json:"associationId"`
	OwnerArn       string `json:"ownerArn,omitempty"`
}

func associationOut(a store.Association) AssociationOut {
	return AssociationOut{
		ClusterName: a.ClusterName, Namespace: a.Namespace, ServiceAccount: a.ServiceAccount, RoleArn: a.RoleARN,
		AssociationArn: a.ARN, AssociationId: a.ID, Tags: tagMap(a.Tags), CreatedAt: epoch(a.CreatedAt), ModifiedAt: epoch(a.ModifiedAt),
		OwnerArn: a.OwnerARN, DisableSessionTags: a.DisableSessionTags, TargetRoleArn: a.TargetRoleARN, ExternalId: a.ExternalID, Policy: a.Policy,
	}
}

type createAssociationInput struct {
	Namespace          string            `json:"namespace"`
	ServiceAccount     string            `json:"serviceAccount"`
	RoleArn            string            `json:"roleArn"`
	TargetRoleArn      string            `json:"targetRoleArn"`
	DisableSessionTags *bool             `json:"disableSessionTags"`
	Policy             string            `json:"policy"`
	Tags               map[string]string `json:"tags"`
	ClientRequestToken string            `json:"clientRequestToken"`
}

type updateAssociationInput struct {
	RoleArn            *string `json:"roleArn"`
	TargetRoleArn      *string `json:"targetRoleArn"`
	DisableSessionTags *bool   `json:"disableSessionTags"`
	Policy             *string `json:"policy"`
	ClientRequestToken string  `json:"clientRequestToken"`
}

var (
	// Kubernetes DNS-1123 names, as EKS validates them.
	namespaceRE      = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
	serviceAccountRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$`)
	roleARNRE        = regexp.MustCompile(`^arn:aws[a-z-]*:iam::\d{12}:role/(?:[\x21-\x7e]*/)?[\w+=,.@-]{1,64}$`)
)

const (
	maxAssociationTags = 50
	maxPolicyLength    = 2048
)

func (s *Service) validateRoles(roleARN, targetRoleARN string) error {
	if roleARN == "" {
		return invalidParameter("roleArn must not be empty")
	}
	if !roleARNRE.MatchString(roleARN) {
		return invalidParameter("roleArn %q is not a valid IAM role ARN", roleARN)
	}
	if targetRoleARN != "" && !roleARNRE.MatchString(targetRoleARN) {
		return invalidParameter("targetRoleArn %q is not a valid IAM role ARN", targetRoleARN)
	}
	return nil
}

func validatePolicy(doc string, disableSessionTags bool) error {
	if doc == "" {
		return nil
	}
	if !disableSessionTags {
		// AWS requires this: session tags and a session policy together
		// easily exceed the packed size limit.
		return invalidParameter("policy can only be set when disableSessionTags is true")
	}
	if len(doc) > maxPolicyLength {
		return invalidParameter("policy must be at most %d characters", maxPolicyLength)
	}
	if _, err := policy.Parse(doc, policy.Identity); err != nil {
		return invalidParameter("policy is not a valid IAM policy: %v", err)
	}
	return nil
}

func validateTags(tags map[string]string) error {
	if len(tags) > maxAssociationTags {
		return invalidParameter("tags: at most %d tags are allowed", maxAssociationTags)
	}
	for k, v := range tags {
		if len(k) < 1 || len(k) > 128 {
			return invalidParameter("tags: key %q must be 1-128 characters", k)
		}
		if len(v) > 256 {
			return invalidParameter("tags: value of key %q must be at most 256 characters", k)
		}
		if strings.HasPrefix(strings.ToLower(k), "aws:") {
			return invalidParameter("tags: key %q uses the reserved prefix aws:", k)
		}
	}
	return nil
}

// requestHash identifies a create request's content, for idempotency.
func requestHash(v any) string {
	b, _ := json.Marshal(v)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// newAssociationID returns "a-" and 17 lowercase alphanumerics.
func newAssociationID() string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 17)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "a-" + string(b)
}

func (s *Service) createAssociation(ctx context.Context, p *session.Principal, op Op, req *Request) (int, any, error) {
	var in createAssociationInput
	if err := awsproto.DecodeJSON(req.Body, &in); err != nil {
		return 0, nil, err
	}
	if !namespaceRE.MatchString(in.Namespace) {
		return 0, nil, invalidParameter("namespace %q is not a valid Kubernetes namespace name", in.Namespace)
	}
	if !serviceAccountRE.MatchString(in.ServiceAccount) {
		return 0, nil, invalidParameter("serviceAccount %q is not a valid Kubernetes service account name", in.ServiceAccount)
	}
	if err := s.validateRoles(in.RoleArn, in.TargetRoleArn); err != nil {
		return 0, nil, err
	}
	disable := in.DisableSessionTags != nil && *in.DisableSessionTags
	if err := validatePolicy(in.Policy, disable); err != nil {
		return 0, nil, err
	}
	if err := validateTags(in.Tags); err != nil {
		return 0, nil, err
	}
	if len(in.ClientRequestToken) > 64 {
		return 0, nil, invalidParameter("clientRequestToken must be at most 64 characters")
	}
	if err := s.authorize(ctx, p, "eks:CreatePodIdentityAssociation", s.clusterARN(op.Cluster)); err != nil {
		return 0, nil, err
	}
	if _, err := s.getCluster(ctx, op.Cluster); err != nil {
		return 0, nil, err
	}
	hash := requestHash(struct {
		C string
		I createAssociationInput
	}{op.Cluster, in})
	if in.ClientRequestToken != "" {
		prev, err := s.Store.FindAssociationByRequestToken(ctx, op.Cluster, in.ClientRequestToken)
		switch {
		case err == nil && prev.RequestHash == hash:
			return http.StatusOK, map[string]any{"association": associationOut(prev)}, nil
		case err == nil:
			return 0, nil, awsproto.Errorf(http.StatusBadRequest, "InvalidRequestException",
				"clientRequestToken %q was already used with different parameters", in.ClientRequestToken)
		case !errors.Is(err, store.ErrNotFound):
			return 0, nil, fmt.Errorf("eks: find by request token: %w", err)
		}
	}
	now := s.now().UTC()
	a := store.Association{
		ID:                 newAssociationID(),
		ClusterName:        op.Cluster,
		Namespace:          in.Namespace,
		ServiceAccount:     in.ServiceAccount,
		RoleARN:            in.RoleArn,
		TargetRoleARN:      in.TargetRoleArn,
		DisableSessionTags: disable,
		Policy:             in.Policy,
		Tags:               tagList(in.Tags),
		ClientRequestToken: in.ClientRequestToken,
		RequestHash:        hash,
		CreatedAt:          now,
		ModifiedAt:         now,
	}
	a.ARN = s.associationARN(op.Cluster, a.ID)
	if a.TargetRoleARN != "" {
		a.ExternalID = uuid.NewString()
	}
	if err := s.Store.CreateAssociation(ctx, a); err != nil {
		switch {
		case errors.Is(err, store.ErrExists):
			return 0, nil, awsproto.Errorf(http.StatusConflict, "ResourceInUseException",
				"Association already exists for namespace %s and service account %s in cluster %s", a.Namespace, a.ServiceAccount, op.Cluster)
		case errors.Is(err, store.ErrNotFound):
			return 0, nil, notFound("No cluster found for name: %s.", op.Cluster)
		}
		return 0, nil, fmt.Errorf("eks: create association: %w", err)
	}
	return http.StatusOK, map[string]any{"association": associationOut(a)}, nil
}

func (s *Service) getAssociation(ctx context.Context, cluster, id string) (store.Association, error) {
	if _, err := s.getCluster(ctx, cluster); err != nil {
		return store.Association{}, err
	}
	a, err := s.Store.GetAssociation(ctx, cluster, id)
	if errors.Is(err, store.ErrNotFound) {
		return a, notFound("No Pod Identity Association found for id: %s", id)
	}
	if err != nil {
		return a, fmt.Errorf("eks: get association: %w", err)
	}
	return a, nil
}

func (s *Service) describeAssociation(ctx context.Context, p *session.Principal, op Op) (int, any, error) {
	if err := s.authorize(ctx, p, "eks:DescribePodIdentityAssociation", s.associationARN(op.Cluster, op.ID)); err != nil {
		return 0, nil, err
	}
	a, err := s.getAssociation(ctx, op.Cluster, op.ID)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, map[string]any{"association": associationOut(a)}, nil
}

func (s *Service) listAssociations(ctx context.Context, p *session.Principal, op Op, req *Request) (int, any, error) {
	if err := s.authorize(ctx, p, "eks:ListPodIdentityAssociations", s.clusterARN(op.Cluster)); err != nil {
		return 0, nil, err
	}
	max, err := maxResults(req.Query, 100)
	if err != nil {
		return 0, nil, err
	}
	if _, err := s.getCluster(ctx, op.Cluster); err != nil {
		return 0, nil, err
	}
	f := store.AssociationFilter{Namespace: req.Query.Get("namespace"), ServiceAccount: req.Query.Get("serviceAccount")}
	as, next, err := s.Store.ListAssociations(ctx, op.Cluster, f, store.Page{Marker: req.Query.Get("nextToken"), MaxItems: max})
	if errors.Is(err, store.ErrInvalidMarker) {
		return 0, nil, invalidParameter("nextToken is not valid")
	}
	if err != nil {
		return 0, nil, fmt.Errorf("eks: list associations: %w", err)
	}
	out := make([]associationSummary, 0, len(as))
	for _, a := range as {
		out = append(out, associationSummary{ClusterName: a.ClusterName, Namespace: a.Namespace, ServiceAccount: a.ServiceAccount, AssociationArn: a.ARN, AssociationId: a.ID, OwnerArn: a.OwnerARN})
	}
	body := map[string]any{"associations": out}
	if next != "" {
		body["nextToken"] = next
	}
	return http.StatusOK, body, nil
}

func (s *Service) updateAssociation(ctx context.Context, p *session.Principal, op Op, req *Request) (int, any, error) {
	var in updateAssociationInput
	if err := awsproto.DecodeJSON(req.Body, &in); err != nil {
		return 0, nil, err
	}
	if err := s.authorize(ctx, p, "eks:UpdatePodIdentityAssociation", s.associationARN(op.Cluster, op.ID)); err != nil {
		return 0, nil, err
	}
	if _, err := s.getAssociation(ctx, op.Cluster, op.ID); err != nil {
		return 0, nil, err
	}
	a, err := s.Store.UpdateAssociation(ctx, op.Cluster, op.ID, func(a *store.Association) error {
		if in.RoleArn != nil {
			a.RoleARN = *in.RoleArn
		}
		if in.TargetRoleArn != nil {
			if *in.TargetRoleArn != "" && a.ExternalID == "" {
				a.ExternalID = uuid.NewString()
			}
			if *in.TargetRoleArn == "" {
				a.ExternalID = ""
			}
			a.TargetRoleARN = *in.TargetRoleArn
		}
		if in.DisableSessionTags != nil {
			a.DisableSessionTags = *in.DisableSessionTags
		}
		if in.Policy != nil {
			a.Policy = *in.Policy
		}
		if err := s.validateRoles(a.RoleARN, a.TargetRoleARN); err != nil {
			return err
		}
		if err := validatePolicy(a.Policy, a.DisableSessionTags); err != nil {
			return err
		}
		a.ModifiedAt = s.now().UTC()
		return nil
	})
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return 0, nil, notFound("No Pod Identity Association found for id: %s", op.ID)
		}
		var ae *awsproto.Error
		if errors.As(err, &ae) {
			return 0, nil, ae
		}
		return 0, nil, fmt.Errorf("eks: update association: %w", err)
	}
	return http.StatusOK, map[string]any{"association": associationOut(a)}, nil
}

func (s *Service) deleteAssociation(ctx context.Context, p *session.Principal, op Op) (int, any, error) {
	if err := s.authorize(ctx, p, "eks:DeletePodIdentityAssociation", s.associationARN(op.Cluster, op.ID)); err != nil {
		return 0, nil, err
	}
	if _, err := s.getCluster(ctx, op.Cluster); err != nil {
		return 0, nil, err
	}
	a, err := s.Store.DeleteAssociation(ctx, op.Cluster, op.ID)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil, notFound("No Pod Identity Association found for id: %s", op.ID)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("eks: delete association: %w", err)
	}
	return http.StatusOK, map[string]any{"association": associationOut(a)}, nil
}

// tags serves TagResource, UntagResource and ListTagsForResource on
// association ARNs.
func (s *Service) tags(ctx context.Context, p *session.Principal, op Op, req *Request) (int, any, error) {
	prefix := "arn:aws:eks:" + s.Region + ":" + s.Account + ":podidentityassociation/"
	rest, ok := strings.CutPrefix(op.ID, prefix)
	cluster, id, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		return 0, nil, notFound("Resource %s not found", op.ID)
	}
	if err := s.authorize(ctx, p, "eks:"+op.Name, op.ID); err != nil {
		return 0, nil, err
	}
	if _, err := s.getAssociation(ctx, cluster, id); err != nil {
		return 0, nil, notFound("Resource %s not found", op.ID)
	}
	switch op.Name {
	case "ListTagsForResource":
		a, err := s.getAssociation(ctx, cluster, id)
		if err != nil {
			return 0, nil, err
		}
		tags := tagMap(a.Tags)
		if tags == nil {
			tags = map[string]string{}
		}
		return http.StatusOK, map[string]any{"tags": tags}, nil
	case "TagResource":
		var in struct {
			Tags map[string]string `json:"tags"`
		}
		if err := awsproto.DecodeJSON(req.Body, &in); err != nil {
			return 0, nil, err
		}
		if len(in.Tags) == 0 {
			return 0, nil, invalidParameter("tags must not be empty")
		}
		_, err := s.Store.UpdateAssociation(ctx, cluster, id, func(a *store.Association) error {
			m := tagMap(a.Tags)
			if m == nil {
				m = map[string]string{}
			}
			for k, v := range in.Tags {
				m[k] = v
			}
			if err := validateTags(m); err != nil {
				return err
			}
			a.Tags = tagList(m)
			return nil
		})
		if err != nil {
			var ae *awsproto.Error
			if errors.As(err, &ae) {
				return 0, nil, ae
			}
			return 0, nil, fmt.Errorf("eks: tag: %w", err)
		}
		return http.StatusOK, map[string]any{}, nil
	default: // UntagResource
		keys := req.Query["tagKeys"]
		if len(keys) == 0 {
			return 0, nil, invalidParameter("tagKeys must not be empty")
		}
		_, err := s.Store.UpdateAssociation(ctx, cluster, id, func(a *store.Association) error {
			m := tagMap(a.Tags)
			for _, k := range keys {
				delete(m, k)
			}
			a.Tags = tagList(m)
			return nil
		})
		if err != nil {
			return 0, nil, fmt.Errorf("eks: untag: %w", err)
		}
		return http.StatusOK, map[string]any{}, nil
	}
}
