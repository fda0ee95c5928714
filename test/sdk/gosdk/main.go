// Command gosdk is aws-sdk-go-v2, unmodified, as a client of the podid agent
// in a process of its own (so tests can run it inside a network namespace):
// the default credential chain, then STS GetCallerIdentity if "sts" is
// given. It prints one JSON line, as the botocore and JS runners do.
package main

import (
	"context"
	"encoding/json"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]string{}
	defer func() { _ = json.NewEncoder(os.Stdout).Encode(out) }()
	cfg, err := config.LoadDefaultConfig(ctx)
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
