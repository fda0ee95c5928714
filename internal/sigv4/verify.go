package sigv4

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/textproto"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxSkew is how far the signing time may be from the server's clock.
const MaxSkew = 15 * time.Minute

// Verify checks the signature with the caller's secret key.
//
// body is the full request body, already read by the caller (nil for none).
// now is the server's clock. Verify checks, in order: the clock skew (or, for
// a presigned request with X-Amz-Expires, its expiry), that the scope date is
// the signing date, that "host" is signed, that a signed payload hash matches
// body, and finally the signature itself, compared in constant time.
func (a *Auth) Verify(r *http.Request, body []byte, secretAccessKey string, now time.Time) error {
	if err := a.checkTime(now); err != nil {
		return err
	}
	if day := a.Date.UTC().Format(scopeDateFmt); a.Scope.Date != day {
		return errorf(CodeSignatureDoesNotMatch,
			"Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '%s' != '%s', from '%s'.",
			a.Scope.Date, day, a.amzDate)
	}
	if !a.signs("host") {
		return errorf(CodeIncompleteSignature, "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.")
	}

	payloadHash, err := a.payloadHash(r, body)
	if err != nil {
		return err
	}

	key := signingKey(secretAccessKey, a.Scope)
	want, err := hex.DecodeString(a.Signature)
	if err != nil || len(want) != sha256.Size {
		return errSignature()
	}
	for _, cr := range a.canonicalRequests(r, payloadHash) {
		if subtle.ConstantTimeCompare(a.sign(key, cr), want) == 1 {
			return nil
		}
	}
	return errSignature()
}

func errSignature() *Error {
	return errorf(CodeSignatureDoesNotMatch,
		"The request signature we calculated does not match the signature you provided. "+
			"Check your AWS Secret Access Key and signing method. Consult the service documentation for details.")
}

func (a *Auth) checkTime(now time.Time) error {
	now = now.UTC()
	if a.Presigned && a.Expires > 0 {
		// A presigned URL is good from its date until date+expires; the
		// skew bound applies only to dates in the future.
		if now.After(a.Date.Add(a.Expires)) {
			return errorf(CodeAccessDenied, "Request has expired")
		}
	} else if earliest := now.Add(-MaxSkew); a.Date.Before(earliest) {
		return errorf(CodeRequestTimeTooSkewed, "Signature expired: %s is now earlier than %s (%s - 15 min.)",
			a.amzDate, earliest.Format(amzDateFormat), now.Format(amzDateFormat))
	}
	if latest := now.Add(MaxSkew); a.Date.After(latest) {
		return errorf(CodeRequestTimeTooSkewed, "Signature not yet current: %s is still later than %s (%s + 15 min.)",
			a.amzDate, latest.Format(amzDateFormat), now.Format(amzDateFormat))
	}
	return nil
}

func (a *Auth) signs(name string) bool {
	for _, h := range a.SignedHeaders {
		if h == name {
			return true
		}
	}
	return false
}

// payloadHash returns the payload hash that goes into the canonical request
// and checks a declared hash against body.
func (a *Auth) payloadHash(r *http.Request, body []byte) (string, error) {
	sum := sha256.Sum256(body)
	actual := hex.EncodeToString(sum[:])
	declared, ok := headerValues(r.Header, "x-amz-content-sha256")
	if !ok && a.Presigned {
		var q url.Values
		q, _ = url.ParseQuery(r.URL.RawQuery)
		if q.Has(paramContentSHA256) {
			declared, ok = q[paramContentSHA256], true
		}
	}
	if !ok || len(declared) == 0 {
		return actual, nil
	}
	h := declared[0]
	if h == unsignedPayload {
		return h, nil
	}
	if !strings.EqualFold(h, actual) {
		return "", errorf(CodeSignatureDoesNotMatch,
			"The provided 'x-amz-content-sha256' header does not match what was computed.")
	}
	return h, nil
}

// canonicalRequests returns the canonical requests that the clients in use
// could have signed for r, the aws-sdk-go-v2 form first, without duplicates.
//
// Clients differ in three details. aws-sdk-go-v2 signs the path as sent;
// botocore and the JavaScript SDK first remove dot segments and repeated
// slashes. aws-sdk-go-v2 and the JavaScript SDK decode and re-encode the
// query; botocore sorts the pairs as sent. The Go SDK collapses runs of
// spaces in header values; the others collapse any whitespace. For the
// requests these clients produce all variants are usually equal.
func (a *Auth) canonicalRequests(r *http.Request, payloadHash string) []string {
	path := requestPath(r)
	paths := distinct(escapePath(path), escapePath(removeDotSegments(path)))
	queries := distinct(canonicalQuery(r.URL.RawQuery, a.Presigned), rawCanonicalQuery(r.URL.RawQuery, a.Presigned))
	headers := []string{a.canonicalHeaders(r, collapseSpaces)}
	if strings.ContainsAny(headers[0], otherWhitespace) {
		headers = distinct(headers[0], a.canonicalHeaders(r, collapseWhitespace))
	}
	var out []string
	for _, p := range paths {
		for _, q := range queries {
			for _, h := range headers {
				out = append(out, r.Method+"\n"+p+"\n"+q+"\n"+h+"\n"+a.signedHeaders+"\n"+payloadHash)
			}
		}
	}
	return out
}

