// Package policy implements the IAM JSON policy language: a parser that
// rejects malformed documents with AWS-style messages, and an evaluator
// that answers whether a request is allowed.
//
// The grammar and evaluation rules follow the IAM JSON policy reference.
// Policy variables (${aws:username} and the like) are only recognised in
// documents whose Version is 2012-10-17; in older documents they are
// literal text, as in AWS.
package policy

import "strings"

// Kind says which rules a document must follow.
type Kind int

const (
	// Identity is an identity-based (inline or managed) or session policy:
	// Principal and NotPrincipal are prohibited, Resource or NotResource is
	// required.
	Identity Kind = iota
	// Trust is a role trust (resource-based) policy: Principal or
	// NotPrincipal is required, Resource and NotResource are prohibited.
	Trust
)

// SyntaxError reports a malformed policy document. Msg mirrors the text of
// IAM's MalformedPolicyDocument errors where the AWS wording is known.
type SyntaxError struct {
	Msg string
}

func (e *SyntaxError) Error() string { return e.Msg }

// Version values accepted in a document.
const (
	Version2012 = "2012-10-17"
	Version2008 = "2008-10-17"
)

// Document is a parsed and validated policy.
type Document struct {
	Version    string // "" when the document has none
	ID         string
	Statements []Statement
}

// Statement is one statement of a document. Element values are kept as
// written; the matching forms are precomputed in unexported fields.
type Statement struct {
	Sid    string
	Effect string // "Allow" or "Deny"

	// At most one of Principal and NotPrincipal is non-nil.
	Principal    Principals
	NotPrincipal Principals

	// Exactly one of Action and NotAction is non-nil.
	Action    []string
	NotAction []string

	// At most one of Resource and NotResource is non-nil. Both are nil in
	// trust policies, whose resource is implicitly the role.
	Resource    []string
	NotResource []string

	// Conditions in document order; all must hold.
	Conditions []Condition

	vars bool // expand policy variables (Version 2012-10-17)
}

// Principals maps a principal type ("AWS", "Service", "Federated",
// "CanonicalUser") to its values. The bare wildcard "Principal": "*" is
// stored under the key "*".
type Principals map[string][]string

// Condition is one key test of a Condition block: Operator (as written,
// for example "ForAnyValue:StringLikeIfExists") applied to Key.
type Condition struct {
	Operator string
	Key      string
	Values   []string

	op  operator
	key string // lower-cased Key, for Context lookups
}

// Decision is the outcome of evaluating policies.
type Decision int

const (
	ImplicitDeny Decision = iota
	Allow
	ExplicitDeny
)

// String returns the EvalDecision string used by SimulatePrincipalPolicy.
func (d Decision) String() string {
	switch d {
	case Allow:
		return "allowed"
	case ExplicitDeny:
		return "explicitDeny"
	}
	return "implicitDeny"
}

// Principal describes the caller for Principal and NotPrincipal matching
// in trust policies.
type Principal struct {
	Type string // "AWS", "Service", "Federated" or "CanonicalUser"

	// ARNs lists every ARN the caller answers to. For a role session that
	// is both the assumed-role ARN and the role's ARN.
	ARNs []string

	// Account is the 12-digit account of an AWS caller. It matches
	// principals written as the account ID or the account's root ARN.
	Account string

	// ID identifies a Service ("pods.eks.amazonaws.com"), a Federated
	// provider (its ARN or name) or a CanonicalUser.
	ID string
}

// Request is one authorization question.
type Request struct {
	Principal *Principal // nil when evaluating identity policies
	Action    string     // "service:Action"
	Resource  string     // ARN
	Context   Context    // condition keys
}

// Context holds condition keys and their values. Keys are case-insensitive
// (stored lower-cased) and every key may have several values.
type Context map[string][]string

// Set replaces the values of key.
func (c Context) Set(key string, values ...string) {
	if values == nil {
		values = []string{}
	}
	c[strings.ToLower(key)] = values
}

// Get returns the values of key and whether it is present.
func (c Context) Get(key string) ([]string, bool) {
	v, ok := c[strings.ToLower(key)]
	return v, ok
}

// MatchedStatement identifies a statement that decided an evaluation.
type MatchedStatement struct {
	Index  int    // position in Document.Statements
	Sid    string // "" for unnamed statements
	Effect string
}
