//go:build linux

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// bins are built or located once in TestMain.
var bins struct {
	dir     string // temp dir holding the built binaries
	podid   string // `go build ./cmd/podid`
	goprobe string // test/sdk/gosdk, the aws-sdk-go-v2 probe
	python  string // the real interpreter (not a pyenv shim, which needs $HOME)
	node    string
	aws     string
	sdkDir  string // test/sdk, holding the boto3 probe
	jsDir   string // test/sdk/js, holding the JS probe and the JS SDK
	err     error  // why the suite cannot run
}

func TestMain(m *testing.M) {
	if os.Geteuid() == 0 {
		dir, err := os.MkdirTemp("", "podid-e2e-bin-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		bins.dir = dir
		bins.err = prepare()
		code := m.Run()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// prepare builds the binaries and finds the SDK runtimes.
func prepare() error {
	_, file, _, _ := runtime.Caller(0)
	here := filepath.Dir(file)
	bins.sdkDir = filepath.Join(here, "..", "sdk")
	bins.jsDir = filepath.Join(bins.sdkDir, "js")
	for _, b := range []struct {
		out *string
		pkg string
	}{
		{&bins.podid, "github.com/podid/podid/cmd/podid"},
		{&bins.goprobe, "github.com/podid/podid/test/sdk/gosdk"},
	} {
		*b.out = filepath.Join(bins.dir, filepath.Base(b.pkg))
		if out, err := exec.Command("go", "build", "-o", *b.out, b.pkg).CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	for _, tool := range []string{"ip", "unshare", "mount", "sh"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is needed (iproute2, util-linux)", tool)
		}
	}
	out, err := exec.Command("python3", "-c", "import sys, boto3; print(sys.executable)").Output()
	if err != nil {
		return fmt.Errorf("python3 with boto3 is needed: %v", err)
	}
	bins.python = strings.TrimSpace(string(out))
	if bins.node, err = exec.LookPath("node"); err != nil {
		return fmt.Errorf("node (Node.js ≥ 18) is needed for the AWS SDK for JavaScript v3")
	}
	if _, err := os.Stat(filepath.Join(bins.jsDir, "node_modules", "@aws-sdk", "client-sts")); err != nil {
		cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
		cmd.Dir = bins.jsDir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("npm ci in %s: %v\n%s", bins.jsDir, err, out)
		}
	}
	if bins.aws, err = exec.LookPath("aws"); err != nil {
		return fmt.Errorf("the aws CLI is needed (pip install awscli)")
	}
	return nil
}

// requireSuite skips when not root and fails when the prerequisites are
// missing: CI runs as root and must not skip silently.
func requireSuite(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping the end-to-end suite: it needs root (network namespaces, veth pairs, 169.254.170.23, bind mounts); run it with sudo, see docs/E2E.md")
	}
	if bins.err != nil {
		t.Fatalf("end-to-end prerequisites: %v", bins.err)
	}
}