func distinct(a, b string) []string {
	if a == b {
		return []string{a}
	}
	return []string{a, b}
}

// canonicalHeaders returns the canonical header lines, each ending in a
// newline, with values cleaned by trim.
func (a *Auth) canonicalHeaders(r *http.Request, trim func(string) string) string {
	var b strings.Builder
	for _, name := range a.SignedHeaders {
		b.WriteString(name)
		b.WriteByte(':')
		b.WriteString(a.headerValue(r, name, trim))
		b.WriteByte('\n')
	}
	return b.String()
}

// sign returns the binary signature of the canonical request cr.
func (a *Auth) sign(key []byte, cr string) []byte {
	sum := sha256.Sum256([]byte(cr))
	var sts strings.Builder
	sts.WriteString(Algorithm)
	sts.WriteByte('\n')
	sts.WriteString(a.amzDate)
	sts.WriteByte('\n')
	sts.WriteString(a.Scope.String())
	sts.WriteByte('\n')
	sts.WriteString(hex.EncodeToString(sum[:]))
	return hmacSHA256(key, sts.String())
}

// requestPath returns the path exactly as the client sent it.
func requestPath(r *http.Request) string {
	// RequestURI is the untouched request target on the server side; the
	// URL may have been rewritten by middleware (http.StripPrefix).
	if u := r.RequestURI; strings.HasPrefix(u, "/") {
		if i := strings.IndexByte(u, '?'); i >= 0 {
			u = u[:i]
		}
		return u
	}
	if r.URL.Opaque != "" {
		// "//host/path" form: keep the path part.
		o := strings.TrimPrefix(r.URL.Opaque, "//")
		if i := strings.IndexByte(o, '/'); i >= 0 {
			return o[i:]
		}
		return "/"
	}
	return r.URL.EscapedPath()
}

// escapePath URI-encodes every byte outside the RFC 3986 unreserved set,
// except '/'. Applied to the already-encoded path, this is the double
// encoding SigV4 uses for every service but S3.
func escapePath(p string) string {
	if p == "" {
		return "/"
	}
	return uriEncode(p, true)
}

func uriEncode(s string, keepSlash bool) string {
	const hexDigits = "0123456789ABCDEF"
	n := 0
	for i := 0; i < len(s); i++ {
		if !unreserved(s[i]) && !(keepSlash && s[i] == '/') {
			n++
		}
	}
	if n == 0 {
		return s
	}
	b := make([]byte, 0, len(s)+2*n)
	for i := 0; i < len(s); i++ {
		c := s[i]
		if unreserved(c) || (keepSlash && c == '/') {
			b = append(b, c)
			continue
		}
		b = append(b, '%', hexDigits[c>>4], hexDigits[c&15])
	}
	return string(b)
}

func unreserved(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' ||
		c == '-' || c == '_' || c == '.' || c == '~'
}

// removeDotSegments mirrors botocore's normalisation: RFC 3986 dot-segment
// removal plus dropping empty segments, keeping a leading and trailing '/'.
func removeDotSegments(p string) string {
	if p == "" {
		return "/"
	}
	var out []string
	for _, seg := range strings.Split(p, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, seg)
		}
	}
	s := strings.Join(out, "/")
	if p[0] == '/' {
		s = "/" + s
	}
	if p[len(p)-1] == '/' && len(out) > 0 {
		s += "/"
	}
	return s
}

type queryPair struct{ k, v string }

func sortPairs(ps []queryPair) {
	sort.Slice(ps, func(i, j int) bool {
		if ps[i].k != ps[j].k {
			return ps[i].k < ps[j].k
		}
		return ps[i].v < ps[j].v
	})
}

func joinPairs(ps []queryPair) string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// canonicalQuery decodes the query the way url.ParseQuery does (which is how
// aws-sdk-go-v2 reads it before signing) and re-encodes each key and value.
func canonicalQuery(raw string, presigned bool) string {
	var ps []queryPair
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, err1 := url.QueryUnescape(k)
		v, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil || k == "" {
			continue
		}
		if presigned && k == paramSignature {
			continue
		}
		ps = append(ps, queryPair{uriEncode(k, false), uriEncode(v, false)})
	}
	sortPairs(ps)
	return joinPairs(ps)
}

