package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/spf13/cobra"
)

func init() { register(newRoleCmd) }

func newRoleCmd() *cobra.Command {
	var af awsFlags
	cmd := &cobra.Command{
		Use:   "role",
		Short: "Shortcuts for IAM roles that pods assume",
	}
	af.register(cmd)
	cmd.AddCommand(newRoleCreateCmd(&af))
	return cmd
}

// podIdentityService is the principal EKS Auth assumes roles as.
const podIdentityService = "pods.eks.amazonaws.com"

type roleCreateFlags struct {
	name, description              string
	podIdentity                    bool
	providerARN, namespace, sa     string
	policyARNs                     []string
	inlinePolicy, inlinePolicyName string
}

type trustStatement struct {
	Effect    string
	Principal map[string]string
	Action    any
	Condition map[string]map[string]string `json:",omitempty"`
}

// trustPolicy writes the trust policy the flags ask for.
func (o *roleCreateFlags) trustPolicy() (string, error) {
	var stmt trustStatement
	switch {
	case o.podIdentity && o.providerARN != "":
		return "", errors.New("give --pod-identity or --irsa-provider-arn, not both")
	case o.podIdentity:
		stmt = trustStatement{Effect: "Allow", Principal: map[string]string{"Service": podIdentityService},
			Action: []string{"sts:AssumeRole", "sts:TagSession"}}
	case o.providerARN != "":
		_, host, ok := strings.Cut(o.providerARN, ":oidc-provider/")
		if !ok || host == "" {
			return "", fmt.Errorf("--irsa-provider-arn %q is not an OIDC provider ARN (arn:aws:iam::ACCOUNT:oidc-provider/HOST)", o.providerARN)
		}
		if o.namespace == "" || o.sa == "" {
			return "", errors.New("--irsa-provider-arn needs --namespace and --service-account")
		}
		stmt = trustStatement{Effect: "Allow", Principal: map[string]string{"Federated": o.providerARN},
			Action: "sts:AssumeRoleWithWebIdentity",
			Condition: map[string]map[string]string{"StringEquals": {
				host + ":sub": "system:serviceaccount:" + o.namespace + ":" + o.sa,
				host + ":aud": "sts.amazonaws.com",
			}}}
	default:
		return "", errors.New("give --pod-identity or --irsa-provider-arn with --namespace and --service-account")
	}
	b, err := json.Marshal(struct {
		Version   string
		Statement []trustStatement
	}{"2012-10-17", []trustStatement{stmt}})
	return string(b), err
}

func newRoleCreateCmd(af *awsFlags) *cobra.Command {
	var o roleCreateFlags
	cmd := &cobra.Command{
		Use:   "create --name R (--pod-identity | --irsa-provider-arn ARN --namespace NS --service-account SA) [--policy-arn ARN]... [--inline-policy JSON]",
		Short: "Create a role with the trust policy Pod Identity or IRSA needs, and attach its permissions",
		Long: `Create an IAM role whose trust policy lets Pod Identity (the service principal
pods.eks.amazonaws.com, with sts:AssumeRole and sts:TagSession) or IRSA (the
cluster's OIDC provider, for one namespace/service account and the audience
sts.amazonaws.com) assume it, then attach managed policies and an inline policy.
Prints the role as aws iam create-role does.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			trust, err := o.trustPolicy()
			if err != nil {
				return err
			}
			inline := ""
			if o.inlinePolicy != "" {
				if inline, err = policyArg(o.inlinePolicy); err != nil {
					return err
				}
			}
			cfg, err := af.config(cmd.Context())
			if err != nil {
				return err
			}
			ctx, client := cmd.Context(), iam.NewFromConfig(cfg)
			in := &iam.CreateRoleInput{RoleName: &o.name, AssumeRolePolicyDocument: &trust}
			if o.description != "" {
				in.Description = &o.description
			}
			out, err := client.CreateRole(ctx, in)
			if err != nil {
				return apiError(err)
			}
			for _, arn := range o.policyARNs {
				if _, err := client.AttachRolePolicy(ctx, &iam.AttachRolePolicyInput{RoleName: &o.name, PolicyArn: aws.String(arn)}); err != nil {
					return fmt.Errorf("role %s created, but: %w", o.name, apiError(err))
				}
			}
			if inline != "" {
				if _, err := client.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: &o.name, PolicyName: &o.inlinePolicyName, PolicyDocument: &inline}); err != nil {
					return fmt.Errorf("role %s created, but: %w", o.name, apiError(err))
				}
			}
			return printJSON(cmd, map[string]any{"Role": roleOut(out.Role)})
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.name, "name", "", "role name (required)")
	f.StringVar(&o.description, "description", "", "role description")
	f.BoolVar(&o.podIdentity, "pod-identity", false, "trust EKS Pod Identity (pods.eks.amazonaws.com)")
	f.StringVar(&o.providerARN, "irsa-provider-arn", "", "trust this IAM OIDC provider (IRSA)")
	f.StringVar(&o.namespace, "namespace", "", "IRSA: the service account's namespace")
	f.StringVar(&o.sa, "service-account", "", "IRSA: the service account")
	f.StringArrayVar(&o.policyARNs, "policy-arn", nil, "managed policy to attach (repeatable)")
	f.StringVar(&o.inlinePolicy, "inline-policy", "", "inline permission policy, JSON or file://path")
	f.StringVar(&o.inlinePolicyName, "inline-policy-name", "inline", "name of the inline policy")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

// roleJSON is IAM's Role shape in the model's member order, as the aws CLI
// prints it: the trust policy decoded into JSON.
type roleJSON struct {
	Path                     string          `json:"Path,omitempty"`
	RoleName                 string          `json:"RoleName,omitempty"`
	RoleID                   string          `json:"RoleId,omitempty"`
	Arn                      string          `json:"Arn,omitempty"`
	CreateDate               *cliTime        `json:"CreateDate,omitempty"`
	AssumeRolePolicyDocument json.RawMessage `json:"AssumeRolePolicyDocument,omitempty"`
	Description              string          `json:"Description,omitempty"`
	MaxSessionDuration       *int32          `json:"MaxSessionDuration,omitempty"`
	Tags                     []iamTagJSON    `json:"Tags,omitempty"`
}

type iamTagJSON struct {
	Key   string `json:"Key"`
	Value string `json:"Value"`
}

func roleOut(r *iamtypes.Role) roleJSON {
	out := roleJSON{Path: aws.ToString(r.Path), RoleName: aws.ToString(r.RoleName), RoleID: aws.ToString(r.RoleId), Arn: aws.ToString(r.Arn),
		CreateDate: newCLITime(r.CreateDate), Description: aws.ToString(r.Description), MaxSessionDuration: r.MaxSessionDuration}
	if doc := aws.ToString(r.AssumeRolePolicyDocument); doc != "" {
		if dec, err := url.QueryUnescape(doc); err == nil && json.Valid([]byte(dec)) {
			out.AssumeRolePolicyDocument = json.RawMessage(dec)
		} else {
			out.AssumeRolePolicyDocument, _ = json.Marshal(doc)
		}
	}
	for _, t := range r.Tags {
		out.Tags = append(out.Tags, iamTagJSON{Key: aws.ToString(t.Key), Value: aws.ToString(t.Value)})
	}
	return out
}
