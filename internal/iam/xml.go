package iam

import (
	"encoding/xml"
	"strings"
	"time"

	"github.com/podid/podid/internal/store"
)

// The response shapes below follow the IAM API reference; element names are
// the ones aws-sdk-go-v2's service/iam deserializers read. Timestamps are
// strings because encoding/xml would write fractional seconds.

// Role is the Role shape.
type Role struct {
	Path                     string  `xml:"Path"`
	RoleName                 string  `xml:"RoleName"`
	RoleID                   string  `xml:"RoleId"`
	Arn                      string  `xml:"Arn"`
	CreateDate               string  `xml:"CreateDate"`
	AssumeRolePolicyDocument string  `xml:"AssumeRolePolicyDocument,omitempty"` // URL-encoded
	Description              string  `xml:"Description,omitempty"`
	MaxSessionDuration       int32   `xml:"MaxSessionDuration,omitempty"`
	Tags                     TagList `xml:"Tags,omitempty"`
}

// TagList is an optional list of tags: left out when empty. (encoding/xml
// writes the parent of an empty "Tags>member" slice, which IAM does not.)
type TagList []Tag

// MarshalXML writes <Tags><member>…</member></Tags>.
func (l TagList) MarshalXML(e *xml.Encoder, start xml.StartElement) error {
	return e.EncodeElement(struct {
		Member []Tag `xml:"member"`
	}{l}, start)
}

// Tag is the Tag shape.
type Tag struct {
	Key   string `xml:"Key"`
	Value string `xml:"Value"`
}

// Policy is the Policy shape of a customer managed policy.
type Policy struct {
	PolicyName                    string  `xml:"PolicyName"`
	PolicyID                      string  `xml:"PolicyId"`
	Arn                           string  `xml:"Arn"`
	Path                          string  `xml:"Path"`
	DefaultVersionID              string  `xml:"DefaultVersionId"`
	AttachmentCount               int32   `xml:"AttachmentCount"`
	PermissionsBoundaryUsageCount int32   `xml:"PermissionsBoundaryUsageCount"`
	IsAttachable                  bool    `xml:"IsAttachable"`
	Description                   string  `xml:"Description,omitempty"`
	CreateDate                    string  `xml:"CreateDate"`
	UpdateDate                    string  `xml:"UpdateDate"`
	Tags                          TagList `xml:"Tags,omitempty"`
}

// AttachedPolicy is the AttachedPolicy shape.
type AttachedPolicy struct {
	PolicyName string `xml:"PolicyName"`
	PolicyArn  string `xml:"PolicyArn"`
}

// OIDCProviderEntry is the OpenIDConnectProviderListEntry shape.
type OIDCProviderEntry struct {
	Arn string `xml:"Arn"`
}

// EvaluationResult is the EvaluationResult shape.
type EvaluationResult struct {
	EvalActionName       string      `xml:"EvalActionName"`
	EvalResourceName     string      `xml:"EvalResourceName"`
	EvalDecision         string      `xml:"EvalDecision"`
	MatchedStatements    []Statement `xml:"MatchedStatements>member"`
	MissingContextValues []string    `xml:"MissingContextValues>member"`
}

// Statement is the Statement shape of a simulation result.
type Statement struct {
	SourcePolicyID   string `xml:"SourcePolicyId"`
	SourcePolicyType string `xml:"SourcePolicyType"`
}

// Results of the actions that have a result element. The server marshals
// each as the <ActionResult> element, so the fields become its children.

type CreateRoleResult struct {
	Role Role `xml:"Role"`
}

type GetRoleResult struct {
	Role Role `xml:"Role"`
}

type ListRolesResult struct {
	Roles       []Role `xml:"Roles>member"`
	IsTruncated bool   `xml:"IsTruncated"`
	Marker      string `xml:"Marker,omitempty"`
}

// UpdateRoleResult is empty, but the SDKs require the element.
type UpdateRoleResult struct{}

type ListRoleTagsResult struct {
	Tags        []Tag  `xml:"Tags>member"`
	IsTruncated bool   `xml:"IsTruncated"`
	Marker      string `xml:"Marker,omitempty"`
}

