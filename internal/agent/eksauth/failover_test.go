package eksauth

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// upstream is an httptest server whose behaviour the test switches.
type upstream struct {
	*httptest.Server
	mode  atomic.Value // "ok", "500", "403", "429", "hang"
	calls atomic.Int32
}

func newUpstream(t *testing.T, mode string) *upstream {
	u := &upstream{}
	u.mode.Store(mode)
	release := make(chan struct{})
	var once sync.Once
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.calls.Add(1)
		switch u.mode.Load().(string) {
		case "ok":
			_, _ = io.WriteString(w, okBody)
		case "500":
			w.WriteHeader(http.StatusInternalServerError)
		case "429":
			w.WriteHeader(http.StatusTooManyRequests)
		case "403":
			w.Header().Set("X-Amzn-ErrorType", "AccessDeniedException")
			w.WriteHeader(http.StatusBadRequest)
		case "hang":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(func() { once.Do(func() { close(release) }); u.Close() })
	return u
}

// deadURL is a loopback port nothing listens on.
func deadURL(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}

func TestFailoverSpreadsAndHoldsDown(t *testing.T) {
	a, b := newUpstream(t, "ok"), newUpstream(t, "ok")
	now := time.Unix(1000, 0)
	var clock sync.Mutex
	f := NewFailover(Client{}, a.URL, b.URL)
	f.next.Store(0)
	f.Now = func() time.Time { clock.Lock(); defer clock.Unlock(); return now }
	advance := func(d time.Duration) { clock.Lock(); now = now.Add(d); clock.Unlock() }
	call := func() error {
		_, err := f.AssumeRoleForPodIdentity(context.Background(), "c1", "tok")
		return err
	}
	calls := func() [2]int32 { return [2]int32{a.calls.Load(), b.calls.Load()} }

	// Round robin over healthy servers.
	for range 4 {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	if got := calls(); got != [2]int32{2, 2} {
		t.Fatalf("calls = %v, want 2 each", got)
	}
	// a fails with a 5xx on its turn: the same call is answered by b, and
	// only b is used while a is held down.
	a.mode.Store("500")
	if err := call(); err != nil {
		t.Fatalf("a down: %v", err)
	}
	if got := f.Healthy(); !reflect.DeepEqual(got, []bool{false, true}) {
		t.Errorf("healthy = %v, want [false true]", got)
	}
	a.mode.Store("ok")
	for range 3 {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	if got := calls(); got != [2]int32{3, 6} {
		t.Errorf("calls = %v, want [3 6] (b alone while a is held down)", got)
	}
	// a's hold-down has run out: it takes its turn again.
	advance(DefaultHoldDown + time.Second)
	for range 2 {
		if err := call(); err != nil {
			t.Fatal(err)
		}
	}
	if got := calls(); got != [2]int32{4, 7} {
		t.Fatalf("a back: calls = %v, want [4 7]", got)
	}
	// Both down: the error is temporary, so the agent retries.
	a.mode.Store("500")
	b.mode.Store("500")
	err := call()
	var apiErr *Error
	if !errors.As(err, &apiErr) || !apiErr.Temporary() {
		t.Fatalf("both down: %v, want a temporary *Error", err)
	}
	// Held-down servers are still tried when nothing else is left.
	a.mode.Store("ok")
	if err := call(); err != nil {
		t.Fatalf("a back while held down: %v", err)
	}
	// Consecutive failures hold a server down longer: a fails twice in a
	// row, so it is held for 2×HoldDown.
	a.mode.Store("500")
	b.mode.Store("ok")
	for range 2 {
		f.next.Store(0) // a's turn
		if err := call(); err != nil {
			t.Fatal(err)
		}
		advance(DefaultHoldDown + time.Second)
	}
	if got := f.Healthy(); !reflect.DeepEqual(got, []bool{false, true}) {
		t.Errorf("one hold-down after the second failure: healthy = %v, want a still held", got)
	}
	advance(DefaultHoldDown)
	if got := f.Healthy(); !reflect.DeepEqual(got, []bool{true, true}) {
		t.Errorf("two hold-downs after the second failure: healthy = %v", got)
	}
}

func TestFailoverConnectionErrorAndTimeout(t *testing.T) {
	hang, ok := newUpstream(t, "hang"), newUpstream(t, "ok")
	f := NewFailover(Client{}, deadURL(t), hang.URL, ok.URL)
	f.next.Store(0)
	f.TryTimeout = 200 * time.Millisecond
	start := time.Now()
	resp, err := f.AssumeRoleForPodIdentity(context.Background(), "c1", "tok")
	if err != nil || resp.Credentials.AccessKeyID != "ASIAEXAMPLE" {
		t.Fatalf("got %v, %v", resp, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v; the hanging server should cost one try timeout", d)
	}
	if got := f.Healthy(); !reflect.DeepEqual(got, []bool{false, false, true}) {
		t.Errorf("healthy = %v", got)
	}
	// The next call goes straight to the healthy one.
	start = time.Now()
	if _, err := f.AssumeRoleForPodIdentity(context.Background(), "c1", "tok"); err != nil || time.Since(start) > 100*time.Millisecond {
		t.Errorf("second call: %v in %v", err, time.Since(start))
	}
}

func TestFailoverFinalAnswerIsNotRetriedElsewhere(t *testing.T) {
	deny, ok := newUpstream(t, "403"), newUpstream(t, "ok")
	f := NewFailover(Client{}, deny.URL, ok.URL)
	f.next.Store(0)
	_, err := f.AssumeRoleForPodIdentity(context.Background(), "c1", "tok")
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Code != "AccessDeniedException" || ok.calls.Load() != 0 {
		t.Fatalf("got %v (other server called %d times), want AccessDeniedException from the first only", err, ok.calls.Load())
	}
	if got := f.Healthy(); !reflect.DeepEqual(got, []bool{true, true}) {
		t.Errorf("healthy = %v", got)
	}

	// Throttling moves on but does not hold the server down.
	thr := newUpstream(t, "429")
	f = NewFailover(Client{}, thr.URL, ok.URL)
	f.next.Store(0)
	if _, err := f.AssumeRoleForPodIdentity(context.Background(), "c1", "tok"); err != nil {
		t.Fatal(err)
	}
	if got := f.Healthy(); !reflect.DeepEqual(got, []bool{true, true}) {
		t.Errorf("after 429: healthy = %v", got)
	}
}

func TestSplitEndpoints(t *testing.T) {
	got := SplitEndpoints("http://a, http://b", "", "http://c,")
	if want := []string{"http://a", "http://b", "http://c"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}
