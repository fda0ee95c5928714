//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestE2E runs the whole system once and the scenarios against it, in
// order: the last one deletes the association the others use.
func TestE2E(t *testing.T) {
	requireSuite(t)
	start := time.Now()
	e := setup(t)
	t.Logf("setup done in %.1fs", time.Since(start).Seconds())

	for _, s := range []struct {
		name string
		fn   func(*testing.T, *env)
	}{
		{"PodIdentity", testPodIdentity},
		{"IRSA", testIRSA},
		{"PodDeleted", testPodDeleted},
		{"ServerRestart", testServerRestart},
		{"AssociationDeleted", testAssociationDeleted},
	} {
		at := time.Now()
		t.Run(s.name, func(t *testing.T) { s.fn(t, e) })
		t.Logf("%s: %.1fs", s.name, time.Since(at).Seconds())
	}
}

// runProbe runs a pod's container and returns what the SDK printed.
func runProbe(t *testing.T, e *env, pr *podRun, container string, command ...string) identity {
	t.Helper()
	r := e.kubelet.run(t, pr, container, command...)
	id := parseIdentity(t, r)
	if id.Error != "" {
		t.Logf("%s/%s: %s (stderr: %s)", pr.pod.Name, container, id.Error, tail(r.Stderr, 5))
	}
	return id
}

// testPodIdentity: one pod per SDK of the associated service account; the
// webhook injects the seed's env, volume and mount; the kubelet projects
// the token; each SDK's container provider calls the agent at
// 169.254.170.23, the agent calls AssumeRoleForPodIdentity, and
// GetCallerIdentity names the pod's role session.
func testPodIdentity(t *testing.T, e *env) {
	tokens := map[string]*podRun{}
	for _, s := range sdks {
		pod := e.createPod(t, e.podSpec("pi-"+s.short, piSA, s.container("sts")))
		checkPodIdentityMutation(t, pod)
		pr := e.kubelet.admit(t, pod)
		id := runProbe(t, e, pr, "app")
		t.Logf("%-14s Pod Identity ARN: %s", s.name, id.Arn)
		tokens[s.short] = pr
		if !podIdentityARN(pod.Name).MatchString(id.Arn) || id.Account != account {
			t.Errorf("%s: got %+v, want %s", s.name, id, podIdentityARN(pod.Name))
		}
	}
	// Every exchange reached the server from the node, as the agent's
	// AssumeRoleForPodIdentity (the seed's CloudTrail event).
	if !e.auditHas(`"eventName":"AssumeRoleForPodIdentity"`, `"sourceIPAddress":"`+nodeAddr+`"`) {
		t.Errorf("no AssumeRoleForPodIdentity from the node (%s) in the audit log", nodeAddr)
	}
	// The agent also answers on fd00:ec2::23 (the webhook's --ipv6 URI);
	// checked with the test's own client from inside the node.
	e.checkIPv6(t, tokens["boto3"])

	// The agent logged what the seed's agent logs, per pod.
	log := e.agent.logText()
	for _, want := range []string{"Calling EKS Auth to fetch credentials", "Successfully fetched credentials from EKS Auth", "assumed-role/" + piRole + "/eks-" + clusterName + "-pi-"} {
		if !strings.Contains(log, want) {
			t.Errorf("agent log lacks %q:\n%s", want, tail(log, 20))
		}
	}
}

