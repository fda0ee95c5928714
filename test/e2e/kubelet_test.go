//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// kubelet plays the kubelet's part for pods bound to its node, honestly:
// it projects each service-account token volume through the TokenRequest
// API (bound to the pod, with the volume's audience and lifetime), mounts
// the files where the pod's volumeMounts say, and runs containers with
// exactly their env inside the node's network namespace. There is no
// container runtime: the "image" is the host's filesystem, with a private
// mount namespace whose /run is a fresh tmpfs (as a container's would be),
// so /var/run/secrets/... exists only for the container.
type kubelet struct {
	cs   kubernetes.Interface
	node *ns
	name string // the Node's name
	dir  string // pod volumes live here on the "host"
}

// podRun is a pod the kubelet has admitted: its volumes' host directories.
type podRun struct {
	pod  *corev1.Pod
	vols map[string]string // volume name → host directory
	home string            // the container's $HOME: empty, as in an image
}

// admit projects pod's token volumes. Only projected volumes made of
// serviceAccountToken sources are supported: the test's pods turn off the
// apiserver token (automountServiceAccountToken: false), so those are the
// webhook's.
func (k *kubelet) admit(t *testing.T, pod *corev1.Pod) *podRun {
	t.Helper()
	if pod.Spec.NodeName != k.name {
		t.Fatalf("pod %s is bound to node %q, not %q", pod.Name, pod.Spec.NodeName, k.name)
	}
	pr := &podRun{pod: pod, vols: map[string]string{}, home: filepath.Join(k.dir, pod.Name+"-home")}
	if err := os.MkdirAll(pr.home, 0o755); err != nil {
		t.Fatal(err)
	}
	k.project(t, pr)
	return pr
}

// project (re)writes every token of pr's projected volumes, as the kubelet
// does at start and on rotation.
func (k *kubelet) project(t *testing.T, pr *podRun) {
	t.Helper()
	pod := pr.pod
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil {
			t.Fatalf("pod %s volume %s: only projected volumes are supported here", pod.Name, v.Name)
		}
		dir := filepath.Join(k.dir, pod.Name+"-"+string(pod.UID), v.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		mode := os.FileMode(0o644)
		if v.Projected.DefaultMode != nil {
			mode = os.FileMode(*v.Projected.DefaultMode)
		}
		for _, src := range v.Projected.Sources {
			sat := src.ServiceAccountToken
			if sat == nil {
				t.Fatalf("pod %s volume %s: only serviceAccountToken sources are supported here", pod.Name, v.Name)
			}
			tok := k.tokenRequest(t, pod, sat.Audience, sat.ExpirationSeconds)
			// Write then rename, as the kubelet's atomic writer swaps files.
			tmp := filepath.Join(dir, "."+sat.Path+".tmp")
			if err := os.WriteFile(tmp, []byte(tok), mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(tmp, mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(dir, sat.Path)); err != nil {
				t.Fatal(err)
			}
		}
		pr.vols[v.Name] = dir
	}
}

// tokenRequest asks the apiserver for a token of the pod's service account,
// bound to the pod (name and UID), as the kubelet does for a projected
// volume. An empty audience means the apiserver's own.
func (k *kubelet) tokenRequest(t *testing.T, pod *corev1.Pod, audience string, seconds *int64) string {
	t.Helper()
	tr := &authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{
		ExpirationSeconds: seconds,
		BoundObjectRef:    &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID},
	}}
	if audience != "" {
		tr.Spec.Audiences = []string{audience}
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	out, err := k.cs.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(context.Background(), sa, tr, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for pod %s/%s (audience %q): %v", pod.Namespace, pod.Name, audience, err)
	}
	return out.Status.Token
}

// result is what a container printed.
type result struct {
	Stdout, Stderr string
	Err            error
	Took           time.Duration
}

// run runs the container's command (or, like kubectl exec, command if
// given) with exactly the container's env (plus the image's PATH and HOME),
// its volume mounts and working directory, inside the node's network
// namespace.
func (k *kubelet) run(t *testing.T, pr *podRun, container string, command ...string) result {
	t.Helper()
	var c *corev1.Container
	for i := range pr.pod.Spec.Containers {
		if pr.pod.Spec.Containers[i].Name == container {
			c = &pr.pod.Spec.Containers[i]
		}
	}
	if c == nil {
		t.Fatalf("pod %s has no container %s", pr.pod.Name, container)
	}
	if len(command) == 0 {
		command = append(append([]string{}, c.Command...), c.Args...)
	}
	if len(c.EnvFrom) > 0 {
		t.Fatalf("container %s: envFrom is not supported here", c.Name)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + pr.home}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Fatalf("container %s: env %s: valueFrom is not supported here", c.Name, e.Name)
		}
		env = append(env, e.Name+"="+e.Value)
	}

	// A private /run (tmpfs), then each mount bind-mounted read-only where
	// the pod says. /var/run is /run on the hosts this runs on.
	script := []string{"set -e", "mount -t tmpfs -o mode=0755 podid-e2e-run /run"}
	for _, m := range c.VolumeMounts {
		dir, ok := pr.vols[m.Name]
		if !ok || m.SubPath != "" {
			t.Fatalf("container %s: mount of volume %s is not supported here", c.Name, m.Name)
		}
		target := path.Clean(m.MountPath)
		if !strings.HasPrefix(target, "/var/run/") && !strings.HasPrefix(target, "/run/") {
			t.Fatalf("container %s: mount path %s is outside /var/run", c.Name, target)
		}
		script = append(script, "mkdir -p "+shq(target), "mount --bind "+shq(dir)+" "+shq(target))
		if m.ReadOnly {
			script = append(script, "mount -o remount,bind,ro "+shq(target))
		}
	}
	if c.WorkingDir != "" {
		script = append(script, "cd "+shq(c.WorkingDir))
	}
	script = append(script, `exec "$@"`)
	args := append([]string{"netns", "exec", k.node.Name, "unshare", "--mount", "--propagation", "private",
		"sh", "-c", strings.Join(script, "\n"), "container"}, command...)
	cmd := exec.Command("ip", args...)
	cmd.Env = env
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	return result{Stdout: stdout.String(), Stderr: stderr.String(), Err: err, Took: time.Since(start)}
}

// shq quotes s for sh.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (r result) String() string {
	return fmt.Sprintf("exit: %v\nstdout: %s\nstderr: %s", r.Err, r.Stdout, r.Stderr)
}
