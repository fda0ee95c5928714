package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
	"github.com/spf13/cobra"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	podideks "github.com/podid/podid/internal/eks"
)

func init() { register(newClusterCmd) }

func newClusterCmd() *cobra.Command {
	var af awsFlags
	cmd := &cobra.Command{
		Use:   "cluster",
		Short: "Register Kubernetes clusters with the server, list, describe and delete them",
	}
	af.register(cmd)
	cmd.AddCommand(newClusterRegisterCmd(&af), newClusterListCmd(&af), newClusterDescribeCmd(&af), newClusterDeleteCmd(&af))
	return cmd
}

func newClusterRegisterCmd(af *awsFlags) *cobra.Command {
	var in podideks.RegisterClusterInput
	var jwksFile, kubeconfig string
	cmd := &cobra.Command{
		Use:   "register --name NAME [--issuer URL] (--jwks-file F | --jwks-url U | --discovery | --kubeconfig F) [--token-review]",
		Short: "Register a cluster: its token issuer and where its signing keys come from",
		Long: `Register a cluster with the server so that its service-account tokens can be
exchanged for credentials. Give the issuer (--service-account-issuer of the
apiserver) and one key source: a JWKS file, a JWKS URL, the issuer's OIDC
discovery document, or a kubeconfig with which the server reads the apiserver's
/openid/v1/jwks (and, with --token-review, asks it whether a token's pod still
exists). The kubeconfig is flattened: certificates and keys are sent inline.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if jwksFile != "" {
				b, err := os.ReadFile(jwksFile)
				if err != nil {
					return err
				}
				if !json.Valid(b) {
					return fmt.Errorf("--jwks-file %s is not JSON", jwksFile)
				}
				in.JWKS = b
			}
			if kubeconfig != "" {
				b, err := flattenKubeconfig(kubeconfig)
				if err != nil {
					return err
				}
				in.Kubeconfig = string(b)
				if in.Issuer == "" {
					if in.Issuer, err = discoverIssuer(cmd.Context(), b); err != nil {
						return err
					}
				}
			}
			if in.Issuer == "" {
				return errors.New("give --issuer (it can be left out with --kubeconfig)")
			}
			cfg, err := af.config(cmd.Context())
			if err != nil {
				return err
			}
			var out struct {
				Cluster podideks.ClusterOut `json:"cluster"`
			}
			if err := callJSON(cmd.Context(), cfg, "eks", "RegisterCluster", http.MethodPost, "/podid/clusters", in, &out); err != nil {
				return apiError(err)
			}
			c := out.Cluster
			created := time.UnixMilli(int64(math.Round(c.CreatedAt * 1000)))
			return printJSON(cmd, clusterOut(&ekstypes.Cluster{Name: &c.Name, Arn: &c.Arn, CreatedAt: &created, Status: ekstypes.ClusterStatus(c.Status),
				Identity: &ekstypes.Identity{Oidc: &ekstypes.OIDC{Issuer: &c.Identity.OIDC.Issuer}}, Tags: c.Tags}))
		},
	}
	f := cmd.Flags()
	f.StringVar(&in.Name, "name", "", "cluster name (required)")
	f.StringVar(&in.Issuer, "issuer", "", "the cluster's service-account token issuer URL (default with --kubeconfig: the apiserver's discovery document says)")
	f.StringVar(&jwksFile, "jwks-file", "", "JSON Web Key Set file with the cluster's public signing keys")
	f.StringVar(&in.JWKSURL, "jwks-url", "", "URL the server fetches the JSON Web Key Set from")
	f.BoolVar(&in.Discovery, "discovery", false, "find the keys through the issuer's /.well-known/openid-configuration")
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig the server uses to read the apiserver's keys (and review tokens)")
	f.BoolVar(&in.TokenReview, "token-review", false, "also ask the apiserver (TokenReview) whether a token is still valid; needs --kubeconfig")
	f.StringToStringVar(&in.Tags, "tags", nil, "tags, key=value,...")
	_ = cmd.MarkFlagRequired("name")
	cmd.MarkFlagsMutuallyExclusive("jwks-file", "jwks-url", "discovery")
	cmd.MarkFlagsOneRequired("jwks-file", "jwks-url", "discovery", "kubeconfig")
	return cmd
}

// discoverIssuer asks the apiserver of a kubeconfig for its
// service-account issuer (its OIDC discovery document).
func discoverIssuer(ctx context.Context, kubeconfig []byte) (string, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return "", fmt.Errorf("--kubeconfig: %w", err)
	}
	client, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return "", fmt.Errorf("--kubeconfig: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(cfg.Host, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("no --issuer, and the apiserver's discovery document cannot be read: %w", err)
	}
	defer resp.Body.Close()
	var doc struct {
		Issuer string `json:"issuer"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil || resp.StatusCode != http.StatusOK || doc.Issuer == "" {
		return "", fmt.Errorf("no --issuer, and the apiserver's discovery document names none (HTTP %d, %v)", resp.StatusCode, err)
	}
	return doc.Issuer, nil
}

// flattenKubeconfig reduces a kubeconfig to its current context with every
// referenced file inlined, so the server can use it.
func flattenKubeconfig(path string) ([]byte, error) {
	c, err := clientcmd.LoadFromFile(path)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	if err := clientcmdapi.MinifyConfig(c); err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	if err := clientcmdapi.FlattenConfig(c); err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	return clientcmd.Write(*c)
}

func newClusterListCmd(af *awsFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List registered clusters (as aws eks list-clusters)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := af.config(cmd.Context())
			if err != nil {
				return err
			}
			names := []string{}
			p := eks.NewListClustersPaginator(eks.NewFromConfig(cfg), &eks.ListClustersInput{})
			for p.HasMorePages() {
				page, err := p.NextPage(cmd.Context())
				if err != nil {
					return apiError(err)
				}
				names = append(names, page.Clusters...)
			}
			return printJSON(cmd, map[string]any{"clusters": names})
		},
	}
}

