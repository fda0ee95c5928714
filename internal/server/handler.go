package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/podid/podid/internal/audit"
	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/eks"
	"github.com/podid/podid/internal/iam"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/sts"
)

// maxBodySize bounds request bodies; the largest legitimate one (a 10 KiB
// policy, URL-encoded) is far below it.
const maxBodySize = 1 << 20

// API versions of the query protocol.
const (
	stsVersion = "2011-06-15"
	iamVersion = "2010-05-08"
)

// Handler returns the HTTP handler serving every API and the health probes.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", s.readyz)
	mux.HandleFunc("/", s.serveAPI)
	return mux
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.store.Ping(ctx); err != nil {
		http.Error(w, "store unavailable", http.StatusServiceUnavailable)
		return
	}
	if s.sealer == nil {
		http.Error(w, "keys not loaded", http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// call is one API request on its way through the server.
type call struct {
	requestID string
	service   string // audit event source prefix: sts, iam, eks, eks-auth
	action    string
	caller    *session.Principal
	params    map[string]any
	readOnly  bool
	started   time.Time
}

func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	c := &call{requestID: awsproto.NewRequestID(), started: time.Now()}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodySize+1))
	if err != nil {
		s.fail(w, r, c, awsproto.Errorf(http.StatusBadRequest, "InvalidRequest", "Could not read the request body"), false)
		return
	}
	if len(body) > maxBodySize {
		s.fail(w, r, c, awsproto.Errorf(http.StatusRequestEntityTooLarge, "RequestEntityTooLarge", "Request body must be at most %d bytes", maxBodySize), false)
		return
	}
	if op, ok := eks.Route(r.Method, r.URL.Path); ok {
		s.serveREST(w, r, c, op, body)
		return
	}
	if r.URL.Path != "/" && r.URL.Path != "" {
		c.service = "eks"
		s.fail(w, r, c, awsproto.Errorf(http.StatusNotFound, "UnknownOperationException", "Unknown operation %s %s", r.Method, r.URL.Path), true)
		return
	}
	s.serveQuery(w, r, c, body)
}

// serveREST handles the restJson1 APIs: EKS and EKS Auth.
func (s *Server) serveREST(w http.ResponseWriter, r *http.Request, c *call, op eks.Op, body []byte) {
	c.service, c.action, c.readOnly = op.Service, op.Name, op.ReadOnly
	c.params = restParams(op, body)
	var caller eks.Caller
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && op.Name == "AssumeRoleForPodIdentity" {
		node, err := s.eks.AuthenticateNode(r.Context(), op.Cluster, strings.TrimSpace(tok))
		if err != nil {
			s.fail(w, r, c, err, true)
			return
		}
		caller.Node = node
	} else {
		p, err := s.authenticate(r.Context(), r, body, op.Service)
		if err != nil {
			s.fail(w, r, c, restAuthError(err), true)
			return
		}
		caller.Principal = p
		c.caller = p
	}
	req := &eks.Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Header: r.Header, Body: body}
	status, result, err := s.eks.Handle(r.Context(), caller, op, req)
	if err != nil {
		s.fail(w, r, c, err, true)
		return
	}
	awsproto.WriteJSON(w, status, c.requestID, result)
	var elements any
	if !c.readOnly {
		elements = result
	}
	s.record(r, c, elements, nil)
}

// restAuthCodes maps the query protocol's authentication error codes to
// the names restJson services such as EKS answer with.
var restAuthCodes = map[string]string{
	"AccessDenied":               "AccessDeniedException",
	"MissingAuthenticationToken": "MissingAuthenticationTokenException",
	"IncompleteSignature":        "IncompleteSignatureException",
	"SignatureDoesNotMatch":      "InvalidSignatureException",
	"InvalidClientTokenId":       "UnrecognizedClientException",
	"ExpiredToken":               "ExpiredTokenException",
}

// restAuthError renames query-protocol authentication failures to the
// names restJson services use.
func restAuthError(err error) error {
	var e *awsproto.Error
	if !errors.As(err, &e) {
		return err
	}
	if code, ok := restAuthCodes[e.Code]; ok {
		return &awsproto.Error{Code: code, Message: e.Message, Status: http.StatusForbidden}
	}
	return e
}

// restParams is the audit view of a restJson request: path parameters and
// the JSON body (the pod token is hidden by the audit logger).
func restParams(op eks.Op, body []byte) map[string]any {
	m := map[string]any{}
	if len(body) > 0 {
		_ = json.Unmarshal(body, &m)
	}
	if op.Cluster != "" {
		m["clusterName"] = op.Cluster
	}
	if op.ID != "" {
		if strings.HasPrefix(op.ID, "arn:") {
			m["resourceArn"] = op.ID
		} else {
			m["associationId"] = op.ID
		}
	}
	return m
}

