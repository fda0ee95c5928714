package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/podid/podid/internal/oidc"
)

func init() { register(newOIDCCmd) }

func newOIDCCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "oidc",
		Short: "OIDC issuer documents for IRSA on clusters outside EKS",
	}
	cmd.AddCommand(newOIDCPublishCmd())
	return cmd
}

// newOIDCPublishCmd writes the issuer's discovery document and key set as
// static files: the self-managed IRSA recipe, where AWS IAM (or any STS)
// fetches them from a public HTTPS host (an S3 bucket, a CDN, a web server).
func newOIDCPublishCmd() *cobra.Command {
	var sf storeFlags
	var cluster, out, jwksFile string
	cmd := &cobra.Command{
		Use:   "publish --cluster NAME --out DIR",
		Short: "Write a cluster's /.well-known/openid-configuration and keys.json for static HTTPS hosting",
		Long: `Write DIR/.well-known/openid-configuration and DIR/keys.json for a registered
cluster, from the issuer and the key set in the server's store (or --jwks-file).
Upload DIR so that it is served at the cluster's issuer URL (DIR is the root of
the issuer's path), then create the IAM OIDC provider for that URL. The
apiserver must issue tokens with that issuer (--service-account-issuer).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st, err := sf.open(cmd.Context())
			if err != nil {
				return err
			}
			defer st.Close()
			c, err := st.GetCluster(cmd.Context(), cluster)
			if err != nil {
				return fmt.Errorf("cluster %s: %w", cluster, err)
			}
			raw := c.JWKS
			if jwksFile != "" {
				if raw, err = os.ReadFile(jwksFile); err != nil {
					return err
				}
			}
			if len(raw) == 0 {
				return fmt.Errorf("cluster %s has no stored key set (its keys come from %s): give --jwks-file", cluster, c.KeySource)
			}
			docs, err := oidc.IssuerDocuments(c.Issuer, raw)
			if err != nil {
				return err
			}
			for name, b := range docs {
				p := filepath.Join(out, filepath.FromSlash(name))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					return err
				}
				if err := os.WriteFile(p, b, 0o644); err != nil {
					return err
				}
			}
			if !strings.HasPrefix(c.Issuer, "https://") {
				fmt.Fprintf(cmd.ErrOrStderr(), "warning: issuer %s is not https://; AWS IAM accepts only HTTPS OIDC providers\n", c.Issuer)
			}
			return printJSON(cmd, map[string]any{"issuer": c.Issuer, "out": out,
				"files": []string{".well-known/openid-configuration", "keys.json"}})
		},
	}
	sf.add(cmd)
	f := cmd.Flags()
	f.StringVar(&cluster, "cluster", "", "registered cluster name (required)")
	f.StringVar(&out, "out", "", "directory to write into (required)")
	f.StringVar(&jwksFile, "jwks-file", "", "key set to publish instead of the stored one")
	_ = cmd.MarkFlagRequired("cluster")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}
