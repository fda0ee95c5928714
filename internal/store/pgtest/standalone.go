package pgtest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Server is a private PostgreSQL server on loopback for a program that is
// not a test (the load generator, cmd/podid-bench): the same binaries,
// cached template and loopback-only setup as Start, without testing.TB.
// The caller stops it with Stop (by PID); if the caller dies first, the
// postmaster receives SIGQUIT (immediate shutdown) and a later Start or
// StartServer removes its directory.
type Server struct {
	s        *server
	settings []string
}

// ServerOptions configure StartServer.
type ServerOptions struct {
	// Durable keeps PostgreSQL's own defaults (fsync, synchronous_commit
	// and full_page_writes on), as a production server has them. Without
	// it the server runs like the tests' one: no fsync, asynchronous commit.
	Durable bool
}

// StartServer runs a private PostgreSQL server on 127.0.0.1. Unlike Start
// it returns an error, not a skip, when the binaries are missing.
func StartServer(o ServerOptions) (*Server, error) {
	bin, err := findBinaries()
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	settings := []string{"listen_addresses=127.0.0.1", "max_connections=200", "shared_buffers=32MB"}
	if !o.Durable {
		settings = append(settings, "fsync=off", "synchronous_commit=off", "full_page_writes=off")
	}
	s, err := startServerWith(bin, settings, true)
	if err != nil {
		return nil, fmt.Errorf("pgtest: %w", err)
	}
	return &Server{s: s, settings: settings}, nil
}

// PID is the postmaster's process ID; the server's other processes are its
// children.
func (s *Server) PID() int { return s.s.cmd.Process.Pid }

// DSN is the superuser's DSN for the postgres database.
func (s *Server) DSN() string { return s.s.dsn }

// Settings are the -c options the server was started with.
func (s *Server) Settings() []string { return append([]string(nil), s.settings...) }

// CreateDatabase makes an empty database (with an ICU en-US collation where
// the server has ICU, as Start does) and returns its DSN. The name is
// sanitised and made unique; the database goes with the server.
func (s *Server) CreateDatabase(name string) (string, error) {
	db, err := s.s.admin.createDatabase(name)
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	return withDatabase(s.s.dsn, db), nil
}

// Stop shuts the server down (fast shutdown by PID, SIGKILL of its process
// group after 20 s) and removes its directory.
func (s *Server) Stop() error {
	if s == nil || s.s == nil {
		return nil
	}
	err := s.s.stop()
	s.s = nil
	return err
}

// startServerWith starts a server with the given -c settings from a copy
// of the template. With dieWithParent the postmaster gets SIGQUIT
// (immediate shutdown) when the thread that started it exits: for programs
// that may die without stopping it; a test process has reapStale instead.
func startServerWith(bin binaries, settings []string, dieWithParent bool) (*server, error) {
	o, err := serverOwner()
	if err != nil {
		return nil, err
	}
	tmpl, err := template(bin, o)
	if err != nil {
		return nil, fmt.Errorf("make the template data directory: %w", err)
	}
	reapStale()
	dir, err := os.MkdirTemp("", "podid-pgtest-")
	if err != nil {
		return nil, err
	}
	cleanup := func(err error) (*server, error) {
		os.RemoveAll(dir)
		return nil, err
	}
	// The owner file lets reapStale stop the server if this process dies
	// without stopping it.
	if err := os.WriteFile(filepath.Join(dir, "owner"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		return cleanup(err)
	}
	data := filepath.Join(dir, "data")
	if err := copyTree(tmpl, data); err != nil {
		return cleanup(fmt.Errorf("copy the template data directory: %w", err))
	}
	if err := o.chownTree(dir); err != nil {
		return cleanup(err)
	}
	port, err := freePort()
	if err != nil {
		return cleanup(err)
	}
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		return cleanup(err)
	}
	args := []string{"-D", data, "-k", dir, "-p", strconv.Itoa(port)}
	for _, kv := range settings {
		args = append(args, "-c", kv)
	}
	cmd := o.command(bin.postgres, args...)
	if dieWithParent {
		cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return cleanup(fmt.Errorf("start postgres: %w", err))
	}
	logf.Close()
	s := &server{cmd: cmd, dir: dir, done: make(chan struct{}),
		dsn: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)}
	s.admin = &admin{dsn: s.dsn}
	go func() { s.err = cmd.Wait(); close(s.done) }()
	if err := s.waitReady(60 * time.Second); err != nil {
		return nil, errors.Join(err, s.stop())
	}
	return s, nil
}
