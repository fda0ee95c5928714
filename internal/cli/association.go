package cli

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	ekstypes "github.com/aws/aws-sdk-go-v2/service/eks/types"
	"github.com/spf13/cobra"
)

func init() { register(newAssociationCmd) }

func newAssociationCmd() *cobra.Command {
	var af awsFlags
	cmd := &cobra.Command{
		Use:     "association",
		Aliases: []string{"associations"},
		Short:   "Manage Pod Identity associations (namespace/service account → IAM role)",
		Long: `Manage Pod Identity associations, as aws eks *-pod-identity-association does,
printing the same JSON.`,
	}
	af.register(cmd)
	cmd.AddCommand(newAssociationCreateCmd(&af), newAssociationListCmd(&af), newAssociationDescribeCmd(&af),
		newAssociationUpdateCmd(&af), newAssociationDeleteCmd(&af))
	return cmd
}

// associationJSON is EKS's PodIdentityAssociation shape in the model's
// member order, as the aws CLI prints it.
type associationJSON struct {
	ClusterName        string            `json:"clusterName,omitempty"`
	Namespace          string            `json:"namespace,omitempty"`
	ServiceAccount     string            `json:"serviceAccount,omitempty"`
	RoleArn            string            `json:"roleArn,omitempty"`
	AssociationArn     string            `json:"associationArn,omitempty"`
	AssociationID      string            `json:"associationId,omitempty"`
	Tags               map[string]string `json:"tags,omitempty"`
	CreatedAt          *cliTime          `json:"createdAt,omitempty"`
	ModifiedAt         *cliTime          `json:"modifiedAt,omitempty"`
	OwnerArn           string            `json:"ownerArn,omitempty"`
	DisableSessionTags *bool             `json:"disableSessionTags,omitempty"`
	TargetRoleArn      string            `json:"targetRoleArn,omitempty"`
	ExternalID         string            `json:"externalId,omitempty"`
	Policy             string            `json:"policy,omitempty"`
}

func associationOut(a *ekstypes.PodIdentityAssociation) map[string]any {
	return map[string]any{"association": associationJSON{
		ClusterName: aws.ToString(a.ClusterName), Namespace: aws.ToString(a.Namespace), ServiceAccount: aws.ToString(a.ServiceAccount),
		RoleArn: aws.ToString(a.RoleArn), AssociationArn: aws.ToString(a.AssociationArn), AssociationID: aws.ToString(a.AssociationId),
		Tags: a.Tags, CreatedAt: newCLITime(a.CreatedAt), ModifiedAt: newCLITime(a.ModifiedAt), OwnerArn: aws.ToString(a.OwnerArn),
		DisableSessionTags: a.DisableSessionTags, TargetRoleArn: aws.ToString(a.TargetRoleArn), ExternalID: aws.ToString(a.ExternalId),
		Policy: aws.ToString(a.Policy),
	}}
}

// associationRef is the --cluster and --association-id pair of describe,
// update and delete.
type associationRef struct{ cluster, id string }

func (r *associationRef) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&r.cluster, "cluster", "", "cluster name (required)")
	cmd.Flags().StringVar(&r.id, "association-id", "", "association ID, a-… (required)")
	_ = cmd.MarkFlagRequired("cluster")
	_ = cmd.MarkFlagRequired("association-id")
}

func newAssociationCreateCmd(af *awsFlags) *cobra.Command {
	var in eks.CreatePodIdentityAssociationInput
	var cluster, namespace, serviceAccount, roleARN, targetRoleARN, policy, token string
	var disableSessionTags bool
	var tags map[string]string
	cmd := &cobra.Command{
		Use:   "create --cluster C --namespace NS --service-account SA --role-arn ARN",
		Short: "Create an association (as aws eks create-pod-identity-association)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in.ClusterName, in.Namespace, in.ServiceAccount, in.RoleArn = &cluster, &namespace, &serviceAccount, &roleARN
			if targetRoleARN != "" {
				in.TargetRoleArn = &targetRoleARN
			}
			if cmd.Flags().Changed("disable-session-tags") {
				in.DisableSessionTags = &disableSessionTags
			}
			if policy != "" {
				doc, err := policyArg(policy)
				if err != nil {
					return err
				}
				in.Policy = &doc
			}
			if token != "" {
				in.ClientRequestToken = &token
			}
			in.Tags = tags
			cfg, err := af.config(cmd.Context())
			if err != nil {
				return err
			}
			out, err := eks.NewFromConfig(cfg).CreatePodIdentityAssociation(cmd.Context(), &in)
			if err != nil {
				return apiError(err)
			}
			return printJSON(cmd, associationOut(out.Association))
		},
	}
	f := cmd.Flags()
	f.StringVar(&cluster, "cluster", "", "cluster name (required)")
	f.StringVar(&namespace, "namespace", "", "Kubernetes namespace (required)")
	f.StringVar(&serviceAccount, "service-account", "", "Kubernetes service account (required)")
	f.StringVar(&roleARN, "role-arn", "", "IAM role the pods get (required)")
	f.StringVar(&targetRoleARN, "target-role-arn", "", "role assumed from --role-arn's session; the pods get this one")
	f.BoolVar(&disableSessionTags, "disable-session-tags", false, "do not attach the six kubernetes session tags")
	f.StringVar(&policy, "policy", "", "session policy, JSON or file://path (needs --disable-session-tags)")
	f.StringVar(&token, "client-request-token", "", "idempotency token (default: a random UUID)")
	f.StringToStringVar(&tags, "tags", nil, "tags, key=value,...")
	for _, name := range []string{"cluster", "namespace", "service-account", "role-arn"} {
		_ = cmd.MarkFlagRequired(name)
	}
	return cmd
}

