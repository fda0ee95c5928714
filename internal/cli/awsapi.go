package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/smithy-go"
	"github.com/spf13/cobra"
)

// defaultRegion is used when neither a flag, the environment nor the
// profile names a region.
const defaultRegion = "us-east-1"

// awsFlags are the flags every admin verb shares. Like the aws CLI, the
// verbs sign with the standard credential chain: environment keys,
// AWS_PROFILE / --profile in the shared config and credentials files, and so on.
type awsFlags struct {
	endpoint, profile, region string
}

func (o *awsFlags) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&o.endpoint, "endpoint-url", "", "podid server URL (default: $AWS_ENDPOINT_URL)")
	f.StringVar(&o.profile, "profile", "", "profile of the shared config and credentials files (default: $AWS_PROFILE)")
	f.StringVar(&o.region, "region", "", "region to sign for (default: $AWS_REGION, the profile's, else "+defaultRegion+")")
}

// config loads the SDK configuration aimed at the podid server. It refuses
// to run without an endpoint, so no verb ever reaches a real AWS hostname.
func (o *awsFlags) config(ctx context.Context) (aws.Config, error) {
	endpoint := o.endpoint
	if endpoint == "" {
		endpoint = os.Getenv("AWS_ENDPOINT_URL")
	}
	if endpoint == "" {
		return aws.Config{}, errors.New("no server: give --endpoint-url or set AWS_ENDPOINT_URL")
	}
	opts := []func(*config.LoadOptions) error{
		config.WithBaseEndpoint(strings.TrimRight(endpoint, "/")),
		config.WithDefaultRegion(defaultRegion),
	}
	if o.profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(o.profile))
	}
	if o.region != "" {
		opts = append(opts, config.WithRegion(o.region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("AWS configuration: %w", err)
	}
	return cfg, nil
}

// callJSON makes a SigV4-signed restJson call (for podid's own operations,
// which have no SDK client) and decodes the answer into out.
func callJSON(ctx context.Context, cfg aws.Config, service, operation, method, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, aws.ToString(cfg.BaseEndpoint)+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("credentials: %w", err)
	}
	sum := sha256.Sum256(body)
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), service, cfg.Region, time.Now()); err != nil {
		return fmt.Errorf("sign: %w", err)
	}
	var client interface {
		Do(*http.Request) (*http.Response, error)
	} = http.DefaultClient
	if cfg.HTTPClient != nil {
		client = cfg.HTTPClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Type    string `json:"__type"`
			Message string `json:"message"`
		}
		_ = json.Unmarshal(b, &e)
		code := resp.Header.Get("X-Amzn-ErrorType")
		if code == "" {
			code = e.Type
		}
		if code == "" {
			code = http.StatusText(resp.StatusCode)
		}
		code, _, _ = strings.Cut(code, ":")
		return &smithy.OperationError{ServiceID: service, OperationName: operation,
			Err: &smithy.GenericAPIError{Code: code, Message: e.Message}}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s: decode response: %w", operation, err)
	}
	return nil
}

// apiError rewrites an SDK error as the aws CLI prints it.
func apiError(err error) error {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return err
	}
	e := &awsCLIError{code: ae.ErrorCode(), op: "an", message: ae.ErrorMessage()}
	var oe *smithy.OperationError
	if errors.As(err, &oe) {
		e.op = "the " + oe.OperationName
	}
	return e
}

// awsCLIError reads as the aws CLI's error line, so scripts that match it
// work with podid too.
type awsCLIError struct{ code, op, message string }

func (e *awsCLIError) Error() string {
	return "An error occurred (" + e.code + ") when calling " + e.op + " operation: " + e.message
}

// printJSON writes v as the aws CLI does: four-space indent, no escaping.
func printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "    ")
	return enc.Encode(v)
}

// cliTime is a timestamp as the aws CLI prints it (Python's isoformat of a
// parsed timestamp): seconds, microseconds only when not zero, and the offset.
type cliTime time.Time

func newCLITime(t *time.Time) *cliTime {
	if t == nil || t.IsZero() {
		return nil
	}
	c := cliTime(*t)
	return &c
}

func (c cliTime) MarshalJSON() ([]byte, error) {
	t := time.Time(c).Round(time.Microsecond).UTC()
	layout := "2006-01-02T15:04:05"
	if t.Nanosecond() != 0 {
		layout += ".000000"
	}
	return []byte(`"` + t.Format(layout) + `+00:00"`), nil
}

// policyArg reads a policy given inline or as file://path, as the aws CLI
// accepts parameters.
func policyArg(v string) (string, error) {
	if path, ok := strings.CutPrefix(v, "file://"); ok {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		return string(b), nil
	}
	return v, nil
}