// rawCanonicalQuery sorts the pairs as sent, without re-encoding, as
// botocore does for a query that is already in the URL.
func rawCanonicalQuery(raw string, presigned bool) string {
	if raw == "" {
		return ""
	}
	var ps []queryPair
	for _, pair := range strings.Split(raw, "&") {
		k, v, _ := strings.Cut(pair, "=")
		if presigned && k == paramSignature {
			continue
		}
		ps = append(ps, queryPair{k, v})
	}
	sortPairs(ps)
	return joinPairs(ps)
}

// headerValue returns the canonical value of the signed header name.
func (a *Auth) headerValue(r *http.Request, name string, trim func(string) string) string {
	var vals []string
	switch name {
	case "host":
		// Go moves the Host header into r.Host.
		h := r.Host
		if h == "" {
			h = r.URL.Host
		}
		vals = []string{h}
	default:
		var ok bool
		vals, ok = headerValues(r.Header, name)
		if !ok {
			// Go keeps these out of the header map on one side or the other.
			switch name {
			case "content-length":
				if r.ContentLength >= 0 {
					vals = []string{strconv.FormatInt(r.ContentLength, 10)}
				}
			case "transfer-encoding":
				if len(r.TransferEncoding) > 0 {
					vals = []string{strings.Join(r.TransferEncoding, ",")}
				}
			}
		}
	}
	for i, v := range vals {
		vals[i] = trim(v)
	}
	return strings.Join(vals, ",")
}

// headerValues looks up name (lower-case) in h, returning a copy of its
// values; ok reports whether the header was present.
func headerValues(h http.Header, name string) (vals []string, ok bool) {
	if v, ok := h[textproto.CanonicalMIMEHeaderKey(name)]; ok {
		return append([]string(nil), v...), true
	}
	// Headers set directly in the map may not be in canonical form.
	for k, v := range h {
		if strings.EqualFold(k, name) {
			vals = append(vals, v...)
			ok = true
		}
	}
	return vals, ok
}

// collapseSpaces trims spaces and collapses runs of spaces, as the Go and
// JavaScript SDKs do.
func collapseSpaces(s string) string {
	s = strings.Trim(s, " ")
	if !strings.Contains(s, "  ") {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for i := 0; i < len(s); i++ {
		if s[i] == ' ' {
			if space {
				continue
			}
			space = true
		} else {
			space = false
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// otherWhitespace is the ASCII and Latin-1 whitespace, besides ' ', that
// Python's str.split (and, in part, JavaScript's \s) collapses; '\n' cannot
// occur in a header value.
const otherWhitespace = "\t\v\f\r\x1c\x1d\x1e\x1f\u0085\u00a0"

// collapseWhitespace is Python's ' '.join(s.split()).
func collapseWhitespace(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool {
		return r == ' ' || r == '\n' || strings.ContainsRune(otherWhitespace, r)
	}), " ")
}

func hmacSHA256(key []byte, data string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(data))
	return m.Sum(nil)
}

// SigningKey derives the SigV4 signing key for a secret and a scope.
func SigningKey(secretAccessKey string, s Scope) []byte {
	k := hmacSHA256([]byte("AWS4"+secretAccessKey), s.Date)
	k = hmacSHA256(k, s.Region)
	k = hmacSHA256(k, s.Service)
	return hmacSHA256(k, scopeTerm)
}

// keyCache memoises derived signing keys: a busy server sees the same few
// (secret, day, region, service) tuples over and over. Entries are keyed by
// a hash so that the map keys are not the secrets themselves.
var keyCache struct {
	sync.Mutex
	m map[[sha256.Size]byte][]byte
}

const keyCacheMax = 4096

func signingKey(secret string, s Scope) []byte {
	h := sha256.New()
	for _, part := range []string{secret, s.Date, s.Region, s.Service} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	var id [sha256.Size]byte
	h.Sum(id[:0])

	keyCache.Lock()
	k, ok := keyCache.m[id]
	keyCache.Unlock()
	if ok {
		return k
	}
	k = SigningKey(secret, s)
	keyCache.Lock()
	if keyCache.m == nil || len(keyCache.m) >= keyCacheMax {
		// Keys change daily; dropping everything is simpler than LRU
		// and costs only re-derivation.
		keyCache.m = make(map[[sha256.Size]byte][]byte)
	}
	keyCache.m[id] = k
	keyCache.Unlock()
	return k
}
