// Package audit writes one JSON line per API call in the shape of a
// CloudTrail record. Secrets and tokens never reach the log: values under
// sensitive keys are replaced by HIDDEN_DUE_TO_SECURITY_REASONS, as
// CloudTrail does.
package audit

import (
	"encoding/json"
	"io"
	"strings"
	"sync"
	"time"
)

// Hidden replaces every sensitive value.
const Hidden = "HIDDEN_DUE_TO_SECURITY_REASONS"

// Record is one CloudTrail-shaped event.
type Record struct {
	EventVersion       string         `json:"eventVersion"`
	UserIdentity       *UserIdentity  `json:"userIdentity"`
	EventTime          string         `json:"eventTime"`
	EventSource        string         `json:"eventSource"`
	EventName          string         `json:"eventName"`
	AWSRegion          string         `json:"awsRegion"`
	SourceIPAddress    string         `json:"sourceIPAddress"`
	UserAgent          string         `json:"userAgent"`
	ErrorCode          string         `json:"errorCode,omitempty"`
	ErrorMessage       string         `json:"errorMessage,omitempty"`
	RequestParameters  map[string]any `json:"requestParameters"`
	ResponseElements   any            `json:"responseElements"`
	RequestID          string         `json:"requestID"`
	EventID            string         `json:"eventID"`
	ReadOnly           bool           `json:"readOnly"`
	EventType          string         `json:"eventType"`
	RecipientAccountID string         `json:"recipientAccountId"`
}

// UserIdentity describes the caller.
type UserIdentity struct {
	Type        string `json:"type"` // Root, AssumedRole, WebIdentityUser, AWSService, Unknown
	PrincipalID string `json:"principalId,omitempty"`
	ARN         string `json:"arn,omitempty"`
	AccountID   string `json:"accountId,omitempty"`
	AccessKeyID string `json:"accessKeyId,omitempty"`
	UserName    string `json:"userName,omitempty"`
}

// Logger serialises records to w, one per line.
type Logger struct {
	mu sync.Mutex
	w  io.Writer
}

// New returns a Logger writing to w; a nil w discards records.
func New(w io.Writer) *Logger { return &Logger{w: w} }

// Log redacts and writes rec.
func (l *Logger) Log(rec *Record) error {
	if l == nil || l.w == nil {
		return nil
	}
	if rec.EventVersion == "" {
		rec.EventVersion = "1.09"
	}
	if rec.EventType == "" {
		rec.EventType = "AwsApiCall"
	}
	if rec.EventTime == "" {
		rec.EventTime = time.Now().UTC().Format(time.RFC3339)
	}
	rec.RequestParameters = redactMap(rec.RequestParameters)
	rec.ResponseElements = Redact(rec.ResponseElements)
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	_, err = l.w.Write(b)
	return err
}

// sensitive lists lower-cased keys whose values are never logged.
var sensitive = map[string]bool{
	"token":                true,
	"sessiontoken":         true,
	"secretaccesskey":      true,
	"webidentitytoken":     true,
	"samlassertion":        true,
	"password":             true,
	"secret":               true,
	"authorization":        true,
	"x-amz-security-token": true,
	"kubeconfig":           true, // RegisterCluster: holds the apiserver credential
}

// IsSensitive reports whether a parameter name carries a secret.
func IsSensitive(key string) bool { return sensitive[strings.ToLower(key)] }

// Redact returns v (decoded JSON: maps, slices, scalars) with every
// sensitive value hidden. Structs are converted through JSON first.
func Redact(v any) any {
	switch t := v.(type) {
	case nil:
		return nil
	case map[string]any:
		return redactMap(t)
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			out[i] = Redact(e)
		}
		return out
	case string, bool, float64, json.Number:
		return t
	default:
		b, err := json.Marshal(t)
		if err != nil {
			return nil
		}
		var generic any
		if err := json.Unmarshal(b, &generic); err != nil {
			return nil
		}
		return Redact(generic)
	}
}

func redactMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		if IsSensitive(k) {
			out[k] = Hidden
			continue
		}
		out[k] = Redact(v)
	}
	return out
}