// clusterJSON is the part of EKS's Cluster shape podid fills, in the
// model's member order, as the aws CLI prints it.
type clusterJSON struct {
	Name      string               `json:"name,omitempty"`
	Arn       string               `json:"arn,omitempty"`
	CreatedAt *cliTime             `json:"createdAt,omitempty"`
	Identity  *clusterIdentityJSON `json:"identity,omitempty"`
	Status    string               `json:"status,omitempty"`
	Tags      map[string]string    `json:"tags,omitempty"`
}

type clusterIdentityJSON struct {
	OIDC struct {
		Issuer string `json:"issuer,omitempty"`
	} `json:"oidc"`
}

func clusterOut(c *ekstypes.Cluster) map[string]any {
	out := clusterJSON{Name: aws.ToString(c.Name), Arn: aws.ToString(c.Arn), CreatedAt: newCLITime(c.CreatedAt), Status: string(c.Status), Tags: c.Tags}
	if c.Identity != nil && c.Identity.Oidc != nil {
		out.Identity = &clusterIdentityJSON{}
		out.Identity.OIDC.Issuer = aws.ToString(c.Identity.Oidc.Issuer)
	}
	return map[string]any{"cluster": out}
}

func newClusterDescribeCmd(af *awsFlags) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "describe --name NAME",
		Short: "Describe a cluster (as aws eks describe-cluster)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := af.config(cmd.Context())
			if err != nil {
				return err
			}
			out, err := eks.NewFromConfig(cfg).DescribeCluster(cmd.Context(), &eks.DescribeClusterInput{Name: &name})
			if err != nil {
				return apiError(err)
			}
			return printJSON(cmd, clusterOut(out.Cluster))
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "cluster name (required)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newClusterDeleteCmd(af *awsFlags) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "delete --name NAME",
		Short: "Deregister a cluster (as aws eks delete-cluster)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := af.config(cmd.Context())
			if err != nil {
				return err
			}
			out, err := eks.NewFromConfig(cfg).DeleteCluster(cmd.Context(), &eks.DeleteClusterInput{Name: &name})
			if err != nil {
				return apiError(err)
			}
			return printJSON(cmd, clusterOut(out.Cluster))
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "cluster name (required)")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}
