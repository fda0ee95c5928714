package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

// A kubeconfig that names its certificate files (relative to itself) and
// has several contexts reaches the server as the current context alone,
// every file inlined.
func TestFlattenKubeconfig(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{"ca.crt": "CA-PEM", "admin.crt": "CERT-PEM", "admin.key": "KEY-PEM"}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	kubeconfig := `apiVersion: v1
kind: Config
clusters:
- name: here
  cluster: {server: "https://127.0.0.1:6443", certificate-authority: ca.crt}
- name: elsewhere
  cluster: {server: "https://10.0.0.1:6443"}
users:
- name: admin
  user: {client-certificate: admin.crt, client-key: admin.key}
- name: other
  user: {token: other-secret}
contexts:
- name: here
  context: {cluster: here, user: admin}
- name: elsewhere
  context: {cluster: elsewhere, user: other}
current-context: here
`
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := flattenKubeconfig(path)
	if err != nil {
		t.Fatal(err)
	}
	if s := string(out); strings.Contains(s, dir) || strings.Contains(s, "elsewhere") || strings.Contains(s, "other-secret") {
		t.Errorf("flattened kubeconfig keeps a path or another context:\n%s", s)
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(out)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Host != "https://127.0.0.1:6443" || string(cfg.CAData) != "CA-PEM" || string(cfg.CertData) != "CERT-PEM" || string(cfg.KeyData) != "KEY-PEM" {
		t.Errorf("flattened: host %s CA %q cert %q key %q", cfg.Host, cfg.CAData, cfg.CertData, cfg.KeyData)
	}
}
