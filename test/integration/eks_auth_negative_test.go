package integration

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/eks"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	jose "github.com/go-jose/go-jose/v4"

	podideks "github.com/podid/podid/internal/eks"
	"github.com/podid/podid/internal/server/servertest"
)

// statusOfPodError is the HTTP status EKS Auth answers each exception with
// (DESIGN.md, "Wire facts").
var statusOfPodError = map[string]int{
	"InvalidTokenException": 400, "ExpiredTokenException": 400, "AccessDeniedException": 400,
	"InvalidParameterException": 400, "InvalidRequestException": 400, "ResourceNotFoundException": 404,
}

func rsaKey(t *testing.T) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// negFixture is a server with cluster "neg" (keys from a JWKS URL), a
// second cluster with its own keys, roles whose trust fails in every way,
// one association per failure, and callers with and without permission.
type negFixture struct {
	inst         *servertest.Instance
	keyA, keyB   *rsa.PrivateKey
	issuer       string
	otherIssuer  string
	callers      map[string]aws.Credentials
	associations []string // namespaces with an association in "neg"
}

func newNegFixture(t *testing.T) *negFixture {
	t.Helper()
	f := &negFixture{inst: servertest.Start(t), keyA: rsaKey(t), keyB: rsaKey(t), issuer: "https://neg.issuer.test", otherIssuer: "https://other.issuer.test"}
	jwks := jwksOf(jose.JSONWebKey{Key: &f.keyA.PublicKey, KeyID: "ka", Algorithm: "RS256", Use: "sig"})
	keys := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(jwks) }))
	t.Cleanup(keys.Close)
	registerCluster(t, f.inst, podideks.RegisterClusterInput{Name: "neg", Issuer: f.issuer, JWKSURL: keys.URL})
	registerCluster(t, f.inst, podideks.RegisterClusterInput{Name: "other", Issuer: f.otherIssuer,
		JWKS: jwksOf(jose.JSONWebKey{Key: &f.keyB.PublicKey, KeyID: "kb", Algorithm: "RS256", Use: "sig"})})
	registerCluster(t, f.inst, podideks.RegisterClusterInput{Name: "gone", Issuer: f.issuer, JWKS: jwks})

	ic, _ := adminClients(f.inst)
	ec := eksClient(f.inst)
	service := map[string]any{"Service": podAudience}
	trusts := map[string]map[string]any{
		"app":     podIdentityTrust(),
		"notag":   {"Version": "2012-10-17", "Statement": []any{map[string]any{"Effect": "Allow", "Principal": service, "Action": "sts:AssumeRole"}}},
		"nosvc":   {"Version": "2012-10-17", "Statement": []any{map[string]any{"Effect": "Allow", "Principal": map[string]any{"AWS": "arn:aws:iam::111122223333:root"}, "Action": []string{"sts:AssumeRole", "sts:TagSession"}}}},
		"srcacct": podIdentityTrust(map[string]any{"StringEquals": map[string]any{"aws:SourceAccount": "999999999999"}}),
		"srcarn":  podIdentityTrust(map[string]any{"ArnEquals": map[string]any{"aws:SourceArn": "arn:aws:eks:us-east-1:111122223333:podidentityassociation/neg/a-00000000000000000"}}),
		"nstag":   podIdentityTrust(map[string]any{"StringEquals": map[string]any{"aws:RequestTag/kubernetes-namespace": "somewhere-else"}}),
		"gone":    podIdentityTrust(),
		"untrusting-target": {"Version": "2012-10-17", "Statement": []any{map[string]any{"Effect": "Allow",
			"Principal": map[string]any{"AWS": "arn:aws:iam::111122223333:role/notag"}, "Action": []string{"sts:AssumeRole", "sts:TagSession"}}}},
	}
	arns := map[string]string{}
	for name, trust := range trusts {
		arns[name] = createRole(t, ic, name, trust)
	}
	// The first role may assume anything: only target trust policies decide.
	if _, err := ic.PutRolePolicy(ctx(t), &iam.PutRolePolicyInput{RoleName: aws.String("app"), PolicyName: aws.String("chain"),
		PolicyDocument: aws.String(policyDoc(stmt("Allow", []string{"sts:AssumeRole", "sts:TagSession"}, "*")))}); err != nil {
		t.Fatal(err)
	}
	assoc := func(ns, role, target string) {
		in := &eks.CreatePodIdentityAssociationInput{ClusterName: aws.String("neg"), Namespace: &ns, ServiceAccount: aws.String("app"), RoleArn: aws.String(arns[role])}
		if target != "" {
			in.TargetRoleArn = aws.String(arns[target])
		}
		if _, err := ec.CreatePodIdentityAssociation(ctx(t), in); err != nil {
			t.Fatalf("association %s: %v", ns, err)
		}
		f.associations = append(f.associations, ns)
	}
	for _, role := range []string{"app", "notag", "nosvc", "srcacct", "srcarn", "nstag", "gone"} {
		assoc(role, role, "")
	}
	assoc("chain", "app", "untrusting-target")
	if _, err := ic.DeleteRole(ctx(t), &iam.DeleteRoleInput{RoleName: aws.String("gone")}); err != nil {
		t.Fatal(err)
	}
	if _, err := ec.DeleteCluster(ctx(t), &eks.DeleteClusterInput{Name: aws.String("gone")}); err != nil {
		t.Fatal(err)
	}

	podAction := "eks-auth:AssumeRoleForPodIdentity"
	f.callers = map[string]aws.Credentials{
		"admin":     adminCreds(f.inst),
		"node":      roleSession(t, f.inst, "node", policyDoc(stmt("Allow", podAction, "arn:aws:eks:us-east-1:111122223333:cluster/neg"))),
		"nopower":   roleSession(t, f.inst, "nopower", policyDoc(stmt("Allow", "s3:*", "*"))),
		"otheronly": roleSession(t, f.inst, "otheronly", policyDoc(stmt("Allow", podAction, "arn:aws:eks:us-east-1:111122223333:cluster/other"))),
		"denied":    roleSession(t, f.inst, "denied", policyDoc(stmt("Allow", "*", "*"), stmt("Deny", "eks-auth:*", "*"))),
	}
	return f
}

// token signs a pod token of namespace ns (service account "app") with key
// A as cluster "neg" does, after mutate changes its claims.
func (f *negFixture) token(t *testing.T, ns string, mutate ...func(map[string]any)) string {
	t.Helper()
	c := podClaims(f.issuer, ns, "app", "pod-1")
	for _, m := range mutate {
		m(c)
	}
	return signJWT(t, f.keyA, "ka", jose.RS256, c)
}

// snapshot is everything a failed call must leave alone.
func (f *negFixture) snapshot(t *testing.T) []any {
	t.Helper()
	ec := eksClient(f.inst)
	ic, _ := adminClients(f.inst)
	var out []any
	list, err := ec.ListPodIdentityAssociations(ctx(t), &eks.ListPodIdentityAssociationsInput{ClusterName: aws.String("neg")})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list.Associations {
		d, err := ec.DescribePodIdentityAssociation(ctx(t), &eks.DescribePodIdentityAssociationInput{ClusterName: aws.String("neg"), AssociationId: s.AssociationId})
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *d.Association)
	}
	roles, err := ic.ListRoles(ctx(t), &iam.ListRolesInput{})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range roles.Roles {
		out = append(out, aws.ToString(r.Arn))
	}
	clusters, err := ec.ListClusters(ctx(t), &eks.ListClustersInput{})
	if err != nil {
		t.Fatal(err)
	}
	return append(out, clusters.Clusters)
}

func set(k string, v any) func(map[string]any) { return func(c map[string]any) { c[k] = v } }
func del(k string) func(map[string]any)        { return func(c map[string]any) { delete(c, k) } }
func setK8s(k string, v any) func(map[string]any) {
	return func(c map[string]any) {
		if v == nil {
			delete(c["kubernetes.io"].(map[string]any), k)
		} else {
			c["kubernetes.io"].(map[string]any)[k] = v
		}
	}
}

// TestAssumeRoleForPodIdentityRejects drives EKS Auth with botocore's
// eks-auth client through every way a call can fail, beside a few controls
// that must succeed, then checks that nothing changed and that the audit
// log holds no token or secret.
func TestAssumeRoleForPodIdentityRejects(t *testing.T) {
	requireBoto3(t)
	f := newNegFixture(t)
	keyC := rsaKey(t)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&f.keyA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	now := time.Now()
	valid := f.token(t, "app")
	parts := strings.Split(valid, ".")
	enc := base64.RawURLEncoding.EncodeToString
	tampered := func() string {
		c := podClaims(f.issuer, "app", "app", "pod-1")
		c["kubernetes.io"].(map[string]any)["namespace"] = "nosvc"
		return parts[0] + "." + enc([]byte(mustJSON(c))) + "." + parts[2]
	}()
	badSig := parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2]))

	cases := []struct {
		name   string
		caller string // default admin
		cluster,
		token string
		code string // "" means success
	}{
		{name: "control: valid token", token: valid},
		{name: "control: node role allowed on the cluster", caller: "node", token: f.token(t, "app")},
		{name: "control: expired within the clock skew", token: f.token(t, "app", set("exp", now.Add(-10*time.Second).Unix()))},
		{name: "control: nbf within the clock skew", token: f.token(t, "app", set("nbf", now.Add(10*time.Second).Unix()))},

		{name: "token of another cluster", token: signJWT(t, f.keyB, "kb", jose.RS256, podClaims(f.otherIssuer, "app", "app", "pod-1")), code: "InvalidTokenException"},
		{name: "other cluster's key under this cluster's kid", token: signJWT(t, f.keyB, "ka", jose.RS256, podClaims(f.issuer, "app", "app", "pod-1")), code: "InvalidTokenException"},
		{name: "other cluster's issuer", token: f.token(t, "app", set("iss", f.otherIssuer)), code: "InvalidTokenException"},
		{name: "IRSA audience sts.amazonaws.com", token: f.token(t, "app", set("aud", []string{"sts.amazonaws.com"})), code: "InvalidTokenException"},
		{name: "agent audience podid", token: f.token(t, "app", set("aud", "podid")), code: "InvalidTokenException"},
		{name: "no audience", token: f.token(t, "app", del("aud")), code: "InvalidTokenException"},
		{name: "expired an hour ago", token: f.token(t, "app", set("exp", now.Add(-time.Hour).Unix())), code: "ExpiredTokenException"},
		{name: "expired beyond the skew", token: f.token(t, "app", set("exp", now.Add(-2*time.Minute).Unix())), code: "ExpiredTokenException"},
		{name: "not yet valid", token: f.token(t, "app", set("nbf", now.Add(time.Hour).Unix())), code: "InvalidTokenException"},
		{name: "no exp", token: f.token(t, "app", del("exp")), code: "InvalidTokenException"},
		{name: "claims changed after signing", token: tampered, code: "InvalidTokenException"},
		{name: "bad signature", token: badSig, code: "InvalidTokenException"},
		{name: "unknown kid after refresh", token: signJWT(t, keyC, "kc", jose.RS256, podClaims(f.issuer, "app", "app", "pod-1")), code: "InvalidTokenException"},
		{name: "no kid", token: signJWT(t, keyC, "", jose.RS256, podClaims(f.issuer, "app", "app", "pod-1")), code: "InvalidTokenException"},
		{name: "alg none", token: unsignedJWS(map[string]any{"alg": "none", "kid": "ka", "typ": "JWT"}, podClaims(f.issuer, "app", "app", "pod-1")), code: "InvalidTokenException"},
		{name: "HS256 keyed with the public key", token: signJWT(t, pubPEM, "ka", jose.HS256, podClaims(f.issuer, "app", "app", "pod-1")), code: "InvalidTokenException"},
		{name: "HS256 keyed with the public key DER", token: signJWT(t, pubDER, "ka", jose.HS256, podClaims(f.issuer, "app", "app", "pod-1")), code: "InvalidTokenException"},
		{name: "ES256 under an RSA kid", token: signJWT(t, ecKey, "ka", jose.ES256, podClaims(f.issuer, "app", "app", "pod-1")), code: "InvalidTokenException"},
		{name: "RS512 where the key says RS256", token: signJWT(t, f.keyA, "ka", jose.RS512, podClaims(f.issuer, "app", "app", "pod-1")), code: "InvalidTokenException"},
		{name: "malformed JWT", token: "not-a-jwt", code: "InvalidTokenException"},
		{name: "three garbage segments", token: "abc.def.ghi", code: "InvalidTokenException"},
		{name: "claims not an object", token: parts[0] + "." + enc([]byte("[1,2]")) + "." + parts[2], code: "InvalidTokenException"},
		{name: "no kubernetes.io claim", token: f.token(t, "app", del("kubernetes.io")), code: "InvalidTokenException"},
		{name: "kubernetes.io not an object", token: f.token(t, "app", set("kubernetes.io", "app")), code: "InvalidTokenException"},
		{name: "subject of another service account", token: f.token(t, "app", set("sub", "system:serviceaccount:app:other")), code: "InvalidTokenException"},
		{name: "no pod claim (not pod-bound)", token: f.token(t, "app", setK8s("pod", nil)), code: "InvalidTokenException"},
		{name: "pod claim without uid", token: f.token(t, "app", setK8s("pod", map[string]any{"name": "pod-1"})), code: "InvalidTokenException"},
		{name: "no association for the namespace", token: f.token(t, "none"), code: "ResourceNotFoundException"},
		{name: "no association for the service account", token: signJWT(t, f.keyA, "ka", jose.RS256, podClaims(f.issuer, "app", "other", "pod-1")), code: "ResourceNotFoundException"},
		{name: "role trust lacks sts:TagSession", token: f.token(t, "notag"), code: "AccessDeniedException"},
		{name: "role trust lacks the service principal", token: f.token(t, "nosvc"), code: "AccessDeniedException"},
		{name: "role trust wants another aws:SourceAccount", token: f.token(t, "srcacct"), code: "AccessDeniedException"},
		{name: "role trust wants another aws:SourceArn", token: f.token(t, "srcarn"), code: "AccessDeniedException"},
		{name: "role trust wants another namespace tag", token: f.token(t, "nstag"), code: "AccessDeniedException"},
		{name: "deleted role", token: f.token(t, "gone"), code: "AccessDeniedException"},
		{name: "target role does not trust the role", token: f.token(t, "chain"), code: "AccessDeniedException"},
		{name: "caller without eks-auth:AssumeRoleForPodIdentity", caller: "nopower", token: f.token(t, "app"), code: "AccessDeniedException"},
		{name: "caller allowed on another cluster only", caller: "otheronly", token: f.token(t, "app"), code: "AccessDeniedException"},
		{name: "caller with an explicit deny", caller: "denied", token: f.token(t, "app"), code: "AccessDeniedException"},
		{name: "unknown cluster", cluster: "nope", token: f.token(t, "app"), code: "ResourceNotFoundException"},
		{name: "deleted cluster", cluster: "gone", token: f.token(t, "app"), code: "ResourceNotFoundException"},
		{name: "valid token sent to another cluster", cluster: "other", token: f.token(t, "app"), code: "InvalidTokenException"},
	}
	before := f.snapshot(t)
	calls := make([]podCall, len(cases))
	for i, tc := range cases {
		if tc.cluster == "" {
			cases[i].cluster = "neg"
		}
		if tc.caller == "" {
			cases[i].caller = "admin"
		}
		calls[i] = podCall{Cluster: cases[i].cluster, Token: tc.token, Creds: f.callers[cases[i].caller]}
	}
	results := botoAssume(t, f.inst, calls...)
	negatives := 0
	var secrets []string
	for i, tc := range cases {
		r := results[i]
		if tc.code == "" {
			if r.Code != "" || r.Status != 200 {
				t.Errorf("%s: %s (HTTP %d): %s, want success", tc.name, r.Code, r.Status, r.Message)
				continue
			}
			c := r.credsOf(t)
			secrets = append(secrets, c.SecretAccessKey, c.SessionToken)
			continue
		}
		negatives++
		if r.Code != tc.code || r.Status != statusOfPodError[tc.code] {
			t.Errorf("%s: %s (HTTP %d): %s, want %s (HTTP %d)", tc.name, r.Code, r.Status, r.Message, tc.code, statusOfPodError[tc.code])
		}
		if r.Response != nil {
			t.Errorf("%s: a failed call returned %v", tc.name, r.Response)
		}
		if r.Message == "" || strings.Contains(r.Message, tc.token) {
			t.Errorf("%s: message %q is empty or holds the token", tc.name, r.Message)
		}
	}

	// What botocore will not send: the raw requests.
	raw := []struct {
		name   string
		creds  aws.Credentials
		body   string
		codes  []string // accepted exception names
		status int
	}{
		{"empty token", adminCreds(f.inst), `{"token":""}`, []string{"InvalidParameterException"}, 400},
		{"no token member", adminCreds(f.inst), `{}`, []string{"InvalidParameterException"}, 400},
		{"malformed JSON body", adminCreds(f.inst), `{"token":`, []string{"InvalidRequestException"}, 400},
		{"token not a string", adminCreds(f.inst), `{"token":5}`, []string{"InvalidRequestException"}, 400},
		{"unsigned request", aws.Credentials{}, mustJSON(map[string]string{"token": valid}),
			[]string{"MissingAuthenticationTokenException"}, 403},
		{"signed with a wrong secret", aws.Credentials{AccessKeyID: f.inst.AccessKeyID, SecretAccessKey: strings.Repeat("x", 40)}, mustJSON(map[string]string{"token": valid}),
			[]string{"InvalidSignatureException"}, 403},
		{"unknown access key", aws.Credentials{AccessKeyID: "AKIAAAAAAAAAAAAAAAAA", SecretAccessKey: strings.Repeat("x", 40)}, mustJSON(map[string]string{"token": valid}),
			[]string{"UnrecognizedClientException"}, 403},
	}
	for _, tc := range raw {
		a := signedJSON(t, f.inst, tc.creds, "eks-auth", http.MethodPost, "/clusters/neg/assume-role-for-pod-identity", tc.body)
		negatives++
		if !slices.Contains(tc.codes, a.code) || a.status != tc.status || strings.Contains(string(a.body), "credentials") {
			t.Errorf("%s: HTTP %d %s: %s, want %d %s", tc.name, a.status, a.code, a.body, tc.status, tc.codes[0])
		}
	}
	if negatives < 30 {
		t.Errorf("only %d negative cases", negatives)
	}
	if after := f.snapshot(t); !reflect.DeepEqual(before, after) {
		t.Errorf("state changed:\nbefore %+v\nafter  %+v", before, after)
	}

	tokens, atNeg := secrets, len(raw)
	for _, tc := range cases {
		tokens = append(tokens, tc.token)
		if tc.cluster == "neg" {
			atNeg++
		}
	}
	checkPodAudit(t, f.inst, "neg", atNeg, tokens)
}

// checkPodAudit checks the AssumeRoleForPodIdentity records: at least n,
// each as in the seed's CloudTrail record, and none of secrets anywhere.
func checkPodAudit(t *testing.T, inst *servertest.Instance, cluster string, n int, secrets []string) {
	t.Helper()
	log := inst.AuditLog(t)
	for _, s := range secrets {
		if len(s) > 8 && strings.Contains(log, s) {
			t.Errorf("the audit log holds a secret or token: %.20s…", s)
		}
	}
	records := 0
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		var rec struct {
			EventSource       string         `json:"eventSource"`
			EventName         string         `json:"eventName"`
			RequestParameters map[string]any `json:"requestParameters"`
			UserIdentity      map[string]any `json:"userIdentity"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if rec.EventName != "AssumeRoleForPodIdentity" || rec.RequestParameters["clusterName"] != cluster {
			continue
		}
		records++
		if rec.EventSource != "eks-auth.amazonaws.com" {
			t.Errorf("eventSource = %q", rec.EventSource)
		}
		if tok, ok := rec.RequestParameters["token"]; ok && tok != "HIDDEN_DUE_TO_SECURITY_REASONS" {
			t.Errorf("requestParameters.token = %.20v…", tok)
		}
	}
	if records < n {
		t.Errorf("%d AssumeRoleForPodIdentity records for %s, want at least %d", records, cluster, n)
	}
}
