package loadgen

import (
	"context"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50}, {90, 90}, {99, 99}, {100, 100}, {0.1, 1}} {
		if got := Percentile(d, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("empty percentile")
	}
}

func TestErrorCode(t *testing.T) {
	for body, want := range map[string]string{
		`{"__type":"InvalidTokenException","message":"x"}`:                                           "InvalidTokenException",
		`<ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code></Error></ErrorResponse>`: "AccessDenied",
		`oops`: "(no code)",
	} {
		if got := ErrorCode([]byte(body)); got != want {
			t.Errorf("ErrorCode(%q) = %q, want %q", body, got, want)
		}
	}
}

func TestProcessCPU(t *testing.T) {
	if _, err := ProcessCPU(os.Getpid()); err != nil {
		t.Fatal(err)
	}
	if _, err := ProcessCPU(0); err == nil {
		t.Fatal("pid 0 accepted")
	}
}

// TestRun drives a loopback handler that fails every fifth request and
// checks the counts add up and the failures are named.
func TestRun(t *testing.T) {
	var n atomic.Int64
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%5 == 0 {
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(`<ErrorResponse><Error><Code>AccessDenied</Code></Error></ErrorResponse>`))
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()

	url := "http://" + ln.Addr().String()
	s := NewSigner(testCreds)
	src := func(int) (*http.Request, bool, error) {
		r, err := s.Query(context.Background(), url, "sts", []byte("Action=GetCallerIdentity&Version=2011-06-15"))
		return r, true, err
	}
	res, err := Run(context.Background(), Config{Workers: 4, Duration: 300 * time.Millisecond, ServerPID: os.Getpid()}, NewClient(4), src)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK == 0 || res.Failed == 0 || res.OK+res.Failed != n.Load() {
		t.Fatalf("ok %d failed %d, server saw %d", res.OK, res.Failed, n.Load())
	}
	if res.Errors["HTTP 403 AccessDenied"] != res.Failed {
		t.Fatalf("errors %v", res.Errors)
	}
	if !(res.P50us > 0 && res.P50us <= res.P99us && res.P99us <= res.MaxUs) {
		t.Fatalf("percentiles %v %v %v", res.P50us, res.P99us, res.MaxUs)
	}
}

// TestRunExhausted stops when the source runs dry.
func TestRunExhausted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	var left atomic.Int64
	left.Store(50)
	src := func(int) (*http.Request, bool, error) {
		if left.Add(-1) < 0 {
			return nil, false, nil
		}
		r, err := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String(), nil)
		return r, true, err
	}
	res, err := Run(context.Background(), Config{Workers: 3, Duration: 5 * time.Second}, NewClient(3), src)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK != 50 || !res.Exhausted || res.Seconds > 4 {
		t.Fatalf("ok %d exhausted %v after %.1fs", res.OK, res.Exhausted, res.Seconds)
	}
}

func TestRunBounds(t *testing.T) {
	for _, c := range []Config{{Workers: 0, Duration: time.Second}, {Workers: 1, Duration: 61 * time.Second}, {Workers: MaxWorkers + 1, Duration: time.Second}} {
		if _, err := Run(context.Background(), c, NewClient(1), nil); err == nil || !strings.Contains(err.Error(), "must be") {
			t.Errorf("%+v accepted: %v", c, err)
		}
	}
}

var testCreds = aws.Credentials{AccessKeyID: "AKIAIOSFODNN7EXAMPLE", SecretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
