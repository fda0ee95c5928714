package integration

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/podid/podid/internal/server/servertest"
)

// awsCLI runs the aws CLI (v1, botocore) against one server with a clean
// environment: only the given variables, the endpoint always set.
type awsCLI struct {
	t    *testing.T
	path string
	url  string
	env  []string
}

func newAWSCLI(t *testing.T, inst *servertest.Instance) *awsCLI {
	t.Helper()
	path, err := exec.LookPath("aws")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("aws CLI missing in CI: %v", err)
		}
		t.Skip("aws CLI not installed:", err)
	}
	// A pyenv shim costs seconds per call on a loaded machine: run the
	// script it points at.
	if out, err := exec.Command("pyenv", "which", "aws").Output(); err == nil {
		path = strings.TrimSpace(string(out))
	}
	return &awsCLI{t: t, path: path, url: inst.URL, env: append(cleanEnv(),
		// CLI v1 reads AWS_DEFAULT_REGION, not AWS_REGION.
		"AWS_DEFAULT_REGION="+region, "AWS_ENDPOINT_URL="+inst.URL, "AWS_MAX_ATTEMPTS=1",
		"AWS_SHARED_CREDENTIALS_FILE="+inst.AdminCredentialsFile())}
}

// run returns the parsed JSON output; extraEnv overrides the defaults.
func (a *awsCLI) run(extraEnv []string, args ...string) (map[string]any, error) {
	a.t.Helper()
	cmd := exec.Command(a.path, append(args, "--endpoint-url", a.url, "--output", "json")...)
	cmd.Env = append(append([]string(nil), a.env...), extraEnv...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, errors.New(err.Error() + ": " + stderr.String())
	}
	var m map[string]any
	if len(strings.TrimSpace(string(out))) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(out, &m); err != nil {
		a.t.Fatalf("aws %s: output is not JSON: %v\n%s", strings.Join(args, " "), err, out)
	}
	return m, nil
}

func (a *awsCLI) mustRun(extraEnv []string, args ...string) map[string]any {
	a.t.Helper()
	m, err := a.run(extraEnv, args...)
	if err != nil {
		a.t.Fatalf("aws %s: %v", strings.Join(args, " "), err)
	}
	return m
}

// str walks a decoded JSON value along keys.
func str(v any, keys ...string) string {
	for _, k := range keys {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	s, _ := v.(string)
	return s
}

func TestAWSCLIRoundTrip(t *testing.T) {
	inst := servertest.Start(t)
	cli := newAWSCLI(t, inst)
	dir := t.TempDir()
	trust := trustAccount()
	trustFile := filepath.Join(dir, "trust.json")
	if err := os.WriteFile(trustFile, []byte(mustJSON(trust)), 0o600); err != nil {
		t.Fatal(err)
	}

	created := cli.mustRun(nil, "iam", "create-role", "--role-name", "cli", "--path", "/tools/",
		"--assume-role-policy-document", "file://"+trustFile, "--tags", "Key=team,Value=blue")
	roleARN := str(created, "Role", "Arn")
	if roleARN != "arn:aws:iam::"+account+":role/tools/cli" {
		t.Errorf("create-role Arn = %q", roleARN)
	}

	// The CLI URL-decodes and parses policy documents: what comes back is
	// the document that was sent.
	listed := cli.mustRun(nil, "iam", "list-roles", "--path-prefix", "/tools/")
	roles, _ := listed["Roles"].([]any)
	if len(roles) != 1 || str(roles[0], "RoleName") != "cli" {
		t.Fatalf("list-roles = %v", listed)
	}
	var wantTrust any
	_ = json.Unmarshal([]byte(mustJSON(trust)), &wantTrust)
	if got := roles[0].(map[string]any)["AssumeRolePolicyDocument"]; !reflect.DeepEqual(got, wantTrust) {
		t.Errorf("list-roles trust document = %#v, want %#v", got, wantTrust)
	}
	policy := policyDoc(stmt("Allow", "s3:GetObject", "arn:aws:s3:::bucket/a b+c"))
	cli.mustRun(nil, "iam", "put-role-policy", "--role-name", "cli", "--policy-name", "read", "--policy-document", policy)
	got := cli.mustRun(nil, "iam", "get-role-policy", "--role-name", "cli", "--policy-name", "read")
	var wantPolicy any
	_ = json.Unmarshal([]byte(policy), &wantPolicy)
	if !reflect.DeepEqual(got["PolicyDocument"], wantPolicy) {
		t.Errorf("get-role-policy document = %#v, want %#v", got["PolicyDocument"], wantPolicy)
	}
	if _, err := cli.run(nil, "iam", "get-role", "--role-name", "ghost"); err == nil || !strings.Contains(err.Error(), "NoSuchEntity") {
		t.Errorf("get-role ghost: err = %v, want NoSuchEntity", err)
	}

	assumed := cli.mustRun(nil, "sts", "assume-role", "--role-arn", roleARN, "--role-session-name", "cli-session", "--duration-seconds", "900")
	if got := str(assumed, "AssumedRoleUser", "Arn"); got != "arn:aws:sts::"+account+":assumed-role/cli/cli-session" {
		t.Errorf("assume-role AssumedRoleUser.Arn = %q", got)
	}
	sessionEnv := []string{
		"AWS_ACCESS_KEY_ID=" + str(assumed, "Credentials", "AccessKeyId"),
		"AWS_SECRET_ACCESS_KEY=" + str(assumed, "Credentials", "SecretAccessKey"),
		"AWS_SESSION_TOKEN=" + str(assumed, "Credentials", "SessionToken"),
		"AWS_SHARED_CREDENTIALS_FILE=/dev/null",
	}
	who := cli.mustRun(sessionEnv, "sts", "get-caller-identity")
	if str(who, "Arn") != "arn:aws:sts::"+account+":assumed-role/cli/cli-session" || str(who, "Account") != account || !strings.HasSuffix(str(who, "UserId"), ":cli-session") {
		t.Errorf("get-caller-identity = %v", who)
	}
	// The session has no IAM permissions of its own.
	if _, err := cli.run(sessionEnv, "iam", "list-roles"); err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Errorf("list-roles as the session: err = %v, want AccessDenied", err)
	}
	audit := inst.AuditLog(t)
	if strings.Contains(audit, str(assumed, "Credentials", "SessionToken")) || strings.Contains(audit, inst.SecretAccessKey) {
		t.Error("audit log holds a secret")
	}
	if !strings.Contains(audit, `"userAgent":"aws-cli/`) {
		t.Error("audit log did not record the CLI's user agent")
	}
}

// The administrator's credentials file is all the aws CLI needs: no region
// and no other configuration, only --endpoint-url.
func TestAWSCLIWithOnlyTheCredentialsFile(t *testing.T) {
	inst := servertest.Start(t)
	cli := newAWSCLI(t, inst)
	cli.env = append(cleanEnv(), "AWS_SHARED_CREDENTIALS_FILE="+inst.AdminCredentialsFile())
	if _, err := cli.run(nil, "iam", "list-roles"); err != nil {
		t.Fatalf("aws iam list-roles with only the credentials file: %v", err)
	}
	who := cli.mustRun(nil, "sts", "get-caller-identity")
	if got := str(who, "Arn"); got != "arn:aws:iam::111122223333:root" {
		t.Errorf("Arn = %q", got)
	}
}
