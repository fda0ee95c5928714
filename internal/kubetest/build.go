package kubetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Versions of the binaries the helper builds. The etcd version is the one
// k8s.io/kubernetes itself requires, so the pair is known to work together.
const (
	KubeVersion = "v1.36.3"
	EtcdVersion = "v3.6.8"
)

// stagingModules are the k8s.io modules that kubernetes' go.mod replaces with
// its ./staging directories. Outside that repository the replacements have to
// point at the published v0.X.Y versions instead, or nothing resolves.
var stagingModules = []string{
	"api", "apiextensions-apiserver", "apimachinery", "apiserver",
	"cli-runtime", "client-go", "cloud-provider", "cluster-bootstrap",
	"code-generator", "component-base", "component-helpers",
	"controller-manager", "cri-api", "cri-client", "cri-streaming",
	"csi-translation-lib", "dynamic-resource-allocation", "endpointslice",
	"externaljwt", "kms", "kube-aggregator", "kube-controller-manager",
	"kube-proxy", "kube-scheduler", "kubectl", "kubelet", "metrics",
	"mount-utils", "pod-security-admission", "sample-apiserver",
	"sample-cli-plugin", "sample-controller", "streaming",
}

// Environment variables that point the helper at prebuilt binaries, for
// machines that already have them and do not want to build.
const (
	envCache     = "PODID_CACHE"
	envEtcd      = "PODID_ETCD"
	envAPIServer = "PODID_KUBE_APISERVER"
)

var (
	binMu        sync.Mutex
	binEtcd      string
	binAPIServer string
	binErr       error // set only by EnsureBinaries, so Start can report it
	binEnsured   bool
)

// Binaries builds (once, cached under $PODID_CACHE or ~/.cache/podid, in
// kube-<version>/bin) and returns the paths of etcd and kube-apiserver. A
// cold build takes about 11 minutes on two cores; later calls return at once.
// A lock file guards concurrent builders in other processes. The build output
// goes to build.log next to bin/.
func Binaries(ctx context.Context) (etcd, apiserver string, err error) {
	return cached(ctx, os.Stderr, nil)
}

// Build is Binaries with the go build output also copied to progress (if not
// nil), for commands that want to show it.
func Build(ctx context.Context, progress io.Writer) (etcd, apiserver string, err error) {
	return cached(ctx, progress, progress)
}

// cached builds at most once per process. notes gets a few lines saying what
// is going on; output gets everything go prints (it always goes to the log).
func cached(ctx context.Context, notes, output io.Writer) (etcd, apiserver string, err error) {
	binMu.Lock()
	defer binMu.Unlock()
	if binAPIServer != "" {
		return binEtcd, binAPIServer, nil
	}
	etcd, apiserver, err = build(ctx, notes, output)
	if err != nil {
		return "", "", err
	}
	binEtcd, binAPIServer = etcd, apiserver
	return etcd, apiserver, nil
}

// EnsureBinaries builds the binaries if needed, saying so (and where the
// build log is) on standard error. Call it from TestMain so the build is not charged to the
// first test; a failure is remembered and reported by Start.
func EnsureBinaries() {
	_, _, err := cached(context.Background(), os.Stderr, nil)
	binMu.Lock()
	binErr, binEnsured = err, true
	binMu.Unlock()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
}

// ensured returns the outcome of an earlier EnsureBinaries, if there was one.
func ensured() (ok bool, err error) {
	binMu.Lock()
	defer binMu.Unlock()
	return binEnsured, binErr
}

// CacheDir returns the directory that holds the binaries, build log and
// scratch modules for KubeVersion.
func CacheDir() (string, error) {
	root := os.Getenv(envCache)
	if root == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("kubetest: no cache directory: set %s: %w", envCache, err)
		}
		root = filepath.Join(home, ".cache", "podid")
	}
	return filepath.Join(root, "kube-"+KubeVersion), nil
}

