package cli

import (
	"github.com/spf13/cobra"

	"github.com/podid/podid/internal/webhook"
)

func init() { register(newWebhookCmd) }

func newWebhookCmd() *cobra.Command {
	var cfg webhook.Config
	cmd := &cobra.Command{
		Use:   "webhook",
		Short: "Run the mutating admission webhook that injects IRSA and Pod Identity into pods",
		Long: `Run the mutating admission webhook. Pods whose service account is annotated
eks.amazonaws.com/role-arn get IRSA (web identity); pods whose namespace and service
account have a Pod Identity association on --cluster (listed from --server, or read
from --associations-file) get Pod Identity, which wins when both apply.

Serves /mutate, /healthz, /readyz and /metrics over TLS on --listen.`,
		Example: `  podid webhook --listen :8443 --cluster prod --server https://podid.example:7443 --tls-self-signed
  podid webhook --cluster dev --associations-file /etc/podid/identities.json \
      --tls-cert /tls/tls.crt --tls-key /tls/tls.key --region eu-west-1`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger("info")
			if err != nil {
				return err
			}
			cfg.Logger = log
			w, err := webhook.New(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			return w.Serve(cmd.Context())
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", ":8443", "address to serve HTTPS on (host:port)")
	f.StringVar(&cfg.Cluster, "cluster", "", "cluster name whose Pod Identity associations apply (needed with --server)")
	f.StringSliceVar(&cfg.Servers, "server", nil, "podid server URL to list Pod Identity associations from (EKS API, default AWS credential chain); several (comma-separated or repeated) are replicas, failed over between")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster configuration)")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "serving certificate (PEM), reloaded when it changes")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "private key for --tls-cert (PEM), reloaded when it changes")
	f.BoolVar(&cfg.TLSSelfSigned, "tls-self-signed", false, "create a CA and serving certificate at start and put the CA in the caBundle of MutatingWebhookConfiguration "+webhook.DefaultWebhookConfigName)
	f.StringVar(&cfg.Region, "region", "", "inject AWS_REGION and AWS_DEFAULT_REGION (never over the pod's own)")
	f.BoolVar(&cfg.IPv6, "ipv6", false, "point Pod Identity pods at http://[fd00:ec2::23]/v1/credentials")
	f.StringVar(&cfg.AssociationsFile, "associations-file", "", `Pod Identity associations file, {"identities":[{"namespace":…,"serviceAccount":…}]}, reloaded when it changes`)
	f.StringVar(&cfg.AnnotationPrefix, "annotation-prefix", webhook.DefaultAnnotationPrefix, "domain of the service account and pod annotations (role-arn, audience, …)")
	cmd.MarkFlagsRequiredTogether("tls-cert", "tls-key")
	cmd.MarkFlagsMutuallyExclusive("tls-self-signed", "tls-cert")
	return cmd
}
