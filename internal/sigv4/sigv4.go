// Package sigv4 verifies AWS Signature Version 4 requests on the server side.
//
// It accepts what aws-sdk-go-v2's aws/signer/v4, botocore and the AWS SDK for
// JavaScript produce for non-S3 services: the Authorization header form and
// the presigned query-string form, with AWS4-HMAC-SHA256.
//
// Verification happens in two steps so that the caller can look up the
// secret key in between: Parse extracts what the request claims (access key,
// scope, signature), and Auth.Verify checks it with the secret key.
package sigv4

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Error codes returned in Error.Code. They are the codes AWS query-protocol
// services (STS, IAM) return, which the SDKs map to typed errors and, for
// RequestTimeTooSkewed, to clock-skew correction.
const (
	CodeMissingAuthenticationToken = "MissingAuthenticationToken"
	CodeIncompleteSignature        = "IncompleteSignature"
	CodeSignatureDoesNotMatch      = "SignatureDoesNotMatch"
	CodeRequestTimeTooSkewed       = "RequestTimeTooSkewed"
	CodeInvalidClientTokenID       = "InvalidClientTokenId"
	CodeExpiredToken               = "ExpiredToken"
	CodeAccessDenied               = "AccessDenied"
)

// Error carries the AWS error code a real SDK expects.
//
// Message never holds the secret key, the expected signature or the
// security token, so it is safe to return to the client and to log.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Algorithm is the only signing algorithm accepted.
const Algorithm = "AWS4-HMAC-SHA256"

const (
	amzDateFormat   = "20060102T150405Z"
	scopeDateFmt    = "20060102"
	scopeTerm       = "aws4_request"
	maxExpires      = 7 * 24 * time.Hour
	maxEchoLen      = 512 // bound on client input echoed in messages
	unsignedPayload = "UNSIGNED-PAYLOAD"
)

// Query parameter and header names used by the protocol.
const (
	paramAlgorithm     = "X-Amz-Algorithm"
	paramCredential    = "X-Amz-Credential"
	paramDate          = "X-Amz-Date"
	paramSignedHeaders = "X-Amz-SignedHeaders"
	paramSignature     = "X-Amz-Signature"
	paramExpires       = "X-Amz-Expires"
	paramSecurityToken = "X-Amz-Security-Token"
	paramContentSHA256 = "X-Amz-Content-Sha256"
)

// Scope is the credential scope of a signature.
type Scope struct {
	Date    string // YYYYMMDD, e.g. "20240509"
	Region  string // e.g. "us-east-1"
	Service string // signing name, e.g. "sts", "iam", "eks-auth"
}

// String returns the scope as it appears in the string to sign.
func (s Scope) String() string {
	return s.Date + "/" + s.Region + "/" + s.Service + "/" + scopeTerm
}

// Auth is what a signed request claims, parsed but not yet verified.
type Auth struct {
	AccessKeyID   string
	Date          time.Time // from X-Amz-Date (or the Date header)
	Scope         Scope
	SignedHeaders []string // lower-case, in the order sent
	Signature     string   // hex, as sent
	SecurityToken string   // X-Amz-Security-Token header or query parameter; "" if none
	Presigned     bool
	Expires       time.Duration // X-Amz-Expires of a presigned request; 0 if absent

	amzDate       string // the date exactly as it goes into the string to sign
	signedHeaders string // the SignedHeaders value as sent
}

// Parse extracts the claimed signature from the Authorization header or,
// when there is none, from the presigned query parameters.
//
// A request with neither yields CodeMissingAuthenticationToken; a malformed
// or incomplete one yields CodeIncompleteSignature.
func Parse(r *http.Request) (*Auth, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		return parseHeader(r, h)
	}
	q, _ := url.ParseQuery(r.URL.RawQuery) // keep what parses; AWS ignores the rest too
	if q.Has(paramAlgorithm) || q.Has(paramCredential) || q.Has(paramSignature) {
		return parseQuery(r, q)
	}
	return nil, errorf(CodeMissingAuthenticationToken, "Request is missing Authentication Token")
}

func parseHeader(r *http.Request, h string) (*Auth, error) {
	echo := truncate(h)
	alg, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	if alg != Algorithm {
		// Also covers SigV2 ("AWS AKID:sig") and SigV4a, which podid does not accept.
		return nil, errorf(CodeIncompleteSignature, "Unsupported AWS 'algorithm': '%s'.", truncate(alg))
	}
	var cred, signed, sig string
	var haveCred, haveSigned, haveSig bool
	for _, part := range strings.Split(rest, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			return nil, errorf(CodeIncompleteSignature,
				"'%s' not a valid key=value pair (missing equal-sign) in Authorization header: '%s'.", truncate(part), echo)
		}
		switch k {
		case "Credential":
			cred, haveCred = v, true
		case "SignedHeaders":
			signed, haveSigned = v, true
		case "Signature":
			sig, haveSig = v, true
		}
	}

	// AWS names every missing part at once, then echoes the header.
	var msg strings.Builder
	for _, m := range []struct {
		ok   bool
		name string
	}{{haveCred, "Credential"}, {haveSig, "Signature"}, {haveSigned, "SignedHeaders"}} {
		if !m.ok {
			fmt.Fprintf(&msg, "Authorization header requires '%s' parameter. ", m.name)
		}
	}
	amzDate := r.Header.Get(paramDate)
	httpDate := r.Header.Get("Date")
	if amzDate == "" && httpDate == "" {
		msg.WriteString("Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. ")
	}
	if msg.Len() > 0 {
		return nil, errorf(CodeIncompleteSignature, "%sAuthorization=%s", msg.String(), echo)
	}

	a := &Auth{Signature: sig, SecurityToken: r.Header.Get(paramSecurityToken)}
	if err := a.setCredential(cred); err != nil {
		return nil, err
	}
	if err := a.setSignedHeaders(signed); err != nil {
		return nil, err
	}
	if amzDate != "" {
		t, err := time.Parse(amzDateFormat, amzDate)
		if err != nil {
			return nil, errorf(CodeIncompleteSignature,
				"Date must be in ISO-8601 'basic format'. Got '%s'. See http://en.wikipedia.org/wiki/ISO_8601", truncate(amzDate))
		}
		a.Date, a.amzDate = t, amzDate
	} else {
		t, err := http.ParseTime(httpDate)
		if err != nil {
			return nil, errorf(CodeIncompleteSignature, "Date header is not a valid HTTP date: '%s'.", truncate(httpDate))
		}
		// The string to sign always carries the ISO-8601 basic form.
		a.Date = t.UTC()
		a.amzDate = a.Date.Format(amzDateFormat)
	}
	return a, nil
}

