// Package session defines the temporary credentials podid mints and the
// principals that sign requests, and seals a session into a self-contained
// session token so that any server replica can verify a request without a
// store lookup.
package session

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/base64"
	"strings"
	"time"
)

// Tag is a session tag.
type Tag struct {
	Key   string `json:"k"`
	Value string `json:"v"`
}

// Session is everything a session token carries. Field names are short
// because the sealed token travels in every request.
type Session struct {
	AccessKeyID       string    `json:"ak"`
	SecretAccessKey   string    `json:"sk"`
	Account           string    `json:"a"`
	RoleARN           string    `json:"r,omitempty"`  // empty: a GetSessionToken session of PrincipalARN
	RoleID            string    `json:"ri,omitempty"` // AROA…
	SessionName       string    `json:"n,omitempty"`
	PrincipalARN      string    `json:"p,omitempty"` // for GetSessionToken sessions: the long-term principal
	Tags              []Tag     `json:"t,omitempty"`
	TransitiveTagKeys []string  `json:"tt,omitempty"`
	SourceIdentity    string    `json:"si,omitempty"`
	Policy            string    `json:"sp,omitempty"`  // inline session policy
	PolicyARNs        []string  `json:"spa,omitempty"` // managed session policies
	Chained           bool      `json:"c,omitempty"`   // assumed from another role session
	Expiration        time.Time `json:"e"`
}

// AssumedRoleARN returns arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION.
func (s *Session) AssumedRoleARN() string {
	return AssumedRoleARN(s.RoleARN, s.SessionName)
}

// AssumedRoleARN builds the assumed-role ARN of a session of roleARN.
func AssumedRoleARN(roleARN, sessionName string) string {
	// arn:aws:iam::123456789012:role/path/name → account and name (the path
	// is not part of the assumed-role ARN).
	parts := strings.SplitN(roleARN, ":", 6)
	if len(parts) < 6 {
		return ""
	}
	name := parts[5][strings.LastIndex(parts[5], "/")+1:]
	return "arn:" + parts[1] + ":sts::" + parts[4] + ":assumed-role/" + name + "/" + sessionName
}

// RoleName returns the last path element of a role ARN.
func RoleName(roleARN string) string {
	return roleARN[strings.LastIndex(roleARN, "/")+1:]
}

// Principal is who signed a request.
type Principal struct {
	Account     string
	ARN         string // arn:aws:iam::A:root or arn:aws:sts::A:assumed-role/R/S
	UserID      string // A for root, AROA…:S for role sessions
	AccessKeyID string
	Session     *Session // nil for long-term keys
}

// IsRoleSession reports whether the principal is an assumed-role session.
func (p *Principal) IsRoleSession() bool { return p.Session != nil && p.Session.RoleARN != "" }

// IsRoot reports whether the principal is the account's root identity
// (its long-term keys or a GetSessionToken session of them).
func (p *Principal) IsRoot() bool { return strings.HasSuffix(p.ARN, ":root") }

// PrincipalOf returns the principal a session acts as.
func PrincipalOf(s *Session) *Principal {
	p := &Principal{Account: s.Account, AccessKeyID: s.AccessKeyID, Session: s}
	if s.RoleARN != "" {
		p.ARN = s.AssumedRoleARN()
		p.UserID = s.RoleID + ":" + s.SessionName
	} else {
		p.ARN = s.PrincipalARN
		p.UserID = s.Account
	}
	return p
}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewAccessKeyID returns prefix ("AKIA" or "ASIA") + 16 upper-case base32
// characters, the shape of AWS access key IDs.
func NewAccessKeyID(prefix string) string {
	return prefix + randomBase32(16)
}

// NewUniqueID returns an IAM unique ID such as AROA… or ANPA… (prefix + 17).
func NewUniqueID(prefix string) string {
	return prefix + randomBase32(17)
}

func randomBase32(n int) string {
	b := make([]byte, (n*5+7)/8)
	_, _ = rand.Read(b)
	return b32.EncodeToString(b)[:n]
}

// NewSecretAccessKey returns a 40-character secret.
func NewSecretAccessKey() string {
	b := make([]byte, 30)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