// serveQuery handles the query protocol shared by IAM and STS: the API is
// chosen by Version (or, without one, by the signature's service).
func (s *Server) serveQuery(w http.ResponseWriter, r *http.Request, c *call, body []byte) {
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		s.fail(w, r, c, awsproto.Errorf(http.StatusMethodNotAllowed, "InvalidAction", "Method %s is not allowed", r.Method), false)
		return
	}
	form, err := awsproto.ParseForm(body, r.URL.Query())
	if err != nil {
		s.fail(w, r, c, err, false)
		return
	}
	c.action = form.Get("Action")
	c.params = queryParams(form)
	if c.action == "" {
		s.fail(w, r, c, awsproto.Errorf(http.StatusBadRequest, "MissingAction", "Missing Action"), false)
		return
	}
	switch form.Get("Version") {
	case stsVersion:
		c.service = "sts"
	case iamVersion:
		c.service = "iam"
	case "":
		c.service = signedService(r)
	}
	if c.service != "sts" && c.service != "iam" {
		s.fail(w, r, c, awsproto.Errorf(http.StatusBadRequest, "InvalidAction", "Could not find operation %s for version %s", c.action, form.Get("Version")), false)
		return
	}

	if !(c.service == "sts" && sts.Unsigned(c.action) && !signed(r)) {
		c.caller, err = s.authenticate(r.Context(), r, body, c.service)
		if err != nil {
			s.fail(w, r, c, err, false)
			return
		}
	}

	var result any
	var namespace string
	if c.service == "sts" {
		namespace = sts.Namespace
		c.readOnly = sts.ReadOnly(c.action)
		result, err = s.sts.Handle(r.Context(), c.caller, c.action, form)
	} else {
		namespace = iam.Namespace
		c.readOnly = isReadOnly(c.action)
		result, err = s.iam.Handle(r.Context(), c.caller, c.action, form)
		if err == nil && !c.readOnly {
			// Roles and providers STS caches may have changed.
			s.sts.Forget()
		}
	}
	if err != nil {
		s.fail(w, r, c, err, false)
		return
	}
	awsproto.WriteQueryResult(w, c.action, namespace, c.requestID, result)
	var elements any
	if !c.readOnly {
		elements = result
	}
	s.record(r, c, elements, nil)
}

// fail writes err in the protocol of the request and records it. Internal
// errors are logged with their cause and reach the client without it.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, c *call, err error, jsonProtocol bool) {
	var e *awsproto.Error
	if !errors.As(err, &e) {
		s.log.Error("request failed", "request_id", c.requestID, "service", c.service, "action", c.action, "err", err)
		e = awsproto.Internal()
	}
	if jsonProtocol {
		awsproto.WriteJSONError(w, e, c.requestID)
	} else {
		awsproto.WriteQueryError(w, e, c.requestID)
	}
	s.record(r, c, nil, e)
}

func (s *Server) record(r *http.Request, c *call, elements any, e *awsproto.Error) {
	if c.action == "" && e != nil && c.service == "" {
		// Nothing identifiable was asked; still record the failure.
		c.service = "unknown"
	}
	rec := &audit.Record{
		EventTime:          c.started.UTC().Format(time.RFC3339),
		EventSource:        c.service + ".amazonaws.com",
		EventName:          c.action,
		AWSRegion:          s.cfg.Region,
		SourceIPAddress:    sourceIP(r),
		UserAgent:          r.UserAgent(),
		RequestParameters:  c.params,
		ResponseElements:   elements,
		RequestID:          c.requestID,
		EventID:            awsproto.NewRequestID(),
		ReadOnly:           c.readOnly,
		RecipientAccountID: s.account,
		UserIdentity:       userIdentity(c.caller),
	}
	if e != nil {
		rec.ErrorCode, rec.ErrorMessage = e.Code, e.Message
	}
	if err := s.audit.Log(rec); err != nil {
		s.log.Error("audit log write failed", "err", err)
	}
}

func userIdentity(p *session.Principal) *audit.UserIdentity {
	if p == nil {
		return &audit.UserIdentity{Type: "Unknown"}
	}
	u := &audit.UserIdentity{PrincipalID: p.UserID, ARN: p.ARN, AccountID: p.Account, AccessKeyID: p.AccessKeyID}
	switch {
	case p.IsRoleSession():
		u.Type = "AssumedRole"
	case p.IsRoot():
		u.Type = "Root"
	default:
		u.Type = "IAMUser"
	}
	return u
}

func queryParams(f awsproto.Form) map[string]any {
	m := make(map[string]any, len(f.Values))
	for k, v := range f.Values {
		if k == "Action" || k == "Version" || strings.HasPrefix(k, "X-Amz-") {
			continue
		}
		key := strings.ToLower(k[:1]) + k[1:]
		if len(v) == 1 {
			m[key] = v[0]
		} else {
			m[key] = v
		}
	}
	return m
}

func isReadOnly(action string) bool {
	for _, p := range []string{"Get", "List", "Simulate", "Describe"} {
		if strings.HasPrefix(action, p) {
			return true
		}
	}
	return false
}

func signed(r *http.Request) bool {
	return r.Header.Get("Authorization") != "" || r.URL.Query().Has("X-Amz-Signature")
}

// signedService reads the service name from the credential scope without
// verifying anything, to route a request that names no Version.
func signedService(r *http.Request) string {
	cred := r.URL.Query().Get("X-Amz-Credential")
	if h := r.Header.Get("Authorization"); h != "" {
		if i := strings.Index(h, "Credential="); i >= 0 {
			cred = h[i+len("Credential="):]
			if j := strings.IndexAny(cred, ", "); j >= 0 {
				cred = cred[:j]
			}
		}
	}
	parts := strings.Split(cred, "/")
	if len(parts) < 4 {
		return ""
	}
	return parts[3]
}

func sourceIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
