package eksauth

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/podid/podid/internal/sigv4"
)

const okBody = `{"subject":{"namespace":"default","serviceAccount":"app"},"audience":"pods.eks.amazonaws.com",
"podIdentityAssociation":{"associationArn":"arn:aws:eks:us-east-1:111122223333:podidentityassociation/c1/a-abc","associationId":"a-abc"},
"assumedRoleUser":{"arn":"arn:aws:sts::111122223333:assumed-role/r/s","assumeRoleId":"AROAEXAMPLE:s"},
"credentials":{"sessionToken":"tok","secretAccessKey":"secret","accessKeyId":"ASIAEXAMPLE","expiration":1767225600}}`

func TestAssumeRoleForPodIdentitySigV4(t *testing.T) {
	const secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
	var seen struct {
		sync.Mutex
		path, token, akid string
		err               error
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		auth, err := sigv4.Parse(r)
		if err == nil {
			err = auth.Verify(r, body, secret, time.Now())
		}
		var in struct{ Token string }
		_ = json.Unmarshal(body, &in)
		seen.Lock()
		seen.path, seen.token, seen.err = r.URL.EscapedPath(), in.Token, err
		if auth != nil {
			seen.akid = auth.AccessKeyID
		}
		seen.Unlock()
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		_, _ = io.WriteString(w, okBody)
	}))
	defer srv.Close()

	c := &Client{Endpoint: srv.URL + "/", Auth: &SigV4{
		Credentials: credentials.NewStaticCredentialsProvider("AKIAEXAMPLE", secret, ""),
		Region:      "us-east-1",
	}}
	resp, err := c.AssumeRoleForPodIdentity(context.Background(), "my cluster", "a.b.c")
	if err != nil {
		t.Fatal(err)
	}
	if seen.err != nil {
		t.Fatalf("server-side SigV4 verification: %v", seen.err)
	}
	if seen.path != "/clusters/my%20cluster/assume-role-for-pod-identity" || seen.token != "a.b.c" || seen.akid != "AKIAEXAMPLE" {
		t.Fatalf("request: path %q token %q akid %q", seen.path, seen.token, seen.akid)
	}
	if resp.Credentials.AccessKeyID != "ASIAEXAMPLE" || resp.Subject.ServiceAccount != "app" ||
		resp.AssumedRoleUser.ARN != "arn:aws:sts::111122223333:assumed-role/r/s" ||
		!resp.Credentials.Expiration.Equal(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("response: %+v", resp)
	}
}

func TestExpirationForms(t *testing.T) {
	for in, want := range map[string]time.Time{
		`1767225600`:             time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		`1767225600.5`:           time.Date(2026, 1, 1, 0, 0, 0, 5e8, time.UTC),
		`"2026-01-01T00:00:00Z"`: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	} {
		var ts Timestamp
		if err := json.Unmarshal([]byte(in), &ts); err != nil || !ts.Equal(want) {
			t.Errorf("%s: got %v, %v", in, ts, err)
		}
	}
	for _, in := range []string{`-1`, `"tomorrow"`, `true`, `1e300`} {
		var ts Timestamp
		if err := json.Unmarshal([]byte(in), &ts); err == nil {
			t.Errorf("%s: accepted as %v", in, ts)
		}
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		status    int
		header    string
		body      string
		code      string
		temporary bool
	}{
		{400, "InvalidTokenException", `{"__type":"InvalidTokenException","message":"bad token"}`, "InvalidTokenException", false},
		{400, "", `{"__type":"com.amazonaws.eksauth#AccessDeniedException","message":"no"}`, "AccessDeniedException", false},
		{404, "ResourceNotFoundException:http://internal.amazon.com/", `{"message":"no association"}`, "ResourceNotFoundException", false},
		{429, "ThrottlingException", `{"message":"slow down"}`, "ThrottlingException", true},
		{500, "", `not json`, "InternalServerException", true},
		{503, "ServiceUnavailableException", ``, "ServiceUnavailableException", true},
		{400, "", `{"code":"ExpiredTokenException","Message":"old"}`, "ExpiredTokenException", false},
	}
	for _, tc := range cases {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tc.header != "" {
				w.Header().Set("X-Amzn-ErrorType", tc.header)
			}
			w.WriteHeader(tc.status)
			_, _ = io.WriteString(w, tc.body)
		}))
		_, err := (&Client{Endpoint: srv.URL}).AssumeRoleForPodIdentity(context.Background(), "c", "a.b.c")
		srv.Close()
		var e *Error
		if !errors.As(err, &e) {
			t.Errorf("%d %s: %v is not an *Error", tc.status, tc.code, err)
			continue
		}
		if e.Code != tc.code || e.StatusCode != tc.status || e.Temporary() != tc.temporary || e.Message == "" {
			t.Errorf("%d %s: got %+v (temporary %v)", tc.status, tc.code, e, e.Temporary())
		}
	}
}

func TestIncompleteResponse(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"credentials":{"accessKeyId":"A"}}`)
	}))
	defer srv.Close()
	if _, err := (&Client{Endpoint: srv.URL}).AssumeRoleForPodIdentity(context.Background(), "c", "a.b.c"); err == nil {
		t.Fatal("accepted a response without secret, token and expiration")
	}
}

func TestBearerTokenFileReadEveryCall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "token")
	var got []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
		_, _ = io.WriteString(w, okBody)
	}))
	defer srv.Close()
	c := &Client{Endpoint: srv.URL, Auth: &BearerTokenFile{Path: path}}
	for _, tok := range []string{"first.agent.token\n", "second.agent.token"} {
		if err := os.WriteFile(path, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := c.AssumeRoleForPodIdentity(context.Background(), "c", "a.b.c"); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Join(got, ",") != "Bearer first.agent.token,Bearer second.agent.token" {
		t.Fatalf("Authorization headers: %q", got)
	}
	os.WriteFile(path, nil, 0o600)
	if _, err := c.AssumeRoleForPodIdentity(context.Background(), "c", "a.b.c"); err == nil {
		t.Fatal("empty token file accepted")
	}
}

// TestReloadingCredentialsRotation checks that keys rotated in the shared
// credentials file are picked up without a restart, which the SDK's own
// chain does not do for static keys.
func TestReloadingCredentialsRotation(t *testing.T) {
	dir := t.TempDir()
	credsFile := filepath.Join(dir, "credentials")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", credsFile)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	write := func(id string, mtime time.Time) {
		err := os.WriteFile(credsFile, []byte("[default]\naws_access_key_id = "+id+"\naws_secret_access_key = s3cr3t-"+id+"\n"), 0o600)
		if err != nil {
			t.Fatal(err)
		}
		os.Chtimes(credsFile, mtime, mtime)
	}
	write("AKIAFIRST", time.Now().Add(-time.Hour))

	// The SDK's own chain keeps the first key forever.
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	p := &ReloadingCredentials{}
	for i, want := range []string{"AKIAFIRST", "AKIASECOND"} {
		if i == 1 {
			write("AKIASECOND", time.Now())
		}
		c, err := p.Retrieve(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if c.AccessKeyID != want || c.SecretAccessKey != "s3cr3t-"+want {
			t.Fatalf("after rotation %d: got %s", i, c.AccessKeyID)
		}
	}
	if c, _ := cfg.Credentials.Retrieve(context.Background()); c.AccessKeyID != "AKIAFIRST" {
		t.Logf("note: the SDK chain now reloads files by itself (%s)", c.AccessKeyID)
	}
	var _ aws.CredentialsProvider = p
}
