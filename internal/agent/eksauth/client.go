// Package eksauth is a small client for the one EKS Auth operation the node
// agent needs, AssumeRoleForPodIdentity (restJson1, SigV4 name "eks-auth").
//
// aws-sdk-go-v2's service/eksauth is not available from this project's module
// proxy, so the request is built here and signed with aws/signer/v4, or
// authenticated with the agent's own service-account token instead.
package eksauth

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ServiceName is the SigV4 signing name of EKS Auth.
const ServiceName = "eks-auth"

// maxResponseSize bounds what is read from the server; a real answer is a
// few KiB.
const maxResponseSize = 1 << 20

// Response is AssumeRoleForPodIdentity's output.
type Response struct {
	Subject struct {
		Namespace      string `json:"namespace"`
		ServiceAccount string `json:"serviceAccount"`
	} `json:"subject"`
	Audience               string `json:"audience"`
	PodIdentityAssociation struct {
		AssociationARN string `json:"associationArn"`
		AssociationID  string `json:"associationId"`
	} `json:"podIdentityAssociation"`
	AssumedRoleUser struct {
		ARN          string `json:"arn"`
		AssumeRoleID string `json:"assumeRoleId"`
	} `json:"assumedRoleUser"`
	Credentials Credentials `json:"credentials"`
}

// Credentials are the role session's credentials.
type Credentials struct {
	AccessKeyID     string    `json:"accessKeyId"`
	SecretAccessKey string    `json:"secretAccessKey"`
	SessionToken    string    `json:"sessionToken"`
	Expiration      Timestamp `json:"expiration"`
}

// Timestamp is a restJson1 timestamp: epoch seconds as a JSON number on the
// wire. An RFC 3339 string is accepted too, as some tools print it so.
type Timestamp struct{ time.Time }

// UnmarshalJSON implements json.Unmarshaler.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return fmt.Errorf("eksauth: expiration %q: %w", s, err)
		}
		t.Time = v
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("eksauth: expiration: %w", err)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) || f < 0 || f > 1<<40 {
		return fmt.Errorf("eksauth: expiration %v out of range", f)
	}
	sec, frac := math.Modf(f)
	t.Time = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	return nil
}

// MarshalJSON writes epoch seconds, as the service does.
func (t Timestamp) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprint(t.Unix())), nil
}

// Error is an error answer from EKS Auth.
type Error struct {
	StatusCode int
	Code       string // e.g. AccessDeniedException
	Message    string
	RequestID  string
}

func (e *Error) Error() string {
	return fmt.Sprintf("eks-auth: %s (HTTP %d): %s", e.Code, e.StatusCode, e.Message)
}

// Temporary reports whether trying again later may succeed: throttling and
// server-side failures. Every other answer is the server's final word on
// this token.
func (e *Error) Temporary() bool {
	return e.StatusCode == http.StatusTooManyRequests || e.StatusCode >= 500 ||
		e.Code == "ThrottlingException"
}

// Authenticator proves the agent's identity on a request whose body has the
// given SHA-256 (hex).
type Authenticator interface {
	Authenticate(ctx context.Context, r *http.Request, payloadHash string) error
}

// Client calls AssumeRoleForPodIdentity.
type Client struct {
	// Endpoint is the server's base URL, e.g. https://podid.example:7443 or
	// https://eks-auth.us-east-1.api.aws.
	Endpoint string
	// HTTPClient defaults to a client with a 10 s timeout.
	HTTPClient *http.Client
	Auth       Authenticator
	UserAgent  string
}

var defaultHTTPClient = &http.Client{Timeout: 10 * time.Second}

// AssumeRoleForPodIdentity exchanges a pod's service-account token for the
// credentials of the role its association names.
func (c *Client) AssumeRoleForPodIdentity(ctx context.Context, cluster, token string) (*Response, error) {
	if cluster == "" {
		return nil, errors.New("eksauth: empty cluster name")
	}
	body, err := json.Marshal(struct {
		Token string `json:"token"`
	}{token})
	if err != nil {
		return nil, fmt.Errorf("eksauth: encode request: %w", err)
	}
	u := strings.TrimRight(c.Endpoint, "/") + "/clusters/" + url.PathEscape(cluster) + "/assume-role-for-pod-identity"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("eksauth: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.UserAgent != "" {
		req.Header.Set("User-Agent", c.UserAgent)
	}
	sum := sha256.Sum256(body)
	if c.Auth != nil {
		if err := c.Auth.Authenticate(ctx, req, hex.EncodeToString(sum[:])); err != nil {
			return nil, fmt.Errorf("eksauth: authenticate: %w", err)
		}
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("eksauth: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseSize+1))
	if err != nil {
		return nil, fmt.Errorf("eksauth: read response: %w", err)
	}
	if len(data) > maxResponseSize {
		return nil, fmt.Errorf("eksauth: response larger than %d bytes", maxResponseSize)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, decodeError(resp, data)
	}
	var out Response
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, fmt.Errorf("eksauth: decode response: %w", err)
	}
	cr := out.Credentials
	if cr.AccessKeyID == "" || cr.SecretAccessKey == "" || cr.SessionToken == "" || cr.Expiration.IsZero() {
		return nil, errors.New("eksauth: response lacks credentials")
	}
	return &out, nil
}

// decodeError reads a restJson1 error. The code comes from X-Amzn-ErrorType
// first, then the body's __type or code; both may carry a namespace prefix
// ("aws.eksauth#…") or a URI suffix ("…:http://…") that is cut off.
func decodeError(resp *http.Response, data []byte) *Error {
	e := &Error{StatusCode: resp.StatusCode, RequestID: resp.Header.Get("X-Amzn-Requestid")}
	var body struct {
		Type     string `json:"__type"`
		Code     string `json:"code"`
		Message  string `json:"message"`
		MessageU string `json:"Message"`
	}
	_ = json.Unmarshal(data, &body)
	e.Code = sanitizeCode(resp.Header.Get("X-Amzn-Errortype"))
	if e.Code == "" {
		e.Code = sanitizeCode(body.Type)
	}
	if e.Code == "" {
		e.Code = sanitizeCode(body.Code)
	}
	if e.Code == "" {
		e.Code = codeForStatus(resp.StatusCode)
	}
	e.Message = body.Message
	if e.Message == "" {
		e.Message = body.MessageU
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

func sanitizeCode(s string) string {
	if i := strings.IndexByte(s, ':'); i >= 0 {
		s = s[:i]
	}
	if i := strings.LastIndexByte(s, '#'); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}

func codeForStatus(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "ThrottlingException"
	case status == http.StatusServiceUnavailable:
		return "ServiceUnavailableException"
	case status >= 500:
		return "InternalServerException"
	case status == http.StatusNotFound:
		return "ResourceNotFoundException"
	case status == http.StatusForbidden:
		return "AccessDeniedException"
	}
	return "InvalidRequestException"
}
