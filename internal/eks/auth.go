package eks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/k8stoken"
	"github.com/podid/podid/internal/policy"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
	"github.com/podid/podid/internal/sts"
)

// Credential lifetimes EKS Auth hands out.
const (
	podCredentialLifetime     = 6 * time.Hour
	chainedCredentialLifetime = time.Hour
)

// podIdentityPrincipal is the service principal role trust policies name.
const podIdentityPrincipal = "pods.eks.amazonaws.com"

// NodeIdentity is a node agent authenticated by its service-account token.
type NodeIdentity struct {
	Cluster        string
	Namespace      string
	ServiceAccount string
	NodeName       string
}

type assumeRoleForPodIdentityInput struct {
	Token string `json:"token"`
}

type assumeRoleForPodIdentityOutput struct {
	Subject struct {
		Namespace      string `json:"namespace"`
		ServiceAccount string `json:"serviceAccount"`
	} `json:"subject"`
	Audience               string `json:"audience"`
	PodIdentityAssociation struct {
		AssociationArn string `json:"associationArn"`
		AssociationId  string `json:"associationId"`
	} `json:"podIdentityAssociation"`
	AssumedRoleUser struct {
		Arn          string `json:"arn"`
		AssumeRoleId string `json:"assumeRoleId"`
	} `json:"assumedRoleUser"`
	Credentials struct {
		SessionToken    string `json:"sessionToken"`
		SecretAccessKey string `json:"secretAccessKey"`
		AccessKeyId     string `json:"accessKeyId"`
		Expiration      int64  `json:"expiration"` // epoch seconds, as the SDKs read it
	} `json:"credentials"`
}

// EKS Auth errors.
func invalidToken(format string, args ...any) error {
	return awsproto.Errorf(http.StatusBadRequest, "InvalidTokenException", format, args...)
}

func accessDeniedException(format string, args ...any) error {
	return awsproto.Errorf(http.StatusBadRequest, "AccessDeniedException", format, args...)
}

// AuthenticateNode verifies a node agent's own service-account token for
// cluster. The token must be issued for AgentAudience to one of the
// configured agent service accounts and be bound to a node.
func (s *Service) AuthenticateNode(ctx context.Context, cluster, token string) (*NodeIdentity, error) {
	rt, err := s.runtime(ctx, cluster)
	if err != nil {
		return nil, err
	}
	c, err := rt.verify(ctx, token, AgentAudience, s.now())
	if err != nil {
		return nil, awsproto.Errorf(http.StatusForbidden, "AccessDeniedException", "The node agent token is not valid: %v", err)
	}
	allowed := false
	for _, sa := range s.AgentServiceAccounts {
		if sa == c.Namespace+"/"+c.ServiceAccount {
			allowed = true
		}
	}
	if !allowed {
		return nil, awsproto.Errorf(http.StatusForbidden, "AccessDeniedException", "Service account %s/%s is not a node agent of cluster %s", c.Namespace, c.ServiceAccount, cluster)
	}
	if c.NodeName == "" {
		return nil, awsproto.Errorf(http.StatusForbidden, "AccessDeniedException", "The node agent token is not bound to a node")
	}
	return &NodeIdentity{Cluster: cluster, Namespace: c.Namespace, ServiceAccount: c.ServiceAccount, NodeName: c.NodeName}, nil
}

