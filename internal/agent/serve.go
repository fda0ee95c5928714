package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Default addresses, those of the EKS Pod Identity Agent.
var DefaultBinds = []string{"169.254.170.23:80", "[fd00:ec2::23]:80"}

const (
	DefaultHealthAddr  = "localhost:2703"
	DefaultMetricsAddr = "localhost:2705"
)

// Listeners are what Serve serves on. Health and Metrics may be nil.
type Listeners struct {
	Credentials []net.Listener
	Health      net.Listener
	Metrics     net.Listener
}

// Close closes every listener.
func (l *Listeners) Close() {
	for _, ln := range append(append([]net.Listener(nil), l.Credentials...), l.Health, l.Metrics) {
		if ln != nil {
			_ = ln.Close()
		}
	}
}

// Listen opens the credentials listeners on binds and the health and metrics
// listeners ("" skips one).
func Listen(binds []string, healthAddr, metricsAddr string) (*Listeners, error) {
	l := &Listeners{}
	for _, b := range binds {
		ln, err := net.Listen("tcp", b)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("agent: listen on %s (has `podid agent setup-network` put the address on this node?): %w", b, err)
		}
		l.Credentials = append(l.Credentials, ln)
	}
	var err error
	if healthAddr != "" {
		if l.Health, err = net.Listen("tcp", healthAddr); err != nil {
			l.Close()
			return nil, fmt.Errorf("agent: health listener: %w", err)
		}
	}
	if metricsAddr != "" {
		if l.Metrics, err = net.Listen("tcp", metricsAddr); err != nil {
			l.Close()
			return nil, fmt.Errorf("agent: metrics listener: %w", err)
		}
	}
	return l, nil
}

// Serve answers on l until ctx ends, then shuts the servers down and closes
// the agent. probe, if not nil, is called until it succeeds to learn that
// the server answers (for /readyz); any upstream answer counts too.
func (a *Agent) Serve(ctx context.Context, l *Listeners, probe func(context.Context) error) error {
	if len(l.Credentials) == 0 {
		return errors.New("agent: no credentials listener")
	}
	defer a.Close()
	errLog := slog.NewLogLogger(a.log.Handler(), slog.LevelWarn)
	addrs := make([]net.Addr, len(l.Credentials))
	for i, ln := range l.Credentials {
		addrs[i] = ln.Addr()
	}
	a.AllowAddrs(addrs...)

	creds := &http.Server{
		Handler:           a,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		// A miss may wait for a whole fetch.
		WriteTimeout:   a.cfg.FetchTimeout + 5*time.Second,
		IdleTimeout:    90 * time.Second,
		MaxHeaderBytes: 32 << 10,
		ErrorLog:       errLog,
	}
	servers := []*http.Server{creds}
	errc := make(chan error, len(l.Credentials)+2)
	serve := func(srv *http.Server, ln net.Listener) {
		a.log.Info("Starting server...", "bind-addr", ln.Addr().String())
		go func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("agent: serve %s: %w", ln.Addr(), err)
			}
		}()
	}
	if l.Health != nil {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
		mux.HandleFunc("GET /readyz", a.readyz)
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: errLog}
		servers = append(servers, srv)
		serve(srv, l.Health)
	}
	if l.Metrics != nil {
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", a.m.Handler())
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: errLog}
		servers = append(servers, srv)
		serve(srv, l.Metrics)
	}
	for _, ln := range l.Credentials {
		serve(creds, ln)
	}
	close(a.ready)
	if probe != nil {
		go a.probeLoop(ctx, probe)
	}

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, srv := range servers {
		_ = srv.Shutdown(shutdownCtx)
	}
	return err
}

// Ready reports whether the listeners are up and the server has answered.
func (a *Agent) Ready() error {
	select {
	case <-a.ready:
	default:
		return errors.New("listeners not up")
	}
	select {
	case <-a.answered:
	default:
		return errors.New("the podid server has not answered yet")
	}
	return nil
}

func (a *Agent) readyz(w http.ResponseWriter, _ *http.Request) {
	if err := a.Ready(); err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// probeLoop calls probe with backoff until it succeeds or the server has
// answered a credentials call. Readiness does not flap afterwards: the agent
// keeps serving from its cache when the server goes away.
func (a *Agent) probeLoop(ctx context.Context, probe func(context.Context) error) {
	for n := 1; ; n++ {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := probe(pctx)
		cancel()
		if err == nil {
			a.markAnswered()
			a.log.Info("podid server answered; ready")
			return
		}
		a.log.Debug("podid server probe failed", "err", err)
		t := time.NewTimer(backoff(500*time.Millisecond, 30*time.Second, n))
		select {
		case <-t.C:
		case <-a.answered:
			t.Stop()
			return
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
}