type GetRolePolicyResult struct {
	RoleName       string `xml:"RoleName"`
	PolicyName     string `xml:"PolicyName"`
	PolicyDocument string `xml:"PolicyDocument"` // URL-encoded
}

type ListRolePoliciesResult struct {
	PolicyNames []string `xml:"PolicyNames>member"`
	IsTruncated bool     `xml:"IsTruncated"`
	Marker      string   `xml:"Marker,omitempty"`
}

type CreatePolicyResult struct {
	Policy Policy `xml:"Policy"`
}

type GetPolicyResult struct {
	Policy Policy `xml:"Policy"`
}

type ListPoliciesResult struct {
	Policies    []Policy `xml:"Policies>member"`
	IsTruncated bool     `xml:"IsTruncated"`
	Marker      string   `xml:"Marker,omitempty"`
}

type ListAttachedRolePoliciesResult struct {
	AttachedPolicies []AttachedPolicy `xml:"AttachedPolicies>member"`
	IsTruncated      bool             `xml:"IsTruncated"`
	Marker           string           `xml:"Marker,omitempty"`
}

type CreateOpenIDConnectProviderResult struct {
	OpenIDConnectProviderArn string  `xml:"OpenIDConnectProviderArn"`
	Tags                     TagList `xml:"Tags,omitempty"`
}

type GetOpenIDConnectProviderResult struct {
	URL            string   `xml:"Url"` // without the scheme, as IAM reports it
	ClientIDList   []string `xml:"ClientIDList>member"`
	ThumbprintList []string `xml:"ThumbprintList>member"`
	CreateDate     string   `xml:"CreateDate"`
	Tags           TagList  `xml:"Tags,omitempty"`
}

type ListOpenIDConnectProvidersResult struct {
	OpenIDConnectProviderList []OIDCProviderEntry `xml:"OpenIDConnectProviderList>member"`
}

type SimulatePrincipalPolicyResult struct {
	EvaluationResults []EvaluationResult `xml:"EvaluationResults>member"`
	IsTruncated       bool               `xml:"IsTruncated"`
	Marker            string             `xml:"Marker,omitempty"`
}

// isoTime formats a time as IAM does: ISO 8601, UTC, whole seconds.
func isoTime(t time.Time) string {
	return t.UTC().Format("2006-01-02T15:04:05Z")
}

// urlEncode percent-encodes a policy document the way IAM returns them
// (RFC 3986: everything but unreserved characters).
func urlEncode(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(s) * 2)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

func tagsOut(tags []store.Tag) TagList {
	if len(tags) == 0 {
		return nil
	}
	out := make(TagList, len(tags))
	for i, t := range tags {
		out[i] = Tag(t)
	}
	return out
}

// roleOut converts a stored role; tags are left out of listings, as IAM does.
func roleOut(r store.Role, withTags bool) Role {
	out := Role{
		Path:                     r.Path,
		RoleName:                 r.Name,
		RoleID:                   r.RoleID,
		Arn:                      r.ARN,
		CreateDate:               isoTime(r.CreatedAt),
		AssumeRolePolicyDocument: urlEncode(r.AssumeRolePolicy),
		Description:              r.Description,
		MaxSessionDuration:       r.MaxSessionDuration,
	}
	if withTags {
		out.Tags = tagsOut(r.Tags)
	}
	return out
}

// policyOut converts a stored managed policy; descriptions and tags are left
// out of listings, as IAM does.
func policyOut(p store.ManagedPolicy, full bool) Policy {
	out := Policy{
		PolicyName:       p.Name,
		PolicyID:         p.PolicyID,
		Arn:              p.ARN,
		Path:             p.Path,
		DefaultVersionID: p.DefaultVersion,
		AttachmentCount:  int32(p.AttachmentCount),
		IsAttachable:     true,
		CreateDate:       isoTime(p.CreatedAt),
		UpdateDate:       isoTime(p.UpdatedAt),
	}
	if out.DefaultVersionID == "" {
		out.DefaultVersionID = "v1"
	}
	if full {
		out.Description = p.Description
		out.Tags = tagsOut(p.Tags)
	}
	return out
}
