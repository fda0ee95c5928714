package sdk

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// TestUp runs `podid up` as a user would, takes the export lines it
// prints, sets up a cluster and an association through the server as the
// administrator, and has boto3 (a workload) get its role through the
// agent and call GetCallerIdentity; the aws-CLI-style admin exports work too.
func TestUp(t *testing.T) {
	podid := build(t, "github.com/podid/podid/cmd/podid")
	dir := t.TempDir()
	c, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(c, podid, "up", "--data-dir", dir, "--account-id", "111122223333",
		"--listen", "127.0.0.1:0", "--agent-bind", "127.0.0.1:0", "--health-addr", "127.0.0.1:0", "--metrics-addr", "",
		"--cluster", cluster, "--audit-log", "none", "--log-level", "warn")
	cmd.Env = sdkEnv("", "", "")
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("podid up did not stop on SIGINT")
			cancel()
		}
	})

	exports := map[string]string{}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(30 * time.Second)
	for exports["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("podid up exited; exports so far %v", exports)
			}
			t.Log(line)
			l := strings.TrimSpace(strings.TrimPrefix(line, "#"))
			if rest, ok := strings.CutPrefix(l, "export "); ok {
				for _, f := range strings.Fields(rest) {
					if k, v, ok := strings.Cut(f, "="); ok && strings.HasPrefix(k, "AWS_") {
						exports[k] = v
					}
				}
			}
		case <-timeout:
			t.Fatalf("no export lines from podid up; got %v", exports)
		}
	}
	go func() {
		for range lines {
		}
	}()
	serverURL, credsFile := exports["AWS_ENDPOINT_URL"], exports["AWS_SHARED_CREDENTIALS_FILE"]
	if serverURL == "" || credsFile != filepath.Join(dir, "admin-credentials") || exports["AWS_REGION"] != region {
		t.Fatalf("exports: %v", exports)
	}

	// The administrator's exports, as the aws CLI would use them.
	var admin []string
	for _, kv := range sdkEnv("", "", "") {
		if !strings.HasPrefix(kv, "AWS_") {
			admin = append(admin, kv)
		}
	}
	admin = append(admin, "AWS_ENDPOINT_URL="+serverURL, "AWS_SHARED_CREDENTIALS_FILE="+credsFile, "AWS_REGION="+region, "AWS_DEFAULT_REGION="+exports["AWS_DEFAULT_REGION"])
	cmdAdmin := exec.Command("python3", "-c", `import boto3; print(boto3.client("sts").get_caller_identity()["Arn"])`)
	cmdAdmin.Env = admin
	if out, err := cmdAdmin.CombinedOutput(); err != nil || !strings.Contains(string(out), "arn:aws:iam::111122223333:") {
		t.Fatalf("admin exports: %v %s", err, out)
	}

	id, secret := readKeys(t, credsFile)
	pc := setupCluster(t, serverURL, aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}, cluster)
	env := sdkEnv(exports["AWS_CONTAINER_CREDENTIALS_FULL_URI"], writeToken(t, pc.podToken(t, "pod-up", "node-1")), serverURL)
	checkIdentity(t, "boto3 via podid up", boto(t, env, true, ""), "pod-up")
}

func readKeys(t *testing.T, path string) (id, secret string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch strings.TrimSpace(k) {
		case "aws_access_key_id":
			id = strings.TrimSpace(v)
		case "aws_secret_access_key":
			secret = strings.TrimSpace(v)
		}
	}
	return id, secret
}
