//go:build linux

package sdk

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/podid/podid/internal/agent"
	"github.com/podid/podid/internal/netnstest"
)

// newNetns creates a network namespace for the test and deletes it after.
func newNetns(t *testing.T) *netnstest.NS {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: creating network namespaces and assigning 169.254.170.23 needs root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: the ip command (iproute2) is needed to create network namespaces")
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return netnstest.New(t, "podid-test-"+hex.EncodeToString(b))
}

func addrsOf(t *testing.T, ns netns.NsHandle, link string) []string {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(link)
	if err != nil {
		t.Fatalf("link %s: %v", link, err)
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		out = append(out, a.IPNet.String())
	}
	return out
}

// TestSetupNetworkCommand runs `podid agent setup-network` in a fresh
// namespace twice: the dummy link type is missing from this kernel, so the
// first run must fall back (to a port-less bridge) and say so; the second
// changes nothing.
func TestSetupNetworkCommand(t *testing.T) {
	n := newNetns(t)
	podid := build(t, "github.com/podid/podid/cmd/podid")
	run := func() string {
		out, err := exec.Command("ip", "netns", "exec", n.Name, podid, "agent", "setup-network").CombinedOutput()
		if err != nil {
			t.Fatalf("setup-network: %v\n%s", err, out)
		}
		return string(out)
	}
	first := run()
	t.Logf("first run:\n%s", first)
	switch {
	case strings.Contains(first, "created dummy link pod-id-link0"):
		t.Log("this kernel has the dummy driver")
	case strings.Contains(first, "created bridge link pod-id-link0"):
		if !strings.Contains(first, "dummy link unavailable") {
			t.Errorf("fallback not explained:\n%s", first)
		}
	default:
		t.Fatalf("unexpected output:\n%s", first)
	}
	second := run()
	if !strings.Contains(second, "using existing") || !strings.Contains(second, "pod-id-link0") {
		t.Fatalf("second run:\n%s", second)
	}
	got := strings.Join(addrsOf(t, n.Handle, agent.DefaultLinkName), " ")
	for _, want := range []string{"169.254.170.23/32", "fd00:ec2::23/128"} {
		if strings.Count(got, want) != 1 {
			t.Errorf("addresses on %s: %s; want %s once", agent.DefaultLinkName, got, want)
		}
	}
}

// TestSetupNetworkLoopbackFallback: when neither dummy nor the chosen
// fallbacks work, the addresses go on lo.
func TestSetupNetworkLoopbackFallback(t *testing.T) {
	n := newNetns(t)
	h, err := netlink.NewHandleAt(n.Handle)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	res, err := agent.SetupNetwork(h, agent.NetworkConfig{Kinds: []string{agent.LinkDummy, agent.LinkLoopback}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Kind == agent.LinkDummy {
		t.Skip("this kernel has the dummy driver; the lo fallback is not reached")
	}
	if res.Kind != agent.LinkLoopback || res.Link != "lo" || res.Created {
		t.Fatalf("result: %+v", res)
	}
	got := strings.Join(addrsOf(t, n.Handle, "lo"), " ")
	if !strings.Contains(got, "169.254.170.23/32") || !strings.Contains(got, "fd00:ec2::23/128") {
		t.Fatalf("lo addresses: %s", got)
	}
	// And the agent can serve there.
	if err := n.Do(func() error {
		for _, b := range agent.DefaultBinds {
			ln, err := net.Listen("tcp", b)
			if err != nil {
				return err
			}
			ln.Close()
		}
		return nil
	}); err != nil {
		t.Fatalf("bind on lo fallback: %v", err)
	}
}

// TestSetupNetworkNeedsNetAdmin: without CAP_NET_ADMIN the command says
// what it needs. As root, it runs the podid binary as nobody (setpriv) in a
// fresh namespace.
func TestSetupNetworkNeedsNetAdmin(t *testing.T) {
	var out []byte
	var err error
	if os.Geteuid() != 0 {
		_, err = agent.SetupNetwork(nil, agent.NetworkConfig{Link: "podid-test0"})
		if err != nil {
			out = []byte(err.Error())
		}
	} else {
		if _, lerr := exec.LookPath("setpriv"); lerr != nil {
			t.Skip("skipping: running as root and setpriv (util-linux) is missing to drop privileges")
		}
		name := newNetns(t).Name
		podid := build(t, "github.com/podid/podid/cmd/podid")
		out, err = exec.Command("ip", "netns", "exec", name, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
			podid, "agent", "setup-network").CombinedOutput()
	}
	if err == nil || !strings.Contains(string(out), "CAP_NET_ADMIN") {
		t.Fatalf("got %v: %s", err, out)
	}
	t.Logf("unprivileged: %s", bytes.TrimSpace(out))
}

// TestLinkLocalEndToEnd: in a namespace the test creates, setup-network
// assigns 169.254.170.23 and fd00:ec2::23, the agent binds its default
// addresses there, and SDKs run inside the namespace with the default URI,
// unchanged; the agent gets the credentials from the real server's
// AssumeRoleForPodIdentity and the SDKs call GetCallerIdentity on the podid
// server (which also listens inside the namespace).
func TestLinkLocalEndToEnd(t *testing.T) {
	n := newNetns(t)
	name := n.Name
	h, err := netlink.NewHandleAt(n.Handle)
	if err != nil {
		t.Fatal(err)
	}
	res, err := agent.SetupNetwork(h, agent.NetworkConfig{})
	h.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("setup-network: %s link %s (%s)", res.Kind, res.Link, strings.Join(res.Notes, "; "))

	pc := startPodidCluster(t)
	up := &countingUpstream{next: pc.agentUpstream(t, "node-1")}

	// The agent: default binds and default health/metrics addresses, all
	// inside the namespace; it reaches EKS Auth from the host namespace.
	var lns *agent.Listeners
	var stsLn net.Listener
	if err := n.Do(func() error {
		var err error
		if lns, err = agent.Listen(agent.DefaultBinds, agent.DefaultHealthAddr, agent.DefaultMetricsAddr); err != nil {
			return err
		}
		stsLn, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}); err != nil {
		t.Fatalf("listen in the namespace: %v", err)
	}
	a, err := agent.New(agent.Config{Cluster: cluster, Upstream: up, Logger: logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	c, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- a.Serve(c, lns, nil) }()
	// The podid server also answers inside the namespace, for STS.
	go func() { done <- pc.Inst.Serve(c, stsLn) }()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
		lns.Close()
	})
	stsURL := "http://" + stsLn.Addr().String()
	tokenFile := writeToken(t, pc.podToken(t, "pod-ns", "node-1"))

	check := func(sdk string, id identity) {
		t.Helper()
		checkIdentity(t, sdk, id, "pod-ns")
	}
	for _, uri := range []string{"http://169.254.170.23/v1/credentials", "http://[fd00:ec2::23]/v1/credentials"} {
		env := sdkEnv(uri, tokenFile, stsURL)
		check("boto3 "+uri, boto(t, env, true, name))
		check("aws-sdk-go-v2 "+uri, goSDKProcess(t, env, true, name))
		check("javascript-v3 "+uri, jsSDK(t, env, name))
	}
	if n := up.calls.Load(); n != 1 {
		t.Errorf("EKS Auth calls: %d, want 1", n)
	}

	// Health on localhost:2703 inside the namespace.
	out, err := exec.Command("ip", "netns", "exec", name, "python3", "-c",
		`import urllib.request; print(urllib.request.urlopen("http://localhost:2703/healthz").read().decode())`).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "ok") {
		t.Errorf("healthz in the namespace: %v %s", err, out)
	}
}
