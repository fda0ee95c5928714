package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/podid/podid/internal/server"
	"github.com/podid/podid/internal/server/servertest"
)

// The handler benchmarks call the server's http.Handler directly with a
// request signed once before the loop: no network, no client, no signing,
// so `go test -bench Handler` tracks the server's own cost per request.

// discardWriter is the least a ResponseWriter must do.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return len(b), nil
}
func (w *discardWriter) WriteHeader(code int) { w.status = code }

type handlerFixture struct {
	handler http.Handler
	fx      *Fixture
	signer  *Signer
	key     *KeyPair
}

func newHandlerFixture(b *testing.B) *handlerFixture {
	b.Helper()
	is, err := StartIssuer(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(is.Close)
	inst := servertest.Start(b, func(c *server.Config) { c.OIDCCAFile = is.CAFile })
	key, err := NewKeyPair("bench-cluster-1")
	if err != nil {
		b.Fatal(err)
	}
	admin := aws.Credentials{AccessKeyID: inst.AccessKeyID, SecretAccessKey: inst.SecretAccessKey}
	fx, err := SetupPodid(context.Background(), inst.URL, admin, is, key)
	if err != nil {
		b.Fatal(err)
	}
	return &handlerFixture{handler: inst.Server.Handler(), fx: fx, signer: NewSigner(admin), key: key}
}

// serve replays the pre-signed req (body re-read each time) b.N times.
func (f *handlerFixture) serve(b *testing.B, req *http.Request, body []byte) {
	b.Helper()
	ctx := context.Background()
	req.RemoteAddr = "127.0.0.1:40000"
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		r := req.Clone(ctx)
		r.Body = io.NopCloser(bytes.NewReader(body))
		w := &discardWriter{h: http.Header{}}
		f.handler.ServeHTTP(w, r)
		if w.status != http.StatusOK {
			b.Fatalf("status %d", w.status)
		}
	}
}

func BenchmarkHandlerGetCallerIdentity(b *testing.B) {
	f := newHandlerFixture(b)
	body := []byte(url.Values{"Action": {"GetCallerIdentity"}, "Version": {"2011-06-15"}}.Encode())
	req, err := f.signer.Query(context.Background(), f.fx.URL, "sts", body)
	if err != nil {
		b.Fatal(err)
	}
	f.serve(b, req, body)
}

func BenchmarkHandlerAssumeRoleForPodIdentity(b *testing.B) {
	f := newHandlerFixture(b)
	tok, err := f.key.PodToken(0)
	if err != nil {
		b.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"token": tok})
	req, err := f.signer.JSON(context.Background(), f.fx.URL, "/clusters/"+ClusterName+"/assume-role-for-pod-identity", "eks-auth", body)
	if err != nil {
		b.Fatal(err)
	}
	f.serve(b, req, body)
}