// testIRSA: one pod per SDK of the annotated service account; each SDK's
// web identity provider reads the projected token and calls
// AssumeRoleWithWebIdentity on the server, which verifies it against the
// apiserver's own discovery document and JWKS.
func testIRSA(t *testing.T, e *env) {
	prefix := "arn:aws:sts::" + account + ":assumed-role/" + irsaRole + "/"
	for _, s := range sdks {
		pod := e.createPod(t, e.podSpec("irsa-"+s.short, irsaSA, s.container("sts")))
		checkIRSAMutation(t, pod, e.irsaRoleARN)
		pr := e.kubelet.admit(t, pod)
		id := runProbe(t, e, pr, "app")
		t.Logf("%-14s IRSA ARN:         %s", s.name, id.Arn)
		if !strings.HasPrefix(id.Arn, prefix) || len(id.Arn) == len(prefix) {
			t.Errorf("%s: got %+v, want %s<session>", s.name, id, prefix)
		}
	}
	if !e.auditHas(`"eventName":"AssumeRoleWithWebIdentity"`, `"sourceIPAddress":"`+nodeAddr+`"`) {
		t.Errorf("no AssumeRoleWithWebIdentity from the node (%s) in the audit log", nodeAddr)
	}
}

// deletePod deletes a pod at once (no kubelet would confirm a graceful
// deletion here).
func (e *env) deletePod(t *testing.T, name string) {
	t.Helper()
	zero := int64(0)
	if err := e.cs.CoreV1().Pods(appNS).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}
}

// testPodDeleted: the kubelet rotates a pod's token, the pod is deleted;
// the server, in TokenReview mode, refuses the token from then on (after
// the apiserver's 10 s token cache at most), so the SDK gets nothing.
func testPodDeleted(t *testing.T, e *env) {
	c := sdks[1].container("sts") // boto3
	pod := e.createPod(t, e.podSpec("pi-deleted", piSA, c))
	pr := e.kubelet.admit(t, pod)
	if id := runProbe(t, e, pr, "app"); !podIdentityARN(pod.Name).MatchString(id.Arn) {
		t.Fatalf("before deletion: %+v", id)
	}
	// A fresh token, never seen by the agent, so its cache cannot answer.
	e.kubelet.project(t, pr)
	e.deletePod(t, pod.Name)
	deleted := time.Now()
	var last identity
	waitFor(t, "the server to refuse the deleted pod's token", 45*time.Second, time.Second, func() (bool, error) {
		last = runProbe(t, e, pr, "app", probeCommand(c)...)
		if last.Error == "" {
			t.Logf("%.1fs after deletion the token still works (apiserver token cache)", time.Since(deleted).Seconds())
		}
		return last.Error != "", fmt.Errorf("still served: %+v", last)
	})
	t.Logf("refused %.1fs after deletion: %s", time.Since(deleted).Seconds(), last.Error)
	if !strings.Contains(last.Error, "TokenReview") {
		t.Errorf("error does not name the TokenReview: %s", last.Error)
	}
}

// testServerRestart: a pod with one container per SDK shares one token,
// so one cache entry; with the server stopped every SDK still gets the
// same credentials from the agent; after the server restarts (same store)
// those credentials still verify.
func testServerRestart(t *testing.T, e *env) {
	var cs []corev1.Container
	for _, s := range sdks {
		c := s.container("sts")
		c.Name = s.short
		cs = append(cs, c)
	}
	pod := e.createPod(t, e.podSpec("pi-restart", piSA, cs...))
	checkPodIdentityMutation(t, pod)
	pr := e.kubelet.admit(t, pod)
	first := runProbe(t, e, pr, cs[0].Name)
	if !podIdentityARN(pod.Name).MatchString(first.Arn) {
		t.Fatalf("before the restart: %+v", first)
	}

	e.srv.stop(t)
	down := time.Now()
	for _, c := range cs {
		id := runProbe(t, e, pr, c.Name, probeCommand(c)...)
		t.Logf("%-14s server down, credentials from the agent: %s", c.Name, id.AccessKeyId)
		if id.AccessKeyId != first.AccessKeyId {
			t.Errorf("%s with the server down: %+v, want access key %s", c.Name, id, first.AccessKeyId)
		}
	}
	e.srv.start(t)
	t.Logf("server was down %.1fs", time.Since(down).Seconds())
	for _, c := range cs {
		id := runProbe(t, e, pr, c.Name)
		t.Logf("%-14s after restart ARN: %s", c.Name, id.Arn)
		if id.Arn != first.Arn || id.AccessKeyId != first.AccessKeyId {
			t.Errorf("%s after the restart: %+v, want %s with %s", c.Name, id, first.Arn, first.AccessKeyId)
		}
	}
}