func (s *Service) assumeRoleForPodIdentity(ctx context.Context, caller Caller, op Op, req *Request) (int, any, error) {
	clusterARN := s.clusterARN(op.Cluster)
	if caller.Principal != nil {
		if err := s.Authz.AuthorizeContext(ctx, caller.Principal, "eks-auth:AssumeRoleForPodIdentity", clusterARN, nil); err != nil {
			var ae *awsproto.Error
			if errors.As(err, &ae) && ae.Code == "AccessDenied" {
				return 0, nil, accessDeniedException("%s", ae.Message)
			}
			return 0, nil, err
		}
	} else if caller.Node == nil || caller.Node.Cluster != op.Cluster {
		return 0, nil, accessDeniedException("The caller is not authenticated for cluster %s", op.Cluster)
	}

	var in assumeRoleForPodIdentityInput
	if err := awsproto.DecodeJSON(req.Body, &in); err != nil {
		return 0, nil, awsproto.Errorf(http.StatusBadRequest, "InvalidRequestException", "%s", err.(*awsproto.Error).Message)
	}
	if in.Token == "" {
		return 0, nil, awsproto.Errorf(http.StatusBadRequest, "InvalidParameterException", "token must not be empty")
	}
	rt, err := s.runtime(ctx, op.Cluster)
	if err != nil {
		return 0, nil, err
	}
	claims, err := rt.verify(ctx, in.Token, PodAudience, s.now())
	switch {
	case err == nil:
	case errors.Is(err, k8stoken.ErrExpired):
		return 0, nil, awsproto.Errorf(http.StatusBadRequest, "ExpiredTokenException", "The service account token has expired: %v", err)
	default:
		return 0, nil, invalidToken("The service account token is not valid for cluster %s: %v", op.Cluster, err)
	}
	if claims.PodName == "" || claims.PodUID == "" {
		return 0, nil, invalidToken("The service account token is not bound to a pod")
	}
	if caller.Node != nil && claims.NodeName != caller.Node.NodeName {
		// Node binding: a pod token replayed from another node gets nothing.
		return 0, nil, accessDeniedException("The pod's token is bound to node %q, not to the calling node %q", claims.NodeName, caller.Node.NodeName)
	}
	if rt.row.TokenReview && rt.kube != nil {
		ok, err := rt.tokenStillValid(ctx, in.Token, PodAudience)
		if err != nil {
			return 0, nil, awsproto.Errorf(http.StatusServiceUnavailable, "ServiceUnavailableException", "The cluster's apiserver could not review the token")
		}
		if !ok {
			return 0, nil, invalidToken("The service account token was rejected by the cluster's TokenReview (its pod may no longer exist)")
		}
	}

	assoc, err := s.findAssociation(ctx, op.Cluster, claims.Namespace, claims.ServiceAccount)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil, notFound("No Pod Identity Association found for cluster %s, namespace %s, service account %s", op.Cluster, claims.Namespace, claims.ServiceAccount)
	}
	if err != nil {
		return 0, nil, fmt.Errorf("eks: find association: %w", err)
	}

	sessionName := podSessionName(op.Cluster, claims.PodName)
	first := sts.AssumeInput{
		Principal:       &policy.Principal{Type: "Service", ID: podIdentityPrincipal},
		Action:          "sts:AssumeRole",
		RoleARN:         assoc.RoleARN,
		SessionName:     sessionName,
		Duration:        podCredentialLifetime,
		ServiceDuration: true,
		Context:         policy.Context{},
		Cluster:         op.Cluster,
		Namespace:       claims.Namespace,
		ServiceAccount:  claims.ServiceAccount,
	}
	first.Context.Set("aws:SourceAccount", s.Account)
	first.Context.Set("aws:SourceArn", assoc.ARN)
	if !assoc.DisableSessionTags {
		first.Tags = []session.Tag{
			{Key: "eks-cluster-arn", Value: clusterARN},
			{Key: "eks-cluster-name", Value: op.Cluster},
			{Key: "kubernetes-namespace", Value: claims.Namespace},
			{Key: "kubernetes-service-account", Value: claims.ServiceAccount},
			{Key: "kubernetes-pod-name", Value: claims.PodName},
			{Key: "kubernetes-pod-uid", Value: claims.PodUID},
		}
		for _, t := range first.Tags {
			first.TransitiveKeys = append(first.TransitiveKeys, t.Key)
		}
	}
	if assoc.TargetRoleARN == "" {
		first.Policy = assoc.Policy
	}
	out, err := s.STS.Assume(ctx, first)
	if err != nil {
		return 0, nil, assumeError(err, assoc.RoleARN)
	}
	if assoc.TargetRoleARN != "" {
		// The association's role must be allowed to assume the target: the
		// Assumer checks that (the local STS, or AWS itself upstream).
		p := session.PrincipalOf(out.Session)
		ctxKeys := policy.Context{}
		ctxKeys.Set("aws:PrincipalArn", out.Session.RoleARN)
		ctxKeys.Set("aws:PrincipalAccount", s.Account)
		for _, t := range out.Session.Tags {
			ctxKeys.Set("aws:PrincipalTag/"+t.Key, t.Value)
		}
		second := sts.AssumeInput{
			Principal:       &policy.Principal{Type: "AWS", Account: s.Account, ARNs: []string{p.ARN, out.Session.RoleARN}},
			Caller:          out.Session,
			CallerToken:     out.Token,
			Action:          "sts:AssumeRole",
			RoleARN:         assoc.TargetRoleARN,
			SessionName:     sessionName,
			Duration:        chainedCredentialLifetime,
			ServiceDuration: true,
			ExternalID:      assoc.ExternalID,
			Policy:          assoc.Policy,
			Context:         ctxKeys,
		}
		out, err = s.STS.Assume(ctx, second)
		if err != nil {
			return 0, nil, assumeError(err, assoc.TargetRoleARN)
		}
	}

	var resp assumeRoleForPodIdentityOutput
	resp.Subject.Namespace, resp.Subject.ServiceAccount = claims.Namespace, claims.ServiceAccount
	resp.Audience = PodAudience
	resp.PodIdentityAssociation.AssociationArn, resp.PodIdentityAssociation.AssociationId = assoc.ARN, assoc.ID
	resp.AssumedRoleUser.Arn = out.Session.AssumedRoleARN()
	resp.AssumedRoleUser.AssumeRoleId = out.Session.RoleID + ":" + out.Session.SessionName
	resp.Credentials.AccessKeyId = out.Session.AccessKeyID
	resp.Credentials.SecretAccessKey = out.Session.SecretAccessKey
	resp.Credentials.SessionToken = out.Token
	resp.Credentials.Expiration = out.Session.Expiration.Unix()
	return http.StatusOK, resp, nil
}

// podSessionName is eks-CLUSTER-POD-UUID, the prefix cut so the whole
// fits IAM's 64 characters and the UUID survives whole.
func podSessionName(cluster, pod string) string {
	id := uuid.NewString()
	prefix := "eks-" + cluster + "-" + pod
	if max := 64 - 1 - len(id); len(prefix) > max {
		prefix = prefix[:max]
	}
	return sanitizeSessionName(prefix) + "-" + id
}

func sanitizeSessionName(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("+=,.@-_", r) {
			return r
		}
		return '-'
	}, s)
}

// assumeError maps an STS failure to the EKS Auth exception.
func assumeError(err error, roleARN string) error {
	var ae *awsproto.Error
	if !errors.As(err, &ae) {
		return err
	}
	switch ae.Code {
	case "AccessDenied":
		return accessDeniedException("The role %s cannot be assumed for this pod: %s. Its trust policy must allow the service principal pods.eks.amazonaws.com the actions sts:AssumeRole and sts:TagSession", roleARN, ae.Message)
	case "ValidationError", "MalformedPolicyDocument", "PackedPolicyTooLarge", "InvalidParameterValue":
		return awsproto.Errorf(http.StatusBadRequest, "InvalidParameterException", "%s: %s", ae.Code, ae.Message)
	}
	return ae
}