func newAssociationListCmd(af *awsFlags) *cobra.Command {
	var in eks.ListPodIdentityAssociationsInput
	var cluster, namespace, serviceAccount string
	var pageSize int32
	cmd := &cobra.Command{
		Use:   "list --cluster C [--namespace NS] [--service-account SA]",
		Short: "List associations, every page (as aws eks list-pod-identity-associations)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in.ClusterName = &cluster
			if namespace != "" {
				in.Namespace = &namespace
			}
			if serviceAccount != "" {
				in.ServiceAccount = &serviceAccount
			}
			if pageSize > 0 {
				in.MaxResults = &pageSize
			}
			cfg, err := af.config(cmd.Context())
			if err != nil {
				return err
			}
			list := []associationJSON{}
			p := eks.NewListPodIdentityAssociationsPaginator(eks.NewFromConfig(cfg), &in)
			for p.HasMorePages() {
				page, err := p.NextPage(cmd.Context())
				if err != nil {
					return apiError(err)
				}
				for _, a := range page.Associations {
					list = append(list, associationJSON{
						ClusterName: aws.ToString(a.ClusterName), Namespace: aws.ToString(a.Namespace), ServiceAccount: aws.ToString(a.ServiceAccount),
						AssociationArn: aws.ToString(a.AssociationArn), AssociationID: aws.ToString(a.AssociationId), OwnerArn: aws.ToString(a.OwnerArn),
					})
				}
			}
			return printJSON(cmd, map[string]any{"associations": list})
		},
	}
	f := cmd.Flags()
	f.StringVar(&cluster, "cluster", "", "cluster name (required)")
	f.StringVar(&namespace, "namespace", "", "only associations in this namespace")
	f.StringVar(&serviceAccount, "service-account", "", "only associations of this service account")
	f.Int32Var(&pageSize, "page-size", 0, "associations per request (the server's default if 0)")
	_ = cmd.MarkFlagRequired("cluster")
	return cmd
}

func newAssociationDescribeCmd(af *awsFlags) *cobra.Command {
	var ref associationRef
	cmd := &cobra.Command{
		Use:   "describe --cluster C --association-id ID",
		Short: "Describe an association (as aws eks describe-pod-identity-association)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := af.config(cmd.Context())
			if err != nil {
				return err
			}
			out, err := eks.NewFromConfig(cfg).DescribePodIdentityAssociation(cmd.Context(),
				&eks.DescribePodIdentityAssociationInput{ClusterName: &ref.cluster, AssociationId: &ref.id})
			if err != nil {
				return apiError(err)
			}
			return printJSON(cmd, associationOut(out.Association))
		},
	}
	ref.register(cmd)
	return cmd
}

func newAssociationUpdateCmd(af *awsFlags) *cobra.Command {
	var ref associationRef
	var roleARN, targetRoleARN, policy string
	var disableSessionTags bool
	cmd := &cobra.Command{
		Use:   "update --cluster C --association-id ID [--role-arn] [--target-role-arn] [--disable-session-tags[=false]] [--policy]",
		Short: "Change an association (as aws eks update-pod-identity-association); only the flags given change",
		Long: `Change an association; only the flags given change. --target-role-arn "" removes
the target role, --policy "" the session policy, --disable-session-tags=false
turns the session tags back on.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in := eks.UpdatePodIdentityAssociationInput{ClusterName: &ref.cluster, AssociationId: &ref.id}
			f := cmd.Flags()
			if f.Changed("role-arn") {
				in.RoleArn = &roleARN
			}
			if f.Changed("target-role-arn") {
				in.TargetRoleArn = &targetRoleARN
			}
			if f.Changed("disable-session-tags") {
				in.DisableSessionTags = &disableSessionTags
			}
			if f.Changed("policy") {
				doc, err := policyArg(policy)
				if err != nil {
					return err
				}
				in.Policy = &doc
			}
			cfg, err := af.config(cmd.Context())
			if err != nil {
				return err
			}
			out, err := eks.NewFromConfig(cfg).UpdatePodIdentityAssociation(cmd.Context(), &in)
			if err != nil {
				return apiError(err)
			}
			return printJSON(cmd, associationOut(out.Association))
		},
	}
	ref.register(cmd)
	f := cmd.Flags()
	f.StringVar(&roleARN, "role-arn", "", "new IAM role")
	f.StringVar(&targetRoleARN, "target-role-arn", "", `new target role ("" removes it)`)
	f.BoolVar(&disableSessionTags, "disable-session-tags", false, "disable (or with =false enable) the session tags")
	f.StringVar(&policy, "policy", "", `session policy, JSON or file://path ("" removes it)`)
	return cmd
}

func newAssociationDeleteCmd(af *awsFlags) *cobra.Command {
	var ref associationRef
	cmd := &cobra.Command{
		Use:   "delete --cluster C --association-id ID",
		Short: "Delete an association (as aws eks delete-pod-identity-association)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := af.config(cmd.Context())
			if err != nil {
				return err
			}
			out, err := eks.NewFromConfig(cfg).DeletePodIdentityAssociation(cmd.Context(),
				&eks.DeletePodIdentityAssociationInput{ClusterName: &ref.cluster, AssociationId: &ref.id})
			if err != nil {
				return apiError(err)
			}
			return printJSON(cmd, associationOut(out.Association))
		},
	}
	ref.register(cmd)
	return cmd
}