// testAssociationDeleted: after `aws eks delete-pod-identity-association`
// the webhook stops injecting (it lists associations every 10 s), new
// pods get nothing, and an old pod keeps its cached credentials only until
// the agent's refresh TTL, when the server answers ResourceNotFound.
func testAssociationDeleted(t *testing.T, e *env) {
	c := sdks[1].container("sts") // boto3
	pod := e.createPod(t, e.podSpec("pi-old", piSA, c))
	checkPodIdentityMutation(t, pod)
	pr := e.kubelet.admit(t, pod)
	fetched := time.Now()
	if id := runProbe(t, e, pr, "app"); !podIdentityARN(pod.Name).MatchString(id.Arn) {
		t.Fatalf("before deleting the association: %+v", id)
	}
	e.awsCLI(t, "eks", "delete-pod-identity-association", "--cluster-name", clusterName, "--association-id", e.assocID)
	if id := runProbe(t, e, pr, "app", probeCommand(c)...); id.Error != "" {
		t.Errorf("right after the deletion the agent's cache should still answer: %+v", id)
	}

	waitFor(t, "the webhook to drop the association", 30*time.Second, 500*time.Millisecond, func() (bool, error) {
		p, err := e.dryRun(piSA)
		if err != nil {
			return false, err
		}
		return envOf(p.Spec.Containers[0])["AWS_CONTAINER_CREDENTIALS_FULL_URI"] == "", fmt.Errorf("still injected")
	})
	fresh := e.createPod(t, e.podSpec("pi-new", piSA, c))
	checkNoMutation(t, fresh)
	if id := runProbe(t, e, e.kubelet.admit(t, fresh), "app"); id.Error == "" {
		t.Errorf("a new pod without the injection got credentials: %+v", id)
	}

	var last identity
	waitFor(t, "the old pod's credentials to be refused", agentTTL+20*time.Second, 2*time.Second, func() (bool, error) {
		last = runProbe(t, e, pr, "app", probeCommand(c)...)
		return last.Error != "", fmt.Errorf("still served: %+v", last)
	})
	after := time.Since(fetched)
	t.Logf("old pod refused %.1fs after its credentials were fetched (agent TTL %v): %s", after.Seconds(), agentTTL, last.Error)
	if after < agentTTL*3/4 {
		t.Errorf("refused after %v, before the agent's refresh window (%v)", after, agentTTL*3/4)
	}
	if !strings.Contains(last.Error, "No Pod Identity Association") {
		t.Errorf("error does not say the association is gone: %s", last.Error)
	}
}

// checkIPv6 fetches pr's credentials from [fd00:ec2::23]:80 inside the node
// with pr's token, as an SDK given the IPv6 URI would.
func (e *env) checkIPv6(t *testing.T, pr *podRun) {
	t.Helper()
	tok, err := os.ReadFile(filepath.Join(pr.vols["eks-pod-identity-token"], "eks-pod-identity-token"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://[fd00:ec2::23]/v1/credentials", nil)
	req.Header.Set("Authorization", string(tok))
	resp, err := e.node.Do(req)
	if err != nil {
		t.Fatalf("GET [fd00:ec2::23]: %v", err)
	}
	defer resp.Body.Close()
	var creds struct{ AccessKeyId, SecretAccessKey, Token, AccountId, Expiration string }
	if err := json.NewDecoder(resp.Body).Decode(&creds); err != nil || resp.StatusCode != http.StatusOK ||
		!strings.HasPrefix(creds.AccessKeyId, "ASIA") || creds.AccountId != account || !strings.HasSuffix(creds.Expiration, "Z") {
		t.Errorf("GET [fd00:ec2::23]: %s %v %+v", resp.Status, err, creds)
	}
}
