package loadgen

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/podid/podid/internal/server"
)

// Server kinds a child process can run.
const (
	KindPodid = "podid"
	KindNoop  = "noop"
)

// ChildCommand is the hidden subcommand that makes podid-bench a server
// child (see ServeChild).
const ChildCommand = "serve-child"

// BenchAccount is the account the podid server is bootstrapped with.
const BenchAccount = "111122223333"

// Proc is a server process this run started; it is stopped by its PID.
type Proc struct {
	Name     string
	PID      int
	URL      string // http://127.0.0.1:PORT
	PprofURL string // "" when the process exposes no profile
	cmd      *exec.Cmd
	log      *os.File
}

// freePort picks a loopback port for a child. Another process could take
// it before the child binds; the readiness check then fails loudly.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func startProc(name, logPath string, argv []string) (*Proc, error) {
	lf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// The child dies with us if the bench is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	return &Proc{Name: name, PID: cmd.Process.Pid, cmd: cmd, log: lf}, nil
}

// StartSelfChild re-executes this binary as a server child of kind (podid
// or noop) with a CPU-profile endpoint on a second loopback port.
func StartSelfChild(kind, dir string, extra ...string) (*Proc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	paddr, err := freePort()
	if err != nil {
		return nil, err
	}
	argv := append([]string{exe, ChildCommand, "-kind", kind, "-listen", addr, "-pprof", paddr}, extra...)
	p, err := startProc(kind, filepath.Join(dir, kind+".log"), argv)
	if err != nil {
		return nil, err
	}
	p.URL, p.PprofURL = "http://"+addr, "http://"+paddr
	return p, nil
}

// StartPodidBinary runs a built `podid server` instead (no profile endpoint).
func StartPodidBinary(bin, dataDir, caFile, logDir string) (*Proc, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	argv := []string{bin, "server", "--listen", addr, "--data-dir", dataDir, "--account-id", BenchAccount, "--oidc-ca-file", caFile}
	p, err := startProc("podid", filepath.Join(logDir, "podid-binary.log"), argv)
	if err != nil {
		return nil, err
	}
	p.URL = "http://" + addr
	return p, nil
}

// StartMoto runs moto_server (the command, e.g. "moto_server") on a free port.
func StartMoto(command, logDir string) (*Proc, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	host, port, _ := net.SplitHostPort(addr)
	p, err := startProc("moto", filepath.Join(logDir, "moto.log"), []string{command, "-H", host, "-p", port})
	if err != nil {
		return nil, err
	}
	p.URL = "http://" + addr
	return p, nil
}

// WaitReady polls path until it answers below 500 or timeout passes.
func (p *Proc) WaitReady(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: time.Second}
	for time.Now().Before(deadline) {
		if p.cmd.ProcessState != nil {
			break
		}
		resp, err := c.Get(p.URL + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode < 500 {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s (pid %d) not ready at %s%s after %s; see %s", p.Name, p.PID, p.URL, path, timeout, p.log.Name())
}

// Stop sends SIGTERM to the process (by its PID, never by name), waits up
// to ten seconds, then SIGKILLs it.
func (p *Proc) Stop() error {
	if p == nil || p.cmd == nil {
		return nil
	}
	defer p.log.Close()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		return ignoreSignalExit(err)
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		return ignoreSignalExit(<-done)
	}
}

func ignoreSignalExit(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return nil // killed by our signal
	}
	return err
}

// Profile fetches a CPU profile of seconds from the child into path. It
// blocks for the profile's length; run it beside the timed phase.
func (p *Proc) Profile(ctx context.Context, seconds int, path string) error {
	if p.PprofURL == "" {
		return errors.New("no profile endpoint")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.PprofURL+"/debug/pprof/profile?seconds="+strconv.Itoa(seconds), nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Timeout: time.Duration(seconds+30) * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 500))
		return fmt.Errorf("profile: %s: %s", resp.Status, b)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ServeChild is the child side of StartSelfChild: it serves the podid
// identity server (exactly as `podid server` builds it: server.New, default
// audit log in the data dir, info logging) or a do-nothing handler, plus
// net/http/pprof's CPU profile on a separate port, until SIGTERM.
func ServeChild(args []string) error {
	fs := flag.NewFlagSet(ChildCommand, flag.ContinueOnError)
	kind := fs.String("kind", KindNoop, "podid or noop")
	listen := fs.String("listen", "127.0.0.1:0", "address")
	pprofAddr := fs.String("pprof", "", "address of the profile endpoint")
	dataDir := fs.String("data-dir", "", "podid data dir")
	caFile := fs.String("oidc-ca-file", "", "CA of the OIDC issuer")
	storeDSN := fs.String("store", "", `store DSN, as podid server --store ("": SQLite in the data dir)`)
	masterKey := fs.String("master-key-file", "", `master key, as podid server --master-key-file ("": DATA-DIR/master.key)`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	if *pprofAddr != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		go func() { _ = http.ListenAndServe(*pprofAddr, mux) }()
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	switch *kind {
	case KindPodid:
		srv, err := server.New(ctx, server.Config{
			Listen: *listen, DataDir: *dataDir, Store: *storeDSN, MasterKeyFile: *masterKey, AccountID: BenchAccount, Region: Region,
			OIDCCAFile: *caFile, AgentServiceAccounts: []string{"kube-system/podid-agent"}, Logger: log,
		})
		if err != nil {
			return err
		}
		defer srv.Close()
		err = srv.ListenAndServe(ctx)
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	case KindNoop:
		return serveNoop(ctx, *listen)
	}
	return fmt.Errorf("unknown kind %q", *kind)
}

// serveNoop is the baseline: net/http with the same server timeouts as
// podid's, and a handler that does nothing but answer 200.
func serveNoop(ctx context.Context, addr string) error {
	hs := &http.Server{
		Addr: addr,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return hs.Shutdown(sctx)
}
