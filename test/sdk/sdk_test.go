package sdk

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestSDKsThroughAgent: each unmodified SDK finds the agent through the
// variables the webhook injects, gets the role session's credentials and
// calls STS GetCallerIdentity on a real podid server, which verifies them.
// All three share one token, so the node calls EKS Auth once.
func TestSDKsThroughAgent(t *testing.T) {
	s := startPodid(t)
	up := newFakeEKSAuth(t, s, podToken(1))
	ag := startAgent(t, up.URL())
	env := sdkEnv(ag.URL, writeToken(t, podToken(1)), s.ServerURL)

	check := func(name string, id identity) {
		t.Helper()
		if id.Error != "" {
			t.Fatalf("%s: %s", name, id.Error)
		}
		if id.Arn != s.Arn || id.Account != "111122223333" || id.AccessKeyId != s.Creds.AccessKeyID {
			t.Fatalf("%s: got %+v, want %s", name, id, s.Arn)
		}
		if !strings.HasPrefix(id.Arn, "arn:aws:sts::111122223333:assumed-role/"+roleName+"/") {
			t.Fatalf("%s: not the association's role: %s", name, id.Arn)
		}
	}
	t.Run("aws-sdk-go-v2", func(t *testing.T) { check("go", goSDK(t, env, true)) })
	t.Run("botocore", func(t *testing.T) { check("boto3", boto(t, env, true, "")) })
	t.Run("javascript-v3", func(t *testing.T) { check("js", jsSDK(t, env, "")) })
	t.Run("aws-sdk-go-v2-process", func(t *testing.T) { check("go process", goSDKProcess(t, env, true, "")) })

	if n := up.calls.Load(); n != 1 {
		t.Errorf("EKS Auth calls: %d, want 1 (one per token per node)", n)
	}
}

// TestSDKErrors: what each SDK sees when the agent refuses.
func TestSDKErrors(t *testing.T) {
	s := startPodid(t)
	up := newFakeEKSAuth(t, s, podToken(1))
	ag := startAgent(t, up.URL())

	unknown := sdkEnv(ag.URL, writeToken(t, podToken(2)), s.ServerURL)
	if id := goSDK(t, unknown, false); !strings.Contains(id.Error, "InvalidTokenException") {
		t.Errorf("go, unknown token: %+v", id)
	}
	if id := boto(t, unknown, false, ""); !strings.Contains(id.Error, "Error") {
		t.Errorf("boto3, unknown token: %+v", id)
	}
	before := up.calls.Load()
	garbage := sdkEnv(ag.URL, writeToken(t, "not-a-jwt"), s.ServerURL)
	if id := goSDK(t, garbage, false); !strings.Contains(id.Error, "InvalidToken") {
		t.Errorf("go, garbage token: %+v", id)
	}
	if id := boto(t, garbage, false, ""); !strings.Contains(id.Error, "Error") {
		t.Errorf("boto3, garbage token: %+v", id)
	}
	if n := up.calls.Load(); n != before {
		t.Errorf("EKS Auth calls went from %d to %d: garbage tokens must not reach it", before, n)
	}

	resp, err := http.Get(ag.Metrics + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `podid_agent_upstream_errors_total{code="InvalidTokenException"}`) {
		t.Errorf("metrics lack the upstream error")
	}
}
