package cli

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/spf13/cobra"

	"github.com/podid/podid/internal/upstream"
)

func init() { register(newTrustPolicyCmd) }

// newTrustPolicyCmd prints the trust policy a role needs so that a server
// running with --upstream aws may assume it for a cluster's pods.
func newTrustPolicyCmd() *cobra.Command {
	var cluster, roleARN, serverRoleARN, endpoint, profile, region string
	var namespaces []string
	cmd := &cobra.Command{
		Use:   "trust-policy",
		Short: "Print the trust policy an AWS role needs for podid server --upstream aws",
		Long: `Print the trust policy an AWS role needs so that a podid server running with
--upstream aws can assume it for a cluster's pods. The principal is the
server's own AWS identity: run this with the server's credentials (the
standard chain; AWS_ENDPOINT_URL_STS or --endpoint-url for the STS endpoint),
or give --server-role-arn.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cluster == "" {
				return fmt.Errorf("--cluster is required")
			}
			principal := serverRoleARN
			if principal == "" {
				opts := []func(*config.LoadOptions) error{config.WithDefaultRegion(defaultRegion)}
				if profile != "" {
					opts = append(opts, config.WithSharedConfigProfile(profile))
				}
				if region != "" {
					opts = append(opts, config.WithRegion(region))
				}
				if endpoint != "" {
					opts = append(opts, config.WithBaseEndpoint(strings.TrimRight(endpoint, "/")))
				}
				cfg, err := config.LoadDefaultConfig(cmd.Context(), opts...)
				if err != nil {
					return fmt.Errorf("AWS configuration: %w", err)
				}
				out, err := sts.NewFromConfig(cfg).GetCallerIdentity(cmd.Context(), &sts.GetCallerIdentityInput{})
				if err != nil {
					return fmt.Errorf("the server's identity (sts:GetCallerIdentity): %w", err)
				}
				principal = upstream.PrincipalARN(*out.Arn)
			}
			b, err := json.MarshalIndent(TrustPolicy(principal, cluster, namespaces), "", "  ")
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(b))
			if roleARN != "" {
				name := roleARN[strings.LastIndex(roleARN, "/")+1:]
				fmt.Fprintf(cmd.ErrOrStderr(), "apply with: aws iam update-assume-role-policy --role-name %s --policy-document file://trust.json\n", name)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cluster, "cluster", "", "cluster name (the eks-cluster-name session tag)")
	f.StringSliceVar(&namespaces, "namespace", nil, "namespaces whose pods may use the role (default: any, but the tag must be present)")
	f.StringVar(&roleARN, "role-arn", "", "the role being configured (prints the command that applies the policy)")
	f.StringVar(&serverRoleARN, "server-role-arn", "", "the server's own role ARN (default: asked from STS with the standard credential chain)")
	f.StringVar(&endpoint, "endpoint-url", "", "STS endpoint (default: $AWS_ENDPOINT_URL_STS, $AWS_ENDPOINT_URL, else the regional AWS endpoint)")
	f.StringVar(&profile, "profile", "", "profile of the shared config and credentials files (default: $AWS_PROFILE)")
	f.StringVar(&region, "region", "", "region (default: $AWS_REGION, the profile's, else "+defaultRegion+")")
	return cmd
}

// TrustPolicy is the trust policy of a role that podid's server (principal)
// assumes for cluster's pods in upstream aws mode: sts:AssumeRole with the
// session tags (sts:TagSession) and the source identity
// (sts:SetSourceIdentity), only when the request tags name the cluster and
// one of namespaces (any namespace when none is given).
func TrustPolicy(principal, cluster string, namespaces []string) map[string]any {
	cond := map[string]any{
		"StringEquals": map[string]any{"aws:RequestTag/eks-cluster-name": cluster},
	}
	if len(namespaces) > 0 {
		cond["StringEquals"].(map[string]any)["aws:RequestTag/kubernetes-namespace"] = namespaces
	} else {
		// Requires the tag: associations with disableSessionTags are refused.
		cond["StringLike"] = map[string]any{"aws:RequestTag/kubernetes-namespace": "*"}
	}
	return map[string]any{
		"Version": "2012-10-17",
		"Statement": []any{map[string]any{
			"Sid":       "PodidUpstreamAssume",
			"Effect":    "Allow",
			"Principal": map[string]any{"AWS": principal},
			"Action":    []string{"sts:AssumeRole", "sts:TagSession", "sts:SetSourceIdentity"},
			"Condition": cond,
		}},
	}
}
