package loadgen

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

// Region every scenario signs for.
const Region = "us-east-1"

// Content types the SDKs send.
const (
	formContentType = "application/x-www-form-urlencoded; charset=utf-8"
	jsonContentType = "application/json"
)

// Signer builds requests and signs them with aws-sdk-go-v2's SigV4 signer,
// the one the Go SDK itself uses. Empty credentials mean unsigned.
type Signer struct {
	Creds  aws.Credentials
	signer *v4.Signer
}

// NewSigner signs with creds; the zero Credentials sign nothing.
func NewSigner(creds aws.Credentials) *Signer {
	return &Signer{Creds: creds, signer: v4.NewSigner()}
}

// Query is a query-protocol (STS, IAM) POST to endpoint/.
func (s *Signer) Query(ctx context.Context, endpoint, service string, body []byte) (*http.Request, error) {
	return s.build(ctx, endpoint+"/", service, formContentType, body)
}

// JSON is a restJson1 POST to endpoint+path.
func (s *Signer) JSON(ctx context.Context, endpoint, path, service string, body []byte) (*http.Request, error) {
	return s.build(ctx, endpoint+path, service, jsonContentType, body)
}

// Get is a restJson1 GET of endpoint+pathAndQuery (Describe…, List…).
func (s *Signer) Get(ctx context.Context, endpoint, pathAndQuery, service string) (*http.Request, error) {
	return s.build(ctx, endpoint+pathAndQuery, service, "", nil)
}

func (s *Signer) build(ctx context.Context, url, service, contentType string, body []byte) (*http.Request, error) {
	method := http.MethodPost
	if body == nil {
		method = http.MethodGet
	}
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if s.Creds.AccessKeyID == "" {
		return req, nil
	}
	// The payload hash is computed per request, as an SDK does.
	sum := sha256.Sum256(body)
	if err := s.signer.SignHTTP(ctx, s.Creds, req, hex.EncodeToString(sum[:]), service, Region, time.Now()); err != nil {
		return nil, err
	}
	return req, nil
}
