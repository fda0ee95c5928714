package sigv4

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
)

const (
	testAKID   = "ASIAEXAMPLEEXAMPLE01"
	testSecret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	testToken  = "IQoJb3JpZ2luX2VjEXAMPLE-session-token/+="
)

var signTime = time.Date(2024, 5, 9, 1, 2, 3, 0, time.UTC)

func creds(token string) aws.Credentials {
	return aws.Credentials{AccessKeyID: testAKID, SecretAccessKey: testSecret, SessionToken: token}
}

func hashHex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// wire serialises a client request and reads it back the way an
// http.Server would, so tests see RequestURI, Host and Content-Length as a
// real server does.
func wire(t testing.TB, r *http.Request) string {
	t.Helper()
	var buf bytes.Buffer
	if err := r.Write(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

func read(t testing.TB, raw string) (*http.Request, []byte) {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("ReadRequest: %v\n%s", err, raw)
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return r, body
}

func check(r *http.Request, body []byte, secret string, now time.Time) error {
	a, err := Parse(r)
	if err != nil {
		return err
	}
	return a.Verify(r, body, secret, now)
}

func code(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	if err == nil {
		return ""
	}
	return "non-sigv4 error: " + err.Error()
}

type sdkCase struct {
	name, method, url, service string
	body                       string
	header                     map[string]string
	token                      string
}

var sdkCases = []sdkCase{
	{
		name: "sts-form", method: "POST", url: "http://127.0.0.1:8080/", service: "sts",
		body:   "Action=GetCallerIdentity&Version=2011-06-15",
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
	},
	{
		name: "iam-form-token", method: "POST", url: "http://iam.local/", service: "iam",
		body:   "Action=CreateRole&RoleName=r1&AssumeRolePolicyDocument=%7B%7D&Version=2010-05-08",
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
		token:  testToken,
	},
	{
		name: "eks-auth-json", method: "POST", url: "http://podid.example:4443/clusters/my-cluster/assume-role-for-pod-identity",
		service: "eks-auth", body: `{"token":"eyJhbGciOi.x.y"}`,
		header: map[string]string{"Content-Type": "application/json", "X-Amz-Content-Sha256": hashHex([]byte(`{"token":"eyJhbGciOi.x.y"}`))},
		token:  testToken,
	},
	{
		name: "eks-get-query", method: "GET",
		url:     "http://127.0.0.1:9/clusters/c1/pod-identity-associations?maxResults=10&namespace=a%20b&serviceAccount=x~y%2Bz",
		service: "eks",
	},
	{
		name: "escaped-path", method: "DELETE",
		url:     "http://127.0.0.1:9/clusters/my%20cluster%2Fx%C3%BC/pod-identity-associations/a-0123456789abcdefg",
		service: "eks", header: map[string]string{"X-Custom": "  a   b  "},
	},
	{
		name: "repeated-query", method: "GET", url: "http://127.0.0.1:9/x?b=2&a=2&a=1&c=&d",
		service: "eks",
	},
}

func (c sdkCase) request(t testing.TB) *http.Request {
	r, err := http.NewRequest(c.method, c.url, strings.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.body == "" {
		r.Body, r.ContentLength = http.NoBody, 0
	}
	for k, v := range c.header {
		r.Header.Set(k, v)
	}
	return r
}

// signed returns the wire form of c signed by aws-sdk-go-v2.
func (c sdkCase) signed(t testing.TB) string {
	r := c.request(t)
	err := v4.NewSigner().SignHTTP(context.Background(), creds(c.token), r, hashHex([]byte(c.body)), c.service, "us-east-1", signTime)
	if err != nil {
		t.Fatal(err)
	}
	return wire(t, r)
}

func TestSDKRoundTrip(t *testing.T) {
	for _, c := range sdkCases {
		t.Run(c.name, func(t *testing.T) {
			raw := c.signed(t)
			r, body := read(t, raw)
			a, err := Parse(r)
			if err != nil {
				t.Fatal(err)
			}
			if a.AccessKeyID != testAKID || a.Scope != (Scope{"20240509", "us-east-1", c.service}) ||
				!a.Date.Equal(signTime) || a.SecurityToken != c.token || a.Presigned {
				t.Errorf("Parse = %+v", a)
			}
			if err := a.Verify(r, body, testSecret, signTime.Add(time.Minute)); err != nil {
				t.Fatalf("Verify: %v\n%s", err, raw)
			}
			if err := a.CheckScope(c.service, "us-east-1"); err != nil {
				t.Error(err)
			}
			if code(a.CheckScope("other")) != CodeSignatureDoesNotMatch || code(a.CheckScope(c.service, "eu-west-1")) != CodeSignatureDoesNotMatch {
				t.Error("CheckScope accepted a wrong scope")
			}
		})
	}
}

// TestClientSideRequest verifies a request as built by the client, without
// going through the wire: Host and Content-Length live outside the header map.
func TestClientSideRequest(t *testing.T) {
	for _, c := range sdkCases {
		r := c.request(t)
		if err := v4.NewSigner().SignHTTP(context.Background(), creds(c.token), r, hashHex([]byte(c.body)), c.service, "us-east-1", signTime); err != nil {
			t.Fatal(err)
		}
		if err := check(r, []byte(c.body), testSecret, signTime); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
}

func TestAuthorizationSpacing(t *testing.T) {
	raw := sdkCases[0].signed(t)
	r, body := read(t, raw)
	h := r.Header.Get("Authorization")
	for _, v := range []string{
		strings.ReplaceAll(h, ", ", ","),
		strings.ReplaceAll(h, ", ", " ,  "),
		"  " + strings.Replace(h, " ", "   ", 1) + " ",
	} {
		r.Header.Set("Authorization", v)
		if err := check(r, body, testSecret, signTime); err != nil {
			t.Errorf("%q: %v", v, err)
		}
	}
}

func TestTampering(t *testing.T) {
	stsCase := sdkCases[1]  // with session token
	getCase := sdkCases[3]  // query string
	pathCase := sdkCases[4] // escaped path
	jsonCase := sdkCases[2] // x-amz-content-sha256
	tests := []struct {
		name     string
		c        sdkCase
		old, new string // applied to the wire form
		body     string // replaces the body if set
		secret   string
		want     string
	}{
		{name: "body", c: stsCase, body: "Action=CreateRole&RoleName=r2&AssumeRolePolicyDocument=%7B%7D&Version=2010-05-08"},
		{name: "body-with-content-hash", c: jsonCase, body: `{"token":"other.x.y"}`},
		{name: "content-hash-header", c: jsonCase, old: "X-Amz-Content-Sha256: ", new: "X-Amz-Content-Sha256: 0"},
		{name: "signed-header", c: stsCase, old: "charset=utf-8", new: "charset=latin1"},
		{name: "host", c: stsCase, old: "Host: iam.local", new: "Host: iam.local:80"},
		{name: "path", c: pathCase, old: "my%20cluster", new: "my%20clustes"},
		{name: "path-encoding", c: pathCase, old: "%2Fx", new: "/x"},
		{name: "query-value", c: getCase, old: "maxResults=10", new: "maxResults=11"},
		{name: "query-added", c: getCase, old: "maxResults=10", new: "maxResults=10&x=1"},
		{name: "date", c: stsCase, old: "20240509T010203Z", new: "20240509T010204Z"},
		{name: "token", c: stsCase, old: "EXAMPLE-session", new: "EXAMPLE-sessioN"},
		{name: "method", c: stsCase, old: "POST /", new: "PUT /"},
		{name: "region-scope", c: stsCase, old: "/us-east-1/", new: "/us-east-2/"},
		{name: "service-scope", c: stsCase, old: "/iam/aws4", new: "/sts/aws4"},
		{name: "signature", c: stsCase, old: "Signature=", new: "Signature=0"},
		{name: "signed-header-list", c: stsCase, old: "SignedHeaders=content-length;", new: "SignedHeaders="},
		{name: "secret", c: stsCase, secret: testSecret + "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw := tt.c.signed(t)
			if tt.old != "" {
				if !strings.Contains(raw, tt.old) {
					t.Fatalf("%q not in\n%s", tt.old, raw)
				}
				raw = strings.Replace(raw, tt.old, tt.new, 1)
			}
			r, body := read(t, raw)
			if tt.body != "" {
				body = []byte(tt.body)
			}
			secret := testSecret
			if tt.secret != "" {
				secret = tt.secret
			}
			err := check(r, body, secret, signTime)
			want := tt.want
			if want == "" {
				want = CodeSignatureDoesNotMatch
			}
			if code(err) != want {
				t.Fatalf("got %v, want %s", err, want)
			}
			assertClean(t, err, r, body, secret)
		})
	}
}

// assertClean checks that err's message leaks neither the secret, the
// security token nor any signature the server computed.
func assertClean(t *testing.T, err error, r *http.Request, body []byte, secret string) {
	t.Helper()
	msg := err.Error()
	for _, s := range []string{testSecret, secret, testToken, hex.EncodeToString(SigningKey(testSecret, Scope{"20240509", "us-east-1", "sts"}))} {
		if strings.Contains(msg, s) {
			t.Errorf("message leaks %q: %s", s, msg)
		}
	}
	a, perr := Parse(r)
	if perr != nil {
		return
	}
	ph, herr := a.payloadHash(r, body)
	if herr != nil {
		ph = hashHex(body)
	}
	for _, cr := range a.canonicalRequests(r, ph) {
		for _, s := range []string{secret, testSecret} {
			sig := hex.EncodeToString(a.sign(SigningKey(s, a.Scope), cr))
			if strings.Contains(msg, sig) {
				t.Errorf("message leaks the computed signature: %s", msg)
			}
		}
	}
}

func TestClock(t *testing.T) {
	r, body := read(t, sdkCases[0].signed(t))
	for _, tt := range []struct {
		d    time.Duration
		want string
	}{
		{0, ""},
		{14 * time.Minute, ""},
		{-14 * time.Minute, ""},
		{16 * time.Minute, CodeRequestTimeTooSkewed},
		{-16 * time.Minute, CodeRequestTimeTooSkewed},
		{48 * time.Hour, CodeRequestTimeTooSkewed},
	} {
		err := check(r, body, testSecret, signTime.Add(tt.d))
		if code(err) != tt.want {
			t.Errorf("now=sign%+v: got %v, want %q", tt.d, err, tt.want)
		}
	}
	err := check(r, body, testSecret, signTime.Add(16*time.Minute))
	want := "Signature expired: 20240509T010203Z is now earlier than 20240509T010303Z (20240509T011803Z - 15 min.)"
	if err.(*Error).Message != want {
		t.Errorf("message %q, want %q", err.(*Error).Message, want)
	}
}

func presign(t testing.TB, rawURL string, expires int, token string) string {
	t.Helper()
	r, err := http.NewRequest("GET", rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if expires > 0 {
		q := r.URL.Query()
		q.Set("X-Amz-Expires", strconv.Itoa(expires))
		r.URL.RawQuery = q.Encode()
	}
	u, hdr, err := v4.NewSigner().PresignHTTP(context.Background(), creds(token), r, hashHex(nil), "sts", "us-east-1", signTime)
	if err != nil {
		t.Fatal(err)
	}
	out, err := http.NewRequest("GET", u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		if k != "Host" {
			out.Header[k] = v
		}
	}
	return wire(t, out)
}

func TestPresigned(t *testing.T) {
	const u = "http://127.0.0.1:8080/?Action=GetCallerIdentity&Version=2011-06-15"
	raw := presign(t, u, 60, testToken)
	r, body := read(t, raw)
	a, err := Parse(r)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Presigned || a.Expires != time.Minute || a.SecurityToken != testToken || a.AccessKeyID != testAKID {
		t.Errorf("Parse = %+v", a)
	}
	if err := a.Verify(r, body, testSecret, signTime.Add(30*time.Second)); err != nil {
		t.Fatalf("Verify: %v\n%s", err, raw)
	}
	if err := a.Verify(r, body, testSecret, signTime.Add(61*time.Second)); code(err) != CodeAccessDenied {
		t.Errorf("expired: got %v", err)
	}
	if err := a.Verify(r, body, testSecret, signTime.Add(-16*time.Minute)); code(err) != CodeRequestTimeTooSkewed {
		t.Errorf("future: got %v", err)
	}
	if err := check(r, body, testSecret+"x", signTime); code(err) != CodeSignatureDoesNotMatch {
		t.Errorf("wrong secret: got %v", err)
	} else {
		assertClean(t, err, r, body, testSecret+"x")
	}
	for _, tamper := range [][2]string{
		{"Action=GetCallerIdentity", "Action=GetCallerIdentitz"},
		{"X-Amz-Expires=60", "X-Amz-Expires=61"},
		{"X-Amz-Date=20240509T010203Z", "X-Amz-Date=20240509T010202Z"},
	} {
		r, body := read(t, strings.Replace(raw, tamper[0], tamper[1], 1))
		if err := check(r, body, testSecret, signTime); code(err) != CodeSignatureDoesNotMatch {
			t.Errorf("%v: got %v", tamper, err)
		}
	}

	// Without X-Amz-Expires (as STS ignores it) the 15-minute window applies.
	r, body = read(t, presign(t, u, 0, ""))
	if err := check(r, body, testSecret, signTime.Add(10*time.Minute)); err != nil {
		t.Errorf("no expires: %v", err)
	}
	if err := check(r, body, testSecret, signTime.Add(16*time.Minute)); code(err) != CodeRequestTimeTooSkewed {
		t.Errorf("no expires, late: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	const cred = "Credential=AKID/20240509/us-east-1/sts/aws4_request"
	const sh = "SignedHeaders=host;x-amz-date"
	const sig = "Signature=abcd"
	tests := []struct {
		name, auth, query string
		noDate            bool
		want, msg         string
	}{
		{name: "none", want: CodeMissingAuthenticationToken},
		{name: "unrelated query", query: "Action=GetCallerIdentity", want: CodeMissingAuthenticationToken},
		{name: "algorithm", auth: "AWS4-HMAC-SHA1 " + cred, want: CodeIncompleteSignature, msg: "algorithm"},
		{name: "sigv2", auth: "AWS AKID:sig", want: CodeIncompleteSignature},
		{name: "bearer", auth: "Bearer abc", want: CodeIncompleteSignature},
		{name: "no credential", auth: "AWS4-HMAC-SHA256 " + sh + ", " + sig, want: CodeIncompleteSignature,
			msg: "Authorization header requires 'Credential' parameter. Authorization=AWS4-HMAC-SHA256 SignedHeaders"},
		{name: "no signature", auth: "AWS4-HMAC-SHA256 " + cred + ", " + sh, want: CodeIncompleteSignature, msg: "'Signature'"},
		{name: "no signed headers", auth: "AWS4-HMAC-SHA256 " + cred + ", " + sig, want: CodeIncompleteSignature, msg: "'SignedHeaders'"},
		{name: "only algorithm", auth: "AWS4-HMAC-SHA256", want: CodeIncompleteSignature, msg: "'Credential' parameter. Authorization header requires 'Signature'"},
		{name: "no date", auth: "AWS4-HMAC-SHA256 " + cred + ", " + sh + ", " + sig, noDate: true, want: CodeIncompleteSignature, msg: "'X-Amz-Date' or a 'Date'"},
		{name: "no equal sign", auth: "AWS4-HMAC-SHA256 " + cred + ", " + sh + ", junk", want: CodeIncompleteSignature, msg: "missing equal-sign"},
		{name: "short credential", auth: "AWS4-HMAC-SHA256 Credential=AKID/20240509/us-east-1, " + sh + ", " + sig, want: CodeIncompleteSignature, msg: "5 slash-delimited"},
		{name: "terminator", auth: "AWS4-HMAC-SHA256 Credential=AKID/20240509/us-east-1/sts/aws5_request, " + sh + ", " + sig, want: CodeIncompleteSignature, msg: "terminator"},
		{name: "scope date", auth: "AWS4-HMAC-SHA256 Credential=AKID/2024-05-09/us-east-1/sts/aws4_request, " + sh + ", " + sig, want: CodeIncompleteSignature},
		{name: "empty signed header", auth: "AWS4-HMAC-SHA256 " + cred + ", SignedHeaders=host;;x, " + sig, want: CodeIncompleteSignature},
		{name: "presign no credential", query: "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20240509T010203Z&X-Amz-SignedHeaders=host&X-Amz-Signature=ab", want: CodeIncompleteSignature, msg: "'X-Amz-Credential'"},
		{name: "presign algorithm", query: "X-Amz-Algorithm=AWS4-ECDSA-P256-SHA256&X-Amz-Credential=AKID%2F20240509%2Fus-east-1%2Fsts%2Faws4_request&X-Amz-Date=20240509T010203Z&X-Amz-SignedHeaders=host&X-Amz-Signature=ab", want: CodeIncompleteSignature},
		{name: "presign expires 0", query: presignQuery("0"), want: CodeIncompleteSignature},
		{name: "presign expires week+1", query: presignQuery("604801"), want: CodeIncompleteSignature, msg: "604800"},
		{name: "presign expires nan", query: presignQuery("abc"), want: CodeIncompleteSignature},
		{name: "presign bad date", query: strings.Replace(presignQuery("60"), "20240509T010203Z", "2024-05-09T01:02:03Z", 1), want: CodeIncompleteSignature},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, _ := http.NewRequest("GET", "http://127.0.0.1/?"+tt.query, nil)
			if tt.auth != "" {
				r.Header.Set("Authorization", tt.auth)
			}
			if !tt.noDate {
				r.Header.Set("X-Amz-Date", "20240509T010203Z")
			}
			_, err := Parse(r)
			if code(err) != tt.want {
				t.Fatalf("got %v, want %s", err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("message %q lacks %q", err, tt.msg)
			}
		})
	}
}

func presignQuery(expires string) string {
	return "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKID%2F20240509%2Fus-east-1%2Fsts%2Faws4_request" +
		"&X-Amz-Date=20240509T010203Z&X-Amz-SignedHeaders=host&X-Amz-Signature=ab&X-Amz-Expires=" + expires
}

func TestVerifyChecks(t *testing.T) {
	// Scope date differs from the signing date.
	r, body := read(t, strings.Replace(sdkCases[0].signed(t), "/20240509/", "/20240508/", 1))
	err := check(r, body, testSecret, signTime)
	if code(err) != CodeSignatureDoesNotMatch || !strings.Contains(err.Error(), "'20240508' != '20240509'") {
		t.Errorf("scope date: %v", err)
	}

	// host not signed.
	r, body = read(t, strings.Replace(sdkCases[0].signed(t), ";host;", ";", 1))
	if err := check(r, body, testSecret, signTime); code(err) != CodeIncompleteSignature || !strings.Contains(err.Error(), "'Host'") {
		t.Errorf("host unsigned: %v", err)
	}

	// A declared payload hash that does not match the body.
	raw := sdkCases[2].signed(t)
	r, _ = read(t, raw)
	if err := check(r, []byte("other"), testSecret, signTime); code(err) != CodeSignatureDoesNotMatch || !strings.Contains(err.Error(), "x-amz-content-sha256") {
		t.Errorf("content hash: %v", err)
	}

	// UNSIGNED-PAYLOAD is accepted as signed.
	c := sdkCases[2]
	c.header = map[string]string{"Content-Type": "application/json", "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD"}
	req := c.request(t)
	if err := v4.NewSigner().SignHTTP(context.Background(), creds(""), req, "UNSIGNED-PAYLOAD", "eks-auth", "us-east-1", signTime); err != nil {
		t.Fatal(err)
	}
	r, body = read(t, wire(t, req))
	if err := check(r, body, testSecret, signTime); err != nil {
		t.Errorf("unsigned payload: %v", err)
	}

	// The Date header stands in for X-Amz-Date.
	req = sdkCases[0].request(t)
	req.Header.Set("Date", signTime.Format(http.TimeFormat))
	if err := v4.NewSigner().SignHTTP(context.Background(), creds(""), req, hashHex([]byte(sdkCases[0].body)), "sts", "us-east-1", signTime); err != nil {
		t.Fatal(err)
	}
	// The SDK always signs X-Amz-Date too, so only Parse is checked here.
	req.Header.Del("X-Amz-Date")
	a, err := Parse(req)
	if err != nil || !a.Date.Equal(signTime) || a.amzDate != "20240509T010203Z" {
		t.Errorf("Date header: %+v, %v", a, err)
	}
}

func TestPathNormalisation(t *testing.T) {
	for in, want := range map[string]string{
		"":          "/",
		"/":         "/",
		"/a//b/":    "/a/b/",
		"/a/./b/..": "/a",
		"/../a":     "/a",
		"//":        "/",
	} {
		if got := removeDotSegments(in); got != want {
			t.Errorf("removeDotSegments(%q) = %q, want %q", in, got, want)
		}
	}
	if got := escapePath("/a%20b/c~d:e"); got != "/a%2520b/c~d%3Ae" {
		t.Errorf("escapePath = %q", got)
	}
}

func TestSigningKeyCache(t *testing.T) {
	s := Scope{"20240509", "us-east-1", "sts"}
	filled := signingKey(testSecret, s) // computes and caches
	cached := signingKey(testSecret, s) // served from the cache
	if !bytes.Equal(filled, SigningKey(testSecret, s)) || !bytes.Equal(cached, filled) {
		t.Fatal("cached key differs")
	}
	if bytes.Equal(signingKey(testSecret+"x", s), SigningKey(testSecret, s)) {
		t.Fatal("cache mixed up secrets")
	}
}

func BenchmarkVerify(b *testing.B) {
	r, body := read(b, sdkCases[2].signed(b))
	for b.Loop() {
		if err := check(r, body, testSecret, signTime); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNormalisedPathDecodedQuery covers the JavaScript SDK's mix: a path with
// dot segments removed and a decoded, re-encoded query.
func TestNormalisedPathDecodedQuery(t *testing.T) {
	c := sdkCase{method: "GET", url: "http://127.0.0.1:9/clusters/c1/x?q=a%20b&p=%7E", service: "eks"}
	raw := c.signed(t)
	if !strings.HasPrefix(raw, "GET /clusters/c1/x?p=~&q=a%20b ") {
		t.Fatalf("unexpected request line:\n%s", raw)
	}
	raw = strings.Replace(raw, "GET /clusters/c1/x?p=~&q=a%20b", "GET /clusters//c1/./x?q=a%20b&p=%7E", 1)
	r, body := read(t, raw)
	if err := check(r, body, testSecret, signTime); err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
}