func build(ctx context.Context, notes, output io.Writer) (etcd, apiserver string, err error) {
	if e, a := os.Getenv(envEtcd), os.Getenv(envAPIServer); e != "" && a != "" {
		return e, a, nil
	}
	dir, err := CacheDir()
	if err != nil {
		return "", "", err
	}
	bin := filepath.Join(dir, "bin")
	etcd = filepath.Join(bin, "etcd")
	apiserver = filepath.Join(bin, "kube-apiserver")
	if isFile(etcd) && isFile(apiserver) {
		return etcd, apiserver, nil
	}
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return "", "", fmt.Errorf("kubetest: %w", err)
	}

	logPath := filepath.Join(dir, "build.log")
	say := func(format string, args ...any) {
		if notes != nil {
			fmt.Fprintf(notes, "kubetest: "+format+"\n", args...)
		}
	}

	unlock, err := lockFile(ctx, filepath.Join(dir, "lock"), func() {
		say("waiting for another process building in %s (log: %s)", dir, logPath)
	})
	if err != nil {
		return "", "", fmt.Errorf("kubetest: lock %s: %w", dir, err)
	}
	defer unlock()
	// Another process may have finished while this one waited.
	if isFile(etcd) && isFile(apiserver) {
		return etcd, apiserver, nil
	}

	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return "", "", fmt.Errorf("kubetest: %w", err)
	}
	defer logf.Close()
	var out io.Writer = logf
	if output != nil {
		out = io.MultiWriter(logf, output)
	}
	fmt.Fprintf(logf, "\n=== %s build of kube-apiserver %s and etcd %s\n", time.Now().Format(time.RFC3339), KubeVersion, EtcdVersion)
	say("building etcd %s and kube-apiserver %s into %s (~11 min cold; log: %s)", EtcdVersion, KubeVersion, bin, logPath)

	if !isFile(etcd) {
		start := time.Now()
		if err := buildEtcd(ctx, filepath.Join(dir, "build", "etcd"), etcd, out); err != nil {
			// Debian's etcd-server (3.4) serves kube-apiserver well enough.
			if sys, lerr := exec.LookPath("etcd"); lerr == nil && ctx.Err() == nil {
				say("building etcd failed (%v); using %s", err, sys)
				fmt.Fprintf(logf, "falling back to %s\n", sys)
				etcd = sys
			} else {
				return "", "", fmt.Errorf("kubetest: build etcd (log: %s): %w", logPath, err)
			}
		} else {
			say("built etcd in %s", time.Since(start).Round(time.Second))
		}
	}
	if !isFile(apiserver) {
		start := time.Now()
		if err := buildAPIServer(ctx, filepath.Join(dir, "build", "kube-apiserver"), apiserver, out); err != nil {
			return "", "", fmt.Errorf("kubetest: build kube-apiserver (log: %s): %w", logPath, err)
		}
		say("built kube-apiserver in %s", time.Since(start).Round(time.Second))
	}
	return etcd, apiserver, nil
}

func buildEtcd(ctx context.Context, mod, dst string, out io.Writer) error {
	gomod := "module podid.local/kubetest/etcd\n\ngo 1.26\n"
	const pkg = "go.etcd.io/etcd/server/v3"
	return buildMain(ctx, mod, gomod, pkg+"@"+EtcdVersion, pkg, dst, "", out)
}

func buildAPIServer(ctx context.Context, mod, dst string, out io.Writer) error {
	var b strings.Builder
	b.WriteString("module podid.local/kubetest/kube-apiserver\n\ngo 1.26\n\n")
	fmt.Fprintf(&b, "require k8s.io/kubernetes %s\n\nreplace (\n", KubeVersion)
	staging := "v0." + strings.TrimPrefix(KubeVersion, "v1.")
	for _, m := range stagingModules {
		fmt.Fprintf(&b, "\tk8s.io/%s => k8s.io/%s %s\n", m, m, staging)
	}
	b.WriteString(")\n")

	major, minor, _ := strings.Cut(strings.TrimPrefix(KubeVersion, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	// Without these the binary reports v0.0.0-master, which clients and
	// version checks dislike.
	ldflags := fmt.Sprintf("-X k8s.io/component-base/version.gitVersion=%s"+
		" -X k8s.io/component-base/version.gitMajor=%s"+
		" -X k8s.io/component-base/version.gitMinor=%s"+
		" -X k8s.io/component-base/version.gitTreeState=clean",
		KubeVersion, major, minor)
	const pkg = "k8s.io/kubernetes/cmd/kube-apiserver"
	return buildMain(ctx, mod, b.String(), pkg+"@"+KubeVersion, pkg, dst, ldflags, out)
}

// buildMain builds the main package pkg in a scratch module at dir, whose
// go.mod starts as gomod, resolving requirements with go get of getArg.
// `go install pkg@version` would be simpler but refuses modules with replace
// directives, as both etcd and kubernetes have.
func buildMain(ctx context.Context, dir, gomod, getArg, pkg, dst, ldflags string, out io.Writer) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte(gomod), 0o644); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, "go.sum")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	tmp := dst + ".tmp"
	steps := [][]string{
		{"go", "get", getArg},
		{"go", "build", "-v", "-trimpath", "-ldflags", ldflags, "-o", tmp, pkg},
	}
	for _, args := range steps {
		fmt.Fprintf(out, "+ (cd %s && %s)\n", dir, strings.Join(args, " "))
		cmd := exec.CommandContext(ctx, args[0], args[1:]...)
		cmd.Dir = dir
		cmd.Stdout, cmd.Stderr = out, out
		// The scratch module must not be pulled into a caller's workspace or
		// vendor mode, and needs network access to the module proxy.
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS="+os.Getenv("GOFLAGS")+" -mod=mod", "CGO_ENABLED=0")
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %w", strings.Join(args[:2], " "), err)
		}
	}
	// Rename last, so a half-written binary is never taken for a cached one.
	return os.Rename(tmp, dst)
}

func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}
