package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/podid/podid/internal/agent/eksauth"
)

// CredentialsPath is the path SDKs are pointed at.
const CredentialsPath = "/v1/credentials"

// maxTokenSize bounds the Authorization header we accept; service-account
// tokens are 1–2 KiB. (The HTTP server refuses headers beyond 32 KiB before
// they reach the handler.)
const maxTokenSize = 16 << 10

// apiError is an error answer to an SDK: {"code","message"}, the shape the
// SDKs' container providers decode.
type apiError struct {
	status  int
	code    string
	message string
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

// hostSet is the Host header values the agent answers to (DNS-rebinding
// defence: a page that resolves its own name to 169.254.170.23 must not get
// the node's credentials through a browser).
type hostSet struct {
	exact    map[string]bool // raw Host values, e.g. "169.254.170.23", "[fd00:ec2::23]:80"
	anyPorts map[string]bool // ports of wildcard binds: any IP literal or localhost
}

// AllowAddrs makes the handler accept Host headers naming these listener
// addresses. Serve calls it with its listeners.
func (a *Agent) AllowAddrs(addrs ...net.Addr) {
	hs := &hostSet{exact: map[string]bool{}, anyPorts: map[string]bool{}}
	if old := a.hosts.Load(); old != nil {
		for k := range old.exact {
			hs.exact[k] = true
		}
		for k := range old.anyPorts {
			hs.anyPorts[k] = true
		}
	}
	for _, addr := range addrs {
		ap, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			continue
		}
		ip, port := ap.Addr().Unmap(), strconv.Itoa(int(ap.Port()))
		if ip.IsUnspecified() {
			hs.anyPorts[port] = true
			continue
		}
		names := []string{ip.WithZone("").String()}
		if ip.IsLoopback() {
			names = append(names, "localhost")
		}
		for _, n := range names {
			hp := net.JoinHostPort(n, port)
			hs.exact[hp] = true
			if port == "80" {
				hs.exact[strings.TrimSuffix(hp, ":80")] = true
			}
		}
	}
	a.hosts.Store(hs)
}

func (a *Agent) hostAllowed(host string) bool {
	hs := a.hosts.Load()
	if hs == nil {
		return false
	}
	host = strings.ToLower(host)
	if hs.exact[host] {
		return true
	}
	// Slow path: other spellings of an allowed address (e.g. an expanded
	// IPv6 form) and wildcard binds.
	h, port, err := net.SplitHostPort(host)
	if err != nil {
		h, port = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), "80"
	}
	if h == "localhost" {
		return hs.anyPorts[port]
	}
	ip, err := netip.ParseAddr(h)
	if err != nil || ip.Zone() != "" {
		return false
	}
	return hs.anyPorts[port] || hs.exact[net.JoinHostPort(ip.Unmap().String(), port)]
}

// ServeHTTP answers GET /v1/credentials.
func (a *Agent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	status := a.serveCredentials(w, r)
	a.m.request(status)
}

func (a *Agent) serveCredentials(w http.ResponseWriter, r *http.Request) int {
	if r.URL.Path != CredentialsPath && r.URL.Path != CredentialsPath+"/" {
		return writeError(w, &apiError{http.StatusNotFound, "NotFound", "No such path; credentials are served at " + CredentialsPath})
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return writeError(w, &apiError{http.StatusMethodNotAllowed, "MethodNotAllowed", "Use GET"})
	}
	if !a.hostAllowed(r.Host) {
		return writeError(w, &apiError{http.StatusBadRequest, "InvalidHost", "The Host header does not name an address this agent listens on"})
	}
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 || vals[0] == "" {
		return writeError(w, &apiError{http.StatusBadRequest, "InvalidToken", "The Authorization header must hold the pod's service account token"})
	}
	token := vals[0]
	if !wellFormed(token) {
		return writeError(w, &apiError{http.StatusBadRequest, "InvalidToken", "The Authorization header does not hold a service account token (a JWT)"})
	}
	a.log.Debug("handling new request", "client-addr", r.RemoteAddr)
	body, err := a.lookup(r.Context(), token, r.RemoteAddr)
	if err != nil {
		ae := toAPIError(err)
		if ae.status >= 500 && r.Context().Err() == nil {
			a.log.Warn("credentials request failed", "client-addr", r.RemoteAddr, "status", ae.status, "err", err)
		}
		return writeError(w, ae)
	}
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
	return http.StatusOK
}

// Preallocated header values: the hit path allocates as little as it can.
var (
	jsonContentType = []string{"application/json"}
	noStore         = []string{"no-store"}
)

// wellFormed reports whether token looks like a compact JWS (three
// base64url segments), so garbage never reaches the server.
func wellFormed(token string) bool {
	if len(token) > maxTokenSize {
		return false
	}
	dots, seg := 0, 0
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case c == '.':
			if seg == 0 {
				return false
			}
			dots, seg = dots+1, 0
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			seg++
		default:
			return false
		}
	}
	return dots == 2 && seg > 0
}

// toAPIError maps a lookup failure to the SDK-facing answer. EKS Auth's
// own refusals pass through with their message; AccessDeniedException
// becomes 403 as its meaning says (EKS Auth sends it as 400).
func toAPIError(err error) *apiError {
	var ue *eksauth.Error
	switch {
	case errors.As(err, &ue):
		status := ue.StatusCode
		switch {
		case ue.Code == "AccessDeniedException":
			status = http.StatusForbidden
		case ue.Code == "ThrottlingException":
			status = http.StatusTooManyRequests
		case status == http.StatusInternalServerError || status == http.StatusServiceUnavailable:
		case status >= 500:
			status = http.StatusBadGateway
		case status < 400:
			status = http.StatusBadGateway
		}
		return &apiError{status, ue.Code, ue.Message}
	case errors.Is(err, errBusy):
		return &apiError{http.StatusServiceUnavailable, "ServiceUnavailable", "Too many credential requests are waiting for the podid server; try again"}
	case errors.Is(err, errExpiredUpstream):
		return &apiError{http.StatusInternalServerError, "InternalServerException", err.Error()}
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return &apiError{http.StatusServiceUnavailable, "ServiceUnavailable", "The podid server did not answer in time"}
	}
	return &apiError{http.StatusServiceUnavailable, "ServiceUnavailable", "The podid server could not be reached"}
}

func writeError(w http.ResponseWriter, e *apiError) int {
	b, _ := json.Marshal(struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}{e.code, e.message})
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	w.WriteHeader(e.status)
	_, _ = w.Write(b)
	return e.status
}
