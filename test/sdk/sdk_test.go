package sdk

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// checkIdentity asserts an SDK got the association's role session.
func checkIdentity(t *testing.T, sdk string, id identity, pod string) {
	t.Helper()
	if id.Error != "" {
		t.Fatalf("%s: %s", sdk, id.Error)
	}
	want := "arn:aws:sts::111122223333:assumed-role/" + roleName + "/eks-" + cluster + "-" + pod + "-"
	if !strings.HasPrefix(id.Arn, want) || id.Account != "111122223333" || !strings.HasPrefix(id.AccessKeyId, "ASIA") {
		t.Fatalf("%s: got %+v, want an ARN starting %s", sdk, id, want)
	}
}

// TestSDKsThroughAgent: each unmodified SDK finds the agent through the
// variables the webhook injects and gets the association's role from the
// real server's AssumeRoleForPodIdentity (the agent authenticates with its
// own node-bound token), then calls STS GetCallerIdentity, which verifies
// the credentials. All share one token, so the node calls EKS Auth once.
func TestSDKsThroughAgent(t *testing.T) {
	c := startPodidCluster(t)
	up := &countingUpstream{next: c.agentUpstream(t, "node-1")}
	ag := startAgentWith(t, up)
	env := sdkEnv(ag.URL, writeToken(t, c.podToken(t, "pod-a", "node-1")), c.Inst.URL)

	var arns []string
	run := func(name string, f func(t *testing.T) identity) {
		t.Run(name, func(t *testing.T) {
			id := f(t)
			checkIdentity(t, name, id, "pod-a")
			arns = append(arns, id.Arn)
		})
	}
	run("aws-sdk-go-v2", func(t *testing.T) identity { return goSDK(t, env, true) })
	run("botocore", func(t *testing.T) identity { return boto(t, env, true, "") })
	run("javascript-v3", func(t *testing.T) identity { return jsSDK(t, env, "") })
	run("aws-sdk-go-v2-process", func(t *testing.T) identity { return goSDKProcess(t, env, true, "") })

	if n := up.calls.Load(); n != 1 {
		t.Errorf("EKS Auth calls: %d, want 1 (one per token per node)", n)
	}
	for _, a := range arns[1:] {
		if a != arns[0] {
			t.Errorf("SDKs got different sessions: %v", arns)
		}
	}
}

// TestSigV4Agent: the agent authenticates with SigV4 (mode 1) instead.
func TestSigV4Agent(t *testing.T) {
	c := startPodidCluster(t)
	ag := startAgentWith(t, c.sigv4Upstream())
	env := sdkEnv(ag.URL, writeToken(t, c.podToken(t, "pod-b", "node-7")), c.Inst.URL)
	checkIdentity(t, "aws-sdk-go-v2", goSDK(t, env, true), "pod-b")
}

// TestNodeBinding: a pod token from another node, replayed through this
// node's agent, gets nothing.
func TestNodeBinding(t *testing.T) {
	c := startPodidCluster(t)
	ag := startAgentWith(t, c.agentUpstream(t, "node-1"))
	stolen := c.podToken(t, "pod-c", "node-2")
	code, body := get(http.DefaultClient, ag.URL, stolen)
	if code != http.StatusForbidden || !strings.Contains(body, "AccessDeniedException") || !strings.Contains(body, "node-2") {
		t.Fatalf("replayed token: %d %s", code, body)
	}
	env := sdkEnv(ag.URL, writeToken(t, stolen), c.Inst.URL)
	if id := goSDK(t, env, false); !strings.Contains(id.Error, "AccessDeniedException") {
		t.Fatalf("go SDK with a replayed token: %+v", id)
	}
}

// TestSDKErrors: what the SDKs see when the server or the agent refuses.
func TestSDKErrors(t *testing.T) {
	c := startPodidCluster(t)
	up := &countingUpstream{next: c.agentUpstream(t, "node-1")}
	ag := startAgentWith(t, up)

	// No association for default/other.
	other := c.token(t, "pods.eks.amazonaws.com", "default", "other", "pod-d", "node-1")
	if code, body := get(http.DefaultClient, ag.URL, other); code != 404 || !strings.Contains(body, "ResourceNotFoundException") {
		t.Errorf("no association: %d %s", code, body)
	}
	unassociated := sdkEnv(ag.URL, writeToken(t, other), c.Inst.URL)
	if id := goSDK(t, unassociated, false); !strings.Contains(id.Error, "ResourceNotFoundException") {
		t.Errorf("go, no association: %+v", id)
	}
	if id := boto(t, unassociated, false, ""); !strings.Contains(id.Error, "Error") {
		t.Errorf("boto3, no association: %+v", id)
	}
	// Signed by someone else: InvalidTokenException passes through.
	forged := strings.Join(strings.Split(c.podToken(t, "pod-e", "node-1"), ".")[:2], ".") + ".Zm9yZ2Vk"
	if code, body := get(http.DefaultClient, ag.URL, forged); code != 400 || !strings.Contains(body, "InvalidTokenException") {
		t.Errorf("forged token: %d %s", code, body)
	}

	before := up.calls.Load()
	garbage := sdkEnv(ag.URL, writeToken(t, "not-a-jwt"), c.Inst.URL)
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
	if !strings.Contains(string(b), `podid_agent_upstream_errors_total{code="ResourceNotFoundException"}`) {
		t.Errorf("metrics lack the upstream error")
	}
}