func parseQuery(r *http.Request, q url.Values) (*Auth, error) {
	for _, k := range []string{paramAlgorithm, paramCredential, paramSignature, paramSignedHeaders, paramDate} {
		if q.Get(k) == "" {
			return nil, errorf(CodeIncompleteSignature,
				"AWS query-string parameters must include '%s'. Re-examine the query-string parameters.", k)
		}
	}
	if alg := q.Get(paramAlgorithm); alg != Algorithm {
		return nil, errorf(CodeIncompleteSignature,
			"X-Amz-Algorithm only supports \"%s\", got '%s'.", Algorithm, truncate(alg))
	}
	a := &Auth{
		Presigned:     true,
		Signature:     q.Get(paramSignature),
		SecurityToken: q.Get(paramSecurityToken),
	}
	if a.SecurityToken == "" {
		a.SecurityToken = r.Header.Get(paramSecurityToken)
	}
	if err := a.setCredential(q.Get(paramCredential)); err != nil {
		return nil, err
	}
	if err := a.setSignedHeaders(q.Get(paramSignedHeaders)); err != nil {
		return nil, err
	}
	d := q.Get(paramDate)
	t, err := time.Parse(amzDateFormat, d)
	if err != nil {
		return nil, errorf(CodeIncompleteSignature,
			"X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\", got '%s'.", truncate(d))
	}
	a.Date, a.amzDate = t, d
	if q.Has(paramExpires) {
		e := q.Get(paramExpires)
		n, err := strconv.ParseInt(e, 10, 64)
		if err != nil {
			return nil, errorf(CodeIncompleteSignature, "X-Amz-Expires should be a number, got '%s'.", truncate(e))
		}
		if n < 1 {
			return nil, errorf(CodeIncompleteSignature, "X-Amz-Expires must be non-negative and greater than zero.")
		}
		if n > int64(maxExpires/time.Second) {
			return nil, errorf(CodeIncompleteSignature,
				"X-Amz-Expires must be less than a week (in seconds) that is 604800.")
		}
		a.Expires = time.Duration(n) * time.Second
	}
	return a, nil
}

// setCredential parses "AKID/20240509/us-east-1/sts/aws4_request".
func (a *Auth) setCredential(cred string) error {
	parts := strings.Split(cred, "/")
	if len(parts) != 5 || parts[0] == "" || parts[1] == "" || parts[2] == "" || parts[3] == "" {
		return errorf(CodeIncompleteSignature,
			"Credential must have exactly 5 slash-delimited elements, e.g. keyid/date/region/service/term, got '%s'.", truncate(cred))
	}
	if parts[4] != scopeTerm {
		return errorf(CodeIncompleteSignature,
			"Credential should be scoped with a valid terminator: '%s', not '%s'.", scopeTerm, truncate(parts[4]))
	}
	if _, err := time.Parse(scopeDateFmt, parts[1]); err != nil || len(parts[1]) != len(scopeDateFmt) {
		return errorf(CodeIncompleteSignature,
			"Credential should be scoped to a valid date in YYYYMMDD format, got '%s'.", truncate(parts[1]))
	}
	a.AccessKeyID = parts[0]
	a.Scope = Scope{Date: parts[1], Region: parts[2], Service: parts[3]}
	return nil
}

func (a *Auth) setSignedHeaders(s string) error {
	if s == "" {
		return errorf(CodeIncompleteSignature, "SignedHeaders must not be empty.")
	}
	names := strings.Split(s, ";")
	for i, n := range names {
		if n == "" {
			return errorf(CodeIncompleteSignature, "SignedHeaders contains an empty header name: '%s'.", truncate(s))
		}
		names[i] = strings.ToLower(n)
	}
	a.SignedHeaders = names
	a.signedHeaders = s
	return nil
}

// CheckScope reports whether the credential scope names service and, when
// regions is not empty, one of regions. Verify does not know which service
// the endpoint is, so servers call this themselves.
func (a *Auth) CheckScope(service string, regions ...string) error {
	if a.Scope.Service != service {
		return errorf(CodeSignatureDoesNotMatch, "Credential should be scoped to correct service: '%s'. ", service)
	}
	if len(regions) == 0 {
		return nil
	}
	for _, r := range regions {
		if a.Scope.Region == r {
			return nil
		}
	}
	return errorf(CodeSignatureDoesNotMatch, "Credential should be scoped to a valid region. ")
}

// truncate bounds client-supplied text echoed back in messages.
func truncate(s string) string {
	if len(s) <= maxEchoLen {
		return s
	}
	return s[:maxEchoLen] + "..."
}
