// Command gosdk is aws-sdk-go-v2, unmodified, as a client of podid in a
// process of its own, so tests can run it inside a network namespace or as
// an end-to-end test's "container": the default credential chain, then STS
// GetCallerIdentity if "sts" is given. It prints one JSON line (Arn,
// Account, AccessKeyId, Expiration, or Error, and then exits 1), as the
// boto3 and JavaScript probes do.
//
// One deviation from a plain config.LoadDefaultConfig, needed only for IRSA
// against a custom endpoint: aws-sdk-go-v2 resolves credentials before it
// reads AWS_ENDPOINT_URL, so the web identity provider's own STS client
// would call sts.REGION.amazonaws.com. The probe hands that provider an STS
// client aimed at AWS_ENDPOINT_URL, as a Go program talking to a private STS
// has to. Pod Identity needs no such help.
package main

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]string{}
	defer func() {
		_ = json.NewEncoder(os.Stdout).Encode(out)
		if out["Error"] != "" {
			os.Exit(1)
		}
	}()
	var opts []func(*config.LoadOptions) error
	if ep := os.Getenv("AWS_ENDPOINT_URL"); ep != "" {
		opts = append(opts, config.WithWebIdentityRoleCredentialOptions(func(o *stscreds.WebIdentityRoleOptions) {
			o.Client = sts.New(sts.Options{Region: os.Getenv("AWS_REGION"), BaseEndpoint: aws.String(ep)})
		}))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		out["Error"] = err.Error()
		return
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		out["Error"] = err.Error()
		return
	}
	out["AccessKeyId"] = creds.AccessKeyID
	out["Expiration"] = creds.Expires.UTC().Format(time.RFC3339)
	if len(os.Args) > 1 && os.Args[1] == "sts" {
		id, err := sts.NewFromConfig(cfg).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			out["Error"] = err.Error()
			return
		}
		out["Arn"], out["Account"] = aws.ToString(id.Arn), aws.ToString(id.Account)
	}
}
