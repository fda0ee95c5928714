// Package servertest runs a real podid server in-process on a loopback port
// for tests that drive it with real AWS clients.
package servertest

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/podid/podid/internal/secretbox"
	"github.com/podid/podid/internal/server"
)

// Instance is a running server.
type Instance struct {
	*server.Server
	URL             string // http://127.0.0.1:PORT
	DataDir         string
	AccessKeyID     string
	SecretAccessKey string
	AuditPath       string

	stopOnce sync.Once
	stop     func()
}

// Stop stops the server as a dying replica would: its listener closes and
// its connections end. It is safe to call more than once; the test's
// cleanup calls it too.
func (i *Instance) Stop() { i.stopOnce.Do(i.stop) }

// Start runs a server until the test ends. mutate may adjust the config.
func Start(t testing.TB, mutate ...func(*server.Config)) *Instance {
	t.Helper()
	return StartAt(t, "127.0.0.1:0", mutate...)
}

// StartAt is Start listening on addr, e.g. a stopped instance's address to
// restart a replica where its clients expect it.
func StartAt(t testing.TB, addr string, mutate ...func(*server.Config)) *Instance {
	t.Helper()
	dir := t.TempDir()
	cfg := server.Config{
		DataDir:   dir,
		AccountID: "111122223333",
		AuditLog:  filepath.Join(dir, "audit.log"),
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	for _, m := range mutate {
		m(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := server.New(ctx, cfg)
	if err != nil {
		cancel()
		t.Fatalf("server.New: %v", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		cancel()
		t.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	inst := &Instance{Server: srv, URL: "http://" + ln.Addr().String(), DataDir: dir, AuditPath: cfg.AuditLog}
	inst.stop = func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("serve: %v", err)
		}
		srv.Close()
	}
	t.Cleanup(inst.Stop)
	inst.AccessKeyID, inst.SecretAccessKey, err = server.ReadAdminCredentials(srv.AdminCredentialsFile())
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// AuditLog returns the audit log's contents so far.
func (i *Instance) AuditLog(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(i.AuditPath)
	if err != nil {
		t.Fatalf("read audit log: %v", err)
	}
	return string(b)
}

// MasterKeyFile writes a random master key to a file of the test's and
// returns its path: replicas of one store must share one.
func MasterKeyFile(t testing.TB) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "master.key")
	key := make([]byte, secretbox.KeySize)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f, key, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}
