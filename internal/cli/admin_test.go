package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/podid/podid/internal/server/servertest"
)

// adminEnv points the AWS credential chain at nothing but the server's
// administrator keys, given by a profile of a shared credentials file.
func adminEnv(t *testing.T, inst *servertest.Instance) (credsFile string) {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "AWS_") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	dir := t.TempDir()
	credsFile = filepath.Join(dir, "credentials")
	creds := "[admin]\naws_access_key_id = " + inst.AccessKeyID + "\naws_secret_access_key = " + inst.SecretAccessKey + "\n"
	if err := os.WriteFile(credsFile, []byte(creds), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "config")
	// The aws CLI v2's timestamp format, which podid prints.
	if err := os.WriteFile(cfg, []byte("[default]\ncli_timestamp_format = iso8601\n[profile admin]\ncli_timestamp_format = iso8601\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", credsFile)
	t.Setenv("AWS_CONFIG_FILE", cfg)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_PROFILE", "admin")
	t.Setenv("AWS_ENDPOINT_URL", inst.URL)
	t.Setenv("TZ", "UTC")
	return credsFile
}

// podid runs the CLI in-process and returns what it printed.
func podid(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := NewRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func mustPodid(t *testing.T, args ...string) string {
	t.Helper()
	out, err := podid(t, args...)
	if err != nil {
		t.Fatalf("podid %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// field decodes the CLI's JSON output and walks keys.
func field(t *testing.T, out string, keys ...string) any {
	t.Helper()
	var v any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("output %q: %v", out, err)
	}
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			t.Fatalf("no %q in %s", k, out)
		}
		v = m[k]
	}
	return v
}

// awsCLI runs the aws CLI with the same environment, if it is installed.
func awsCLI(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("aws"); err != nil {
		t.Skip("no aws CLI:", err)
	}
	cmd := exec.Command("aws", args...)
	cmd.Env = append(os.Environ(), "AWS_DEFAULT_REGION=us-east-1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func writeJWKS(t *testing.T) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The admin verbs against a real server, their output byte for byte what
// the aws CLI prints for the same operation.
func TestAdminVerbsPrintWhatTheAWSCLIPrints(t *testing.T) {
	inst := servertest.Start(t)
	adminEnv(t, inst)
	jwks := writeJWKS(t)

	out := mustPodid(t, "cluster", "register", "--name", "c1", "--issuer", "https://c1.issuer.test", "--jwks-file", jwks, "--tags", "env=test")
	if field(t, out, "cluster", "arn") != "arn:aws:eks:us-east-1:111122223333:cluster/c1" || field(t, out, "cluster", "identity", "oidc", "issuer") != "https://c1.issuer.test" {
		t.Errorf("register printed %s", out)
	}
	mustPodid(t, "cluster", "register", "--name", "c2", "--issuer", "https://c2.issuer.test", "--jwks-file", jwks)
	role := mustPodid(t, "role", "create", "--name", "app", "--pod-identity")
	roleARN, _ := field(t, role, "Role", "Arn").(string)
	target := mustPodid(t, "role", "create", "--name", "target", "--irsa-provider-arn", "arn:aws:iam::111122223333:oidc-provider/c1.issuer.test", "--namespace", "ns", "--service-account", "sa")
	targetARN, _ := field(t, target, "Role", "Arn").(string)

	created := mustPodid(t, "association", "create", "--cluster", "c1", "--namespace", "ns", "--service-account", "sa", "--role-arn", roleARN, "--tags", "team=a,tier=web")
	id, _ := field(t, created, "association", "associationId").(string)
	mustPodid(t, "association", "create", "--cluster", "c1", "--namespace", "ns", "--service-account", "other", "--role-arn", roleARN)
	updated := mustPodid(t, "association", "update", "--cluster", "c1", "--association-id", id, "--target-role-arn", targetARN)
	if ext, _ := field(t, updated, "association", "externalId").(string); len(ext) != 36 {
		t.Errorf("update --target-role-arn printed externalId %q", ext)
	}
	if want := awsCLI(t, "eks", "describe-pod-identity-association", "--cluster-name", "c1", "--association-id", id); updated != want {
		t.Errorf("podid association update printed\n%s\naws eks describe-pod-identity-association prints\n%s", updated, want)
	}

	for _, tc := range []struct{ podid, aws []string }{
		{[]string{"association", "describe", "--cluster", "c1", "--association-id", id}, []string{"eks", "describe-pod-identity-association", "--cluster-name", "c1", "--association-id", id}},
		{[]string{"association", "list", "--cluster", "c1"}, []string{"eks", "list-pod-identity-associations", "--cluster-name", "c1"}},
		{[]string{"association", "list", "--cluster", "c1", "--service-account", "other", "--page-size", "1"}, []string{"eks", "list-pod-identity-associations", "--cluster-name", "c1", "--service-account", "other"}},
		{[]string{"cluster", "describe", "--name", "c1"}, []string{"eks", "describe-cluster", "--name", "c1"}},
		{[]string{"cluster", "list"}, []string{"eks", "list-clusters"}},
	} {
		got, want := mustPodid(t, tc.podid...), awsCLI(t, tc.aws...)
		if got != want {
			t.Errorf("podid %s printed\n%s\naws %s prints\n%s", strings.Join(tc.podid, " "), got, strings.Join(tc.aws, " "), want)
		}
	}
	if got := awsCLI(t, "iam", "get-role", "--role-name", "target"); !strings.Contains(got, strings.TrimSuffix(strings.TrimPrefix(target, "{\n    \"Role\": {"), "}\n}\n")) {
		t.Errorf("podid role create printed\n%s\naws iam get-role prints\n%s", target, got)
	}

	policyFile := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(policyFile, []byte(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"*"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	out = mustPodid(t, "association", "update", "--cluster", "c1", "--association-id", id, "--disable-session-tags", "--policy", "file://"+policyFile, "--target-role-arn", "")
	if field(t, out, "association", "disableSessionTags") != true || !strings.Contains(field(t, out, "association", "policy").(string), "s3:GetObject") ||
		field(t, out, "association", "targetRoleArn") != nil || field(t, out, "association", "externalId") != nil {
		t.Errorf("update --disable-session-tags --policy file:// --target-role-arn '' printed %s", out)
	}
	deleted := mustPodid(t, "association", "delete", "--cluster", "c1", "--association-id", id)
	if field(t, deleted, "association", "associationId") != id {
		t.Errorf("delete printed %s", deleted)
	}
	if ids := field(t, mustPodid(t, "association", "list", "--cluster", "c1"), "associations").([]any); len(ids) != 1 {
		t.Errorf("after delete, %d associations", len(ids))
	}
	mustPodid(t, "cluster", "delete", "--name", "c2")
	if got := field(t, mustPodid(t, "cluster", "list"), "clusters"); mustJSONString(got) != `["c1"]` {
		t.Errorf("clusters after delete = %v", got)
	}
}

func mustJSONString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestAdminVerbErrors(t *testing.T) {
	inst := servertest.Start(t)
	credsFile := adminEnv(t, inst)
	jwks := writeJWKS(t)
	mustPodid(t, "cluster", "register", "--name", "c1", "--issuer", "https://c1.issuer.test", "--jwks-file", jwks)
	mustPodid(t, "association", "create", "--cluster", "c1", "--namespace", "ns", "--service-account", "sa", "--role-arn", "arn:aws:iam::111122223333:role/app")
	if err := os.WriteFile(credsFile, []byte("[admin]\naws_access_key_id = "+inst.AccessKeyID+"\naws_secret_access_key = "+inst.SecretAccessKey+"\n[stranger]\naws_access_key_id = AKIAAAAAAAAAAAAAAAAA\naws_secret_access_key = "+strings.Repeat("x", 40)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"second association", []string{"association", "create", "--cluster", "c1", "--namespace", "ns", "--service-account", "sa", "--role-arn", "arn:aws:iam::111122223333:role/app"},
			"An error occurred (ResourceInUseException) when calling the CreatePodIdentityAssociation operation: "},
		{"unknown cluster", []string{"association", "list", "--cluster", "nope"},
			"An error occurred (ResourceNotFoundException) when calling the ListPodIdentityAssociations operation: "},
		{"unknown association", []string{"association", "describe", "--cluster", "c1", "--association-id", "a-00000000000000000"},
			"An error occurred (ResourceNotFoundException) when calling the DescribePodIdentityAssociation operation: "},
		{"duplicate cluster", []string{"cluster", "register", "--name", "c1", "--issuer", "https://c1.issuer.test", "--jwks-file", jwks},
			"An error occurred (ResourceInUseException) when calling the RegisterCluster operation: "},
		{"unknown cluster to delete", []string{"cluster", "delete", "--name", "nope"},
			"An error occurred (ResourceNotFoundException) when calling the DeleteCluster operation: "},
		{"two key sources", []string{"cluster", "register", "--name", "x", "--issuer", "https://x.test", "--jwks-file", jwks, "--discovery"}, "none of the others can be"},
		{"no key source", []string{"cluster", "register", "--name", "x", "--issuer", "https://x.test"}, "at least one of the flags"},
		{"role without a trust choice", []string{"role", "create", "--name", "r"}, "give --pod-identity or --irsa-provider-arn"},
		{"IRSA without a service account", []string{"role", "create", "--name", "r", "--irsa-provider-arn", "arn:aws:iam::111122223333:oidc-provider/x.test"}, "needs --namespace and --service-account"},
		{"another profile's keys", []string{"cluster", "list", "--profile", "stranger"}, ") when calling the ListClusters operation: "},
		{"unknown profile", []string{"cluster", "list", "--profile", "nobody"}, "nobody"},
	} {
		out, err := podid(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v (printed %q), want it to contain %q", tc.name, err, out, tc.want)
		}
	}

	t.Setenv("AWS_ENDPOINT_URL", "")
	if _, err := podid(t, "cluster", "list"); err == nil || !strings.Contains(err.Error(), "--endpoint-url") {
		t.Errorf("without an endpoint: err = %v, want a refusal naming --endpoint-url", err)
	}
	if out := mustPodid(t, "cluster", "list", "--endpoint-url", inst.URL); field(t, out, "clusters").([]any)[0] != "c1" {
		t.Errorf("--endpoint-url: %s", out)
	}
}
