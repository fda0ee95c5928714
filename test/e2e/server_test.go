//go:build linux

package e2e

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/podid/podid/internal/server"
)

// podidServer is the podid server, in-process, with the embedded store in
// a data directory that survives restarts. It answers on loopback (the
// admin's aws CLI, the webhook, `podid cluster register`) and, inside the
// control plane's namespace, on planeAddr (the node: agent and SDKs).
type podidServer struct {
	cfg       server.Config
	net       *network
	localAddr string // 127.0.0.1:PORT, fixed across restarts
	logf      *os.File

	srv    *server.Server
	cancel context.CancelFunc
	done   chan error
}

func (s *podidServer) URL() string { return "http://" + s.localAddr }
func (s *podidServer) NodeURL() string {
	return "http://" + net.JoinHostPort(planeAddr, serverNodePort)
}
func (s *podidServer) CredentialsFile() string {
	return filepath.Join(s.cfg.DataDir, "admin-credentials")
}

func startServer(t *testing.T, cfg server.Config, n *network) *podidServer {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "server.log"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s := &podidServer{cfg: cfg, net: n, localAddr: "127.0.0.1:0", logf: f}
	s.start(t)
	t.Cleanup(func() {
		s.stop(t)
		f.Close()
		if t.Failed() {
			b, _ := os.ReadFile(f.Name())
			t.Logf("server log:\n%s", tail(string(b), 40))
		}
	})
	return s
}

// start opens the store and serves on both addresses (the same ones after
// a restart).
func (s *podidServer) start(t *testing.T) {
	t.Helper()
	if s.srv != nil {
		t.Fatal("server already running")
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, s.cfg)
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	local, err := net.Listen("tcp", s.localAddr)
	if err != nil {
		cancel()
		srv.Close()
		t.Fatalf("listen %s: %v", s.localAddr, err)
	}
	s.localAddr = local.Addr().String()
	node, err := listenIn(s.net.plane, net.JoinHostPort(planeAddr, serverNodePort))
	if err != nil {
		cancel()
		local.Close()
		srv.Close()
		t.Fatalf("listen in %s: %v", s.net.plane.Name, err)
	}
	s.srv, s.cancel, s.done = srv, cancel, make(chan error, 2)
	go func() { s.done <- srv.Serve(ctx, local) }()
	go func() { s.done <- srv.Serve(ctx, node) }()
}

// stop drains both listeners and closes the store.
func (s *podidServer) stop(t *testing.T) {
	t.Helper()
	if s.srv == nil {
		return
	}
	s.cancel()
	for range 2 {
		if err := <-s.done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("server: %v", err)
		}
	}
	if err := s.srv.Close(); err != nil {
		t.Errorf("server close: %v", err)
	}
	s.srv = nil
}
