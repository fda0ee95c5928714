//go:build linux

package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/podid/podid/internal/netnstest"
)

// Addresses of the link between the control plane's namespace and the
// node's: link-local, on a veth pair the test creates between two network
// namespaces it creates. Nothing is added to the host's own namespace.
const (
	planeAddr = "169.254.200.1"
	nodeAddr  = "169.254.200.2"
	linkCIDR  = "/30"
	// serverNodePort is where the server answers the node (EKS Auth for
	// the agent, STS for the pods' SDKs).
	serverNodePort = "8000"
)

// ns is a network namespace the test created.
type ns = netnstest.NS

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// newNS creates a network namespace with lo up; it goes at cleanup (with
// the veth end inside it).
func newNS(t *testing.T, name string) *ns {
	t.Helper()
	n := netnstest.New(t, name)
	n.IP(t, "link", "set", "lo", "up")
	return n
}

// network is the control plane's namespace and the node's, linked.
type network struct {
	plane, node *ns
}

// newNetwork creates both namespaces and a veth pair between them. Names
// carry a random suffix so runs never collide.
func newNetwork(t *testing.T) *network {
	t.Helper()
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	n := &network{plane: newNS(t, "podid-e2e-"+id+"-plane"), node: newNS(t, "podid-e2e-"+id+"-node1")}
	a, z := "pe2e"+id+"p", "pe2e"+id+"n" // ≤ 15 characters
	ipCmd(t, "link", "add", a, "netns", n.plane.Name, "type", "veth", "peer", "name", z, "netns", n.node.Name)
	n.plane.IP(t, "addr", "add", planeAddr+linkCIDR, "dev", a)
	n.node.IP(t, "addr", "add", nodeAddr+linkCIDR, "dev", z)
	n.plane.IP(t, "link", "set", a, "up")
	n.node.IP(t, "link", "set", z, "up")
	return n
}

// listenIn listens on addr inside n.
func listenIn(n *ns, addr string) (net.Listener, error) {
	var ln net.Listener
	err := n.Do(func() (err error) {
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// httpClientIn is an HTTP client whose connections are made inside n: the
// test's own view from the node (health checks, polling the agent).
func httpClientIn(n *ns) *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
				err = n.Do(func() (err error) {
					var d net.Dialer
					c, err = d.DialContext(ctx, network, addr)
					return err
				})
				return c, err
			},
		},
	}
}

// process is a child process started by the test, logging to a file,
// stopped by its PID.
type process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startProcess(t *testing.T, name string, env []string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	// Killed by the kernel if the test binary dies before its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("%s log (last lines):\n%s", name, p.tail(40))
		}
	})
	return p
}

// stop sends SIGTERM to the process's PID, then SIGKILL after 5 s.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) tail(n int) string {
	b, _ := os.ReadFile(p.log)
	lines := bytes.Split(bytes.TrimRight(b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}

func (p *process) logText() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// waitFor polls cond every interval until it holds or timeout passes.
func waitFor(t *testing.T, what string, timeout, interval time.Duration, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s (last: %v)", timeout, what, last)
		}
		time.Sleep(interval)
	}
}

func listenLocal() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }
