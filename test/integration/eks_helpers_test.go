package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	podideks "github.com/podid/podid/internal/eks"
	"github.com/podid/podid/internal/server/servertest"
)

const podAudience = "pods.eks.amazonaws.com"

func eksClient(inst *servertest.Instance) *eks.Client {
	return eks.NewFromConfig(awsConfig(inst, inst.AccessKeyID, inst.SecretAccessKey, ""))
}

func adminCreds(inst *servertest.Instance) aws.Credentials {
	return aws.Credentials{AccessKeyID: inst.AccessKeyID, SecretAccessKey: inst.SecretAccessKey}
}

// restAnswer is a restJson answer read off the wire.
type restAnswer struct {
	status int
	code   string // X-Amzn-ErrorType, else the body's __type
	body   []byte
}

// signedJSON sends body (a string is sent as is, anything else as JSON)
// signed for service; with zero credentials it goes unsigned.
func signedJSON(t *testing.T, inst *servertest.Instance, c aws.Credentials, service, method, path string, body any) restAnswer {
	t.Helper()
	raw, ok := body.(string)
	if !ok {
		raw = mustJSON(body)
	}
	req, err := http.NewRequestWithContext(ctx(t), method, inst.URL+path, strings.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.AccessKeyID != "" {
		sum := sha256.Sum256([]byte(raw))
		if err := v4.NewSigner().SignHTTP(ctx(t), c, req, hex.EncodeToString(sum[:]), service, region, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	a := restAnswer{status: resp.StatusCode, code: resp.Header.Get("X-Amzn-ErrorType"), body: b}
	if a.code == "" && resp.StatusCode >= 300 {
		var e struct {
			Type string `json:"__type"`
		}
		_ = json.Unmarshal(b, &e)
		a.code = e.Type
	}
	return a
}

// registerCluster registers a cluster through podid's own API.
func registerCluster(t *testing.T, inst *servertest.Instance, in podideks.RegisterClusterInput) {
	t.Helper()
	if a := signedJSON(t, inst, adminCreds(inst), "eks", http.MethodPost, "/podid/clusters", in); a.status != http.StatusOK {
		t.Fatalf("register cluster %s: HTTP %d %s: %s", in.Name, a.status, a.code, a.body)
	}
}

func jwksOf(keys ...jose.JSONWebKey) json.RawMessage {
	return json.RawMessage(mustJSON(jose.JSONWebKeySet{Keys: keys}))
}

// podIdentityTrust is the trust policy EKS documents for Pod Identity roles.
func podIdentityTrust(conditions ...map[string]any) map[string]any {
	s := map[string]any{"Effect": "Allow", "Principal": map[string]any{"Service": podAudience}, "Action": []string{"sts:AssumeRole", "sts:TagSession"}}
	if len(conditions) > 0 {
		s["Condition"] = conditions[0]
	}
	return map[string]any{"Version": "2012-10-17", "Statement": []any{s}}
}

// roleSession creates a role any principal of the account may assume, with
// the given identity policy (none if ""), and returns a session's keys.
func roleSession(t *testing.T, inst *servertest.Instance, name, identityPolicy string) aws.Credentials {
	t.Helper()
	ic, sc := adminClients(inst)
	arn := createRole(t, ic, name, trustAccount())
	if identityPolicy != "" {
		if _, err := ic.PutRolePolicy(ctx(t), &iam.PutRolePolicyInput{RoleName: &name, PolicyName: aws.String("p"), PolicyDocument: &identityPolicy}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := sc.AssumeRole(ctx(t), &sts.AssumeRoleInput{RoleArn: &arn, RoleSessionName: aws.String("node-1")})
	if err != nil {
		t.Fatalf("AssumeRole %s: %v", name, err)
	}
	c := out.Credentials
	return aws.Credentials{AccessKeyID: aws.ToString(c.AccessKeyId), SecretAccessKey: aws.ToString(c.SecretAccessKey), SessionToken: aws.ToString(c.SessionToken)}
}

// podCall is one AssumeRoleForPodIdentity made through botocore.
type podCall struct {
	Cluster string          `json:"cluster"`
	Token   string          `json:"token"`
	Creds   aws.Credentials `json:"-"`
	Key     string          `json:"key"`
	Secret  string          `json:"secret"`
	Session string          `json:"session"`
}

// podResult is botocore's answer: the parsed response, or the error's code
// and HTTP status.
type podResult struct {
	Response map[string]any `json:"response"`
	Code     string         `json:"code"`
	Status   int            `json:"status"`
	Message  string         `json:"message"`
}

// botoScript runs every call with botocore's eks-auth client in one Python
// process and prints the answers as JSON, the timestamp as the CLI shows it.
const botoScript = `
import json, sys, boto3, botocore.exceptions
req = json.load(sys.stdin)
out = []
for c in req["calls"]:
    client = boto3.client("eks-auth", region_name=req["region"], endpoint_url=req["endpoint"],
        aws_access_key_id=c["key"], aws_secret_access_key=c["secret"], aws_session_token=c["session"] or None,
        config=botocore.config.Config(retries={"total_max_attempts": 1}))
    try:
        r = client.assume_role_for_pod_identity(clusterName=c["cluster"], token=c["token"])
        meta = r.pop("ResponseMetadata")
        r["credentials"]["expiration"] = r["credentials"]["expiration"].isoformat()
        out.append({"response": r, "status": meta["HTTPStatusCode"]})
    except botocore.exceptions.ClientError as e:
        out.append({"code": e.response["Error"]["Code"], "message": e.response["Error"].get("Message", ""),
            "status": e.response["ResponseMetadata"]["HTTPStatusCode"]})
json.dump(out, sys.stdout)
`

var boto3Missing = sync.OnceValue(func() error { return exec.Command("python3", "-c", "import boto3").Run() })

func requireBoto3(t *testing.T) {
	t.Helper()
	if err := boto3Missing(); err != nil {
		t.Skip("boto3 not installed:", err)
	}
}

// botoAssume makes the calls through botocore.
func botoAssume(t *testing.T, inst *servertest.Instance, calls ...podCall) []podResult {
	t.Helper()
	requireBoto3(t)
	for i := range calls {
		c := calls[i].Creds
		if c.AccessKeyID == "" {
			c = adminCreds(inst)
		}
		calls[i].Key, calls[i].Secret, calls[i].Session = c.AccessKeyID, c.SecretAccessKey, c.SessionToken
	}
	in := mustJSON(map[string]any{"endpoint": inst.URL, "region": region, "calls": calls})
	cmd := exec.Command("python3", "-c", botoScript)
	cmd.Env = append(cleanEnv(), "TZ=UTC")
	cmd.Stdin = strings.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("botocore: %v\n%s", err, stderr.Bytes())
	}
	var res []podResult
	if err := json.Unmarshal(out, &res); err != nil || len(res) != len(calls) {
		t.Fatalf("botocore output (%v): %s", err, out)
	}
	return res
}

// credsOf returns the credentials of a successful answer.
func (r podResult) credsOf(t *testing.T) aws.Credentials {
	t.Helper()
	c, _ := r.Response["credentials"].(map[string]any)
	if c == nil {
		t.Fatalf("no credentials in %v (error %s %d: %s)", r.Response, r.Code, r.Status, r.Message)
	}
	return aws.Credentials{AccessKeyID: c["accessKeyId"].(string), SecretAccessKey: c["secretAccessKey"].(string), SessionToken: c["sessionToken"].(string)}
}

// podClaims are the claims of a pod-bound projected token, as a
// kube-apiserver writes them; tests change them to break them.
func podClaims(iss, namespace, sa, pod string) map[string]any {
	now := time.Now()
	return map[string]any{
		"iss": iss, "sub": "system:serviceaccount:" + namespace + ":" + sa, "aud": []string{podAudience},
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"kubernetes.io": map[string]any{
			"namespace":      namespace,
			"serviceaccount": map[string]any{"name": sa, "uid": "5d0c2f4e-0000-4000-8000-000000000001"},
			"pod":            map[string]any{"name": pod, "uid": "5d0c2f4e-0000-4000-8000-000000000002"},
		},
	}
}

// signJWT signs claims with key as alg, with the kid header if not empty.
func signJWT(t *testing.T, key any, kid string, alg jose.SignatureAlgorithm, claims any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// unsignedJWS is header.claims. with an empty signature, as alg "none" has.
func unsignedJWS(header, claims map[string]any) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(mustJSON(header))) + "." + enc([]byte(mustJSON(claims))) + "."
}
