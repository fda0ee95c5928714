package sigv4

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// botocoreScript signs requests with botocore's own SigV4 signers and sends
// them with botocore's HTTP session, printing one line per request.
const botocoreScript = `
import sys
from botocore.auth import SigV4Auth, SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.httpsession import URLLib3Session

base, akid, secret, token = sys.argv[1:5]
creds = Credentials(akid, secret, token)
session = URLLib3Session()

cases = [
    ("sts-form", SigV4Auth, "sts", "POST", "/",
     {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
     b"Action=GetCallerIdentity&Version=2011-06-15"),
    ("eks-auth", SigV4Auth, "eks-auth", "POST", "/clusters/my-cluster/assume-role-for-pod-identity",
     {"Content-Type": "application/json"}, b'{"token":"a.b.c"}'),
    ("eks-list", SigV4Auth, "eks", "GET",
     "/clusters/my%20cluster/pod-identity-associations?namespace=a%20b&maxResults=10&serviceAccount=x~y%2Bz",
     {}, None),
    ("spaces-in-header", SigV4Auth, "eks", "GET", "/clusters", {"X-Custom": "  a   b  ", "X-Tab": "a\t\t b"}, None),
    ("normalised-path", SigV4Auth, "eks", "GET", "/clusters//c1/./x", {}, None),
    ("presigned", SigV4QueryAuth, "sts", "GET", "/?Action=GetCallerIdentity&Version=2011-06-15", {}, None),
]
failed = False
for name, signer, service, method, path, headers, body in cases:
    req = AWSRequest(method=method, url=base + path, headers=headers, data=body)
    if signer is SigV4QueryAuth:
        signer(creds, service, "us-east-1", expires=60).add_auth(req)
    else:
        signer(creds, service, "us-east-1").add_auth(req)
    resp = session.send(req.prepare())
    text = resp.content.decode()
    print(name, resp.status_code, text)
    failed = failed or resp.status_code != 200
sys.exit(1 if failed else 0)
`

func TestBotocore(t *testing.T) {
	if testing.Short() {
		t.Skip("starts python3")
	}
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not found")
	}
	if err := exec.Command(py, "-c", "import botocore.auth, botocore.httpsession").Run(); err != nil {
		t.Skip("botocore not installed")
	}

	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		a, err := Parse(r)
		if err == nil && a.SecurityToken != testToken {
			err = fmt.Errorf("token %q not parsed", a.SecurityToken)
		}
		if err == nil {
			err = a.Verify(r, body, testSecret, time.Now())
		}
		if err != nil {
			t.Logf("%s %s: %v", r.Method, r.RequestURI, err)
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer srv.Close()

	script := filepath.Join(t.TempDir(), "sign.py")
	if err := os.WriteFile(script, []byte(botocoreScript), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(py, script, srv.URL, testAKID, testSecret, testToken).CombinedOutput()
	t.Logf("botocore:\n%s", out)
	if err != nil {
		t.Fatalf("botocore requests failed: %v", err)
	}
	if n := strings.Count(string(out), " 200 ok"); n != 6 {
		t.Errorf("%d requests verified, want 6", n)
	}
}
