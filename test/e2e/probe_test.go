//go:build linux

package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// sdk is one AWS SDK as a container: its command runs the default
// credential chain and, with the argument "sts", GetCallerIdentity.
type sdk struct {
	name, short string // short names its pods
	container   func(mode string) corev1.Container
}

var sdks = []sdk{
	{"aws-sdk-go-v2", "go", func(mode string) corev1.Container {
		return corev1.Container{Command: []string{bins.goprobe}, Args: []string{mode}}
	}},
	{"boto3", "boto3", func(mode string) corev1.Container {
		return corev1.Container{Command: []string{bins.python, filepath.Join(bins.sdkDir, "probe.py")}, Args: []string{mode}}
	}},
	{"aws-sdk-js-v3", "js", func(mode string) corev1.Container {
		// @aws-sdk/* resolve from the probe's directory, where npm
		// installed them.
		return corev1.Container{Command: []string{bins.node, filepath.Join(bins.jsDir, "probe.mjs")}, Args: []string{mode},
			WorkingDir: bins.jsDir}
	}},
}

// probeCommand is the command of the container for a credentials-only run
// (kubectl exec style): the same program without "sts".
func probeCommand(c corev1.Container) []string {
	return append(append([]string{}, c.Command...), "creds")
}

// identity is a probe's JSON line.
type identity struct {
	Arn, Account, AccessKeyId, Error string
}

// parseIdentity reads the last line of a probe's output.
func parseIdentity(t *testing.T, r result) identity {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	var id identity
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &id); err != nil {
		t.Fatalf("probe output is not a JSON line: %v\n%s", err, r)
	}
	if id.Error == "" && r.Err != nil {
		t.Fatalf("probe failed without an error line:\n%s", r)
	}
	return id
}
