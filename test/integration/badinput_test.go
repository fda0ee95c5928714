package integration

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	iamtypes "github.com/aws/aws-sdk-go-v2/service/iam/types"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/podid/podid/internal/server/servertest"
)

// creds are the keys a raw request is signed with.
type creds struct{ id, secret, token string }

// rawReq is a request built by hand: a form body, optionally signed with
// the SDK's SigV4 signer, then optionally broken by after.
type rawReq struct {
	method  string // "" means POST
	path    string // "" means "/"
	body    string
	signAs  *creds              // nil: unsigned
	service string              // signing name; "" picks iam or sts from the form's Version
	at      time.Duration       // signing time offset from now
	presign bool                // GET with the form and a 60-second presigned signature in the query
	after   func(*http.Request) // applied after signing
}

// badCase is one malformed request and the AWS error it must get.
type badCase struct {
	name   string
	req    rawReq
	code   string
	status int // 0: the status AWS uses for code (statusFor)
}

// statusFor is the HTTP status AWS answers each error code with.
var statusFor = map[string]int{
	"AccessDenied": 403, "InvalidClientTokenId": 403, "SignatureDoesNotMatch": 403, "MissingAuthenticationToken": 403,
	"RequestTimeTooSkewed": 403, "ExpiredToken": 403, "NoSuchEntity": 404, "EntityAlreadyExists": 409, "LimitExceeded": 409,
	"DeleteConflict": 409, "UnknownOperationException": 404, "RequestEntityTooLarge": 413, "InvalidAction": 400,
}

func iamForm(action string, kv ...string) string { return queryForm(action, "2010-05-08", kv...) }
func stsForm(action string, kv ...string) string { return queryForm(action, "2011-06-15", kv...) }

func queryForm(action, version string, kv ...string) string {
	v := url.Values{}
	if action != "" {
		v.Set("Action", action)
	}
	if version != "" {
		v.Set("Version", version)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v.Encode()
}

// tagParams returns n Tags.member.N key/value pairs; key and value are
// repeated to the given lengths when not zero.
func tagParams(n, keyLen, valueLen int) []string {
	var kv []string
	for i := 1; i <= n; i++ {
		k, v := "k"+strconv.Itoa(i), "v"
		if keyLen > 0 {
			k = strings.Repeat("k", keyLen)
		}
		if valueLen > 0 {
			v = strings.Repeat("v", valueLen)
		}
		p := "Tags.member." + strconv.Itoa(i)
		kv = append(kv, p+".Key", k, p+".Value", v)
	}
	return kv
}

func (rq rawReq) build(t *testing.T, base string) *http.Request {
	t.Helper()
	method, path := rq.method, rq.path
	if method == "" {
		method = http.MethodPost
	}
	if path == "" {
		path = "/"
	}
	target, body := base+path, rq.body
	if rq.presign {
		method, target, body = http.MethodGet, target+"?"+body+"&X-Amz-Expires=60", ""
	}
	r, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")
	}
	if rq.signAs != nil {
		service := rq.service
		if service == "" {
			service = "iam"
			if strings.Contains(rq.body, "Version=2011-06-15") {
				service = "sts"
			}
		}
		sum := sha256.Sum256([]byte(body))
		c := aws.Credentials{AccessKeyID: rq.signAs.id, SecretAccessKey: rq.signAs.secret, SessionToken: rq.signAs.token}
		if rq.presign {
			signed, _, err := v4.NewSigner().PresignHTTP(ctx(t), c, r, hex.EncodeToString(sum[:]), service, region, time.Now().Add(rq.at))
			if err != nil {
				t.Fatal(err)
			}
			if r.URL, err = url.Parse(signed); err != nil {
				t.Fatal(err)
			}
		} else if err := v4.NewSigner().SignHTTP(ctx(t), c, r, hex.EncodeToString(sum[:]), service, region, time.Now().Add(rq.at)); err != nil {
			t.Fatal(err)
		}
	}
	if rq.after != nil {
		rq.after(r)
	}
	return r
}

// errorCode reads the AWS error code of a query-protocol (XML) or
// restJson (JSON, X-Amzn-ErrorType) error response.
func errorCode(resp *http.Response, body []byte) string {
	var x struct {
		Code string `xml:"Error>Code"`
	}
	if xml.Unmarshal(body, &x) == nil && x.Code != "" {
		return x.Code
	}
	var j struct {
		Type string `json:"__type"`
	}
	if json.Unmarshal(body, &j) == nil && j.Type != "" {
		return j.Type
	}
	code, _, _ := strings.Cut(resp.Header.Get("X-Amzn-ErrorType"), ":")
	return code
}

// storeSnapshot is everything IAM holds, read through the admin client.
func storeSnapshot(t *testing.T, ic *iam.Client) string {
	t.Helper()
	c := ctx(t)
	var snap []any
	roles := must[*iam.ListRolesOutput](t, "ListRoles")(ic.ListRoles(c, &iam.ListRolesInput{MaxItems: aws.Int32(1000)}))
	for _, r := range roles.Roles {
		name := r.RoleName
		tags := must[*iam.ListRoleTagsOutput](t, "ListRoleTags")(ic.ListRoleTags(c, &iam.ListRoleTagsInput{RoleName: name}))
		inline := must[*iam.ListRolePoliciesOutput](t, "ListRolePolicies")(ic.ListRolePolicies(c, &iam.ListRolePoliciesInput{RoleName: name}))
		var docs []string
		for _, p := range inline.PolicyNames {
			docs = append(docs, p, aws.ToString(must[*iam.GetRolePolicyOutput](t, "GetRolePolicy")(ic.GetRolePolicy(c, &iam.GetRolePolicyInput{RoleName: name, PolicyName: aws.String(p)})).PolicyDocument))
		}
		attached := must[*iam.ListAttachedRolePoliciesOutput](t, "ListAttachedRolePolicies")(ic.ListAttachedRolePolicies(c, &iam.ListAttachedRolePoliciesInput{RoleName: name}))
		snap = append(snap, r, tags.Tags, docs, attached.AttachedPolicies)
	}
	snap = append(snap, must[*iam.ListPoliciesOutput](t, "ListPolicies")(ic.ListPolicies(c, &iam.ListPoliciesInput{MaxItems: aws.Int32(1000)})).Policies)
	for _, p := range must[*iam.ListOpenIDConnectProvidersOutput](t, "ListOpenIDConnectProviders")(ic.ListOpenIDConnectProviders(c, &iam.ListOpenIDConnectProvidersInput{})).OpenIDConnectProviderList {
		o := must[*iam.GetOpenIDConnectProviderOutput](t, "GetOpenIDConnectProvider")(ic.GetOpenIDConnectProvider(c, &iam.GetOpenIDConnectProviderInput{OpenIDConnectProviderArn: p.Arn}))
		snap = append(snap, p.Arn, o.Url, o.ClientIDList, o.ThumbprintList, o.Tags)
	}
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// unsignedJWT is a token with alg "none" and no signature.
func unsignedJWT(iss, sub, aud, kid string) string {
	enc := base64.RawURLEncoding.EncodeToString
	head := enc([]byte(`{"alg":"none","typ":"JWT","kid":"` + kid + `"}`))
	now := time.Now().Unix()
	claims := enc([]byte(fmt.Sprintf(`{"iss":%q,"sub":%q,"aud":%q,"iat":%d,"exp":%d}`, iss, sub, aud, now, now+3600)))
	return head + "." + claims + "."
}

func TestBadInput(t *testing.T) {
	is := newIssuer(t)
	other := newIssuer(t) // a real issuer that is not registered
	inst := servertest.Start(t, withOIDCCA(is.CAFile))
	ic, sc := adminClients(inst)
	c := ctx(t)

	provider := aws.ToString(must[*iam.CreateOpenIDConnectProviderOutput](t, "CreateOpenIDConnectProvider")(ic.CreateOpenIDConnectProvider(c, &iam.CreateOpenIDConnectProviderInput{
		Url: aws.String(is.URL), ClientIDList: []string{"sts.amazonaws.com"}})).OpenIDConnectProviderArn)
	const sub = "system:serviceaccount:default:app"
	irsaRole := createRole(t, ic, "irsa", irsaTrust(is, provider, sub))
	appRole := createRole(t, ic, "app", trustAccount())
	chainRole := createRole(t, ic, "chain", trustAccount())
	must[*iam.TagRoleOutput](t, "TagRole")(ic.TagRole(c, &iam.TagRoleInput{RoleName: aws.String("chain"), Tags: sdkTags(tagParams(50, 0, 0))}))
	must[*iam.PutRolePolicyOutput](t, "PutRolePolicy")(ic.PutRolePolicy(c, &iam.PutRolePolicyInput{RoleName: aws.String("chain"), PolicyName: aws.String("self"),
		PolicyDocument: aws.String(policyDoc(stmt("Allow", "sts:AssumeRole", chainRole)))}))
	assumed := must[*sts.AssumeRoleOutput](t, "AssumeRole")(sc.AssumeRole(c, &sts.AssumeRoleInput{RoleArn: aws.String(chainRole), RoleSessionName: aws.String("first")})).Credentials
	admin := &creds{inst.AccessKeyID, inst.SecretAccessKey, ""}
	roleSess := &creds{aws.ToString(assumed.AccessKeyId), aws.ToString(assumed.SecretAccessKey), aws.ToString(assumed.SessionToken)}
	expID, expSecret, expToken := expiredSession(t, inst)
	expired := &creds{expID, expSecret, expToken}
	otherSess := must[*sts.GetSessionTokenOutput](t, "GetSessionToken")(sc.GetSessionToken(c, &sts.GetSessionTokenInput{})).Credentials
	// A session token presented with another session's access key.
	swapped := &creds{roleSess.id, roleSess.secret, aws.ToString(otherSess.SessionToken)}
	tampered := &creds{roleSess.id, roleSess.secret, roleSess.token[:len(roleSess.token)-8] + "AAAAAAAA"}
	secrets := []string{admin.secret, roleSess.secret, roleSess.token, expSecret, expToken, aws.ToString(otherSess.SecretAccessKey), aws.ToString(otherSess.SessionToken)}

	aud := []string{"sts.amazonaws.com"}
	pubDER, err := x509.MarshalPKIXPublicKey(&is.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hour := func(d time.Duration) func(*jwt.Claims) {
		return func(c *jwt.Claims) {
			c.IssuedAt, c.NotBefore, c.Expiry = jwt.NewNumericDate(time.Now().Add(d-time.Hour)), jwt.NewNumericDate(time.Now().Add(d-time.Hour)), jwt.NewNumericDate(time.Now().Add(d))
		}
	}
	tokens := map[string]string{
		"valid":         is.token(t, sub, aud),
		"alg none":      unsignedJWT(is.URL, sub, aud[0], is.kid),
		"HS256 PEM":     signToken(t, pubPEM, is.kid, jose.HS256, is.URL, sub, aud),
		"HS256 DER":     signToken(t, pubDER, is.kid, jose.HS256, is.URL, sub, aud),
		"unknown kid":   signToken(t, is.key, "no-such-kid", jose.RS256, is.URL, sub, aud),
		"foreign key":   signToken(t, other.key, is.kid, jose.RS256, is.URL, sub, aud),
		"wrong iss":     signToken(t, is.key, is.kid, jose.RS256, is.URL+"/other", sub, aud),
		"http iss":      signToken(t, is.key, is.kid, jose.RS256, "http://"+is.Host(), sub, aud),
		"no provider":   other.token(t, sub, aud),
		"wrong aud":     is.token(t, sub, []string{"someone-else"}),
		"expired":       is.token(t, sub, aud, hour(-10*time.Minute)),
		"future nbf":    is.token(t, sub, aud, func(c *jwt.Claims) { c.NotBefore = jwt.NewNumericDate(time.Now().Add(time.Hour)) }),
		"other subject": is.token(t, "system:serviceaccount:default:other", aud),
		"garbage":       "eyJhbGciOiJSUzI1NiJ9.not-json.c2ln",
		"three dots":    "a.b.c",
		"no exp":        is.token(t, sub, aud, func(c *jwt.Claims) { c.Expiry = nil }),
	}
	for _, tok := range tokens {
		secrets = append(secrets, tok)
	}
	webIdentity := func(tok string) rawReq {
		return rawReq{body: stsForm("AssumeRoleWithWebIdentity", "RoleArn", irsaRole, "RoleSessionName", "web", "WebIdentityToken", tok)}
	}
	asAdmin := func(body string) rawReq { return rawReq{body: body, signAs: admin} }
	createRoleWith := func(kv ...string) rawReq {
		return asAdmin(iamForm("CreateRole", append([]string{"RoleName", "new", "AssumeRolePolicyDocument", mustJSON(trustAccount())}, kv...)...))
	}
	trustDoc := func(doc string) rawReq {
		return asAdmin(iamForm("CreateRole", "RoleName", "new", "AssumeRolePolicyDocument", doc))
	}
	inline := func(doc string) rawReq {
		return asAdmin(iamForm("PutRolePolicy", "RoleName", "app", "PolicyName", "p", "PolicyDocument", doc))
	}
	assume := func(as *creds, kv ...string) rawReq {
		return rawReq{body: stsForm("AssumeRole", append([]string{"RoleArn", appRole, "RoleSessionName", "sess"}, kv...)...), signAs: as}
	}
	setHeader := func(k, v string) func(*http.Request) { return func(r *http.Request) { r.Header.Set(k, v) } }
	editAuth := func(f func(string) string) func(*http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", f(r.Header.Get("Authorization"))) }
	}
	listRoles := iamForm("ListRoles")
	scope := time.Now().UTC().Format("20060102") + "/" + region + "/iam/aws4_request"
	amzDate := func(r *http.Request) { r.Header.Set("X-Amz-Date", time.Now().UTC().Format("20060102T150405Z")) }
	rawAuth := func(auth string) rawReq {
		return rawReq{body: listRoles, after: func(r *http.Request) { amzDate(r); r.Header.Set("Authorization", auth) }}
	}
	fullCred := "Credential=" + inst.AccessKeyID + "/" + scope

	cases := []badCase{
		// Protocol.
		{name: "malformed form body", req: asAdmin("Action=ListRoles&Version=2010-05-08&x=%zz"), code: "MalformedQueryString", status: 400},
		{name: "missing Action", req: asAdmin(queryForm("", "2010-05-08")), code: "MissingAction", status: 400},
		{name: "unknown IAM action", req: asAdmin(iamForm("CreateUser", "UserName", "bob")), code: "InvalidAction"},
		{name: "unknown STS action", req: asAdmin(stsForm("AssumeRoleWithSAML")), code: "InvalidAction"},
		{name: "unknown Version", req: asAdmin(queryForm("ListRoles", "2099-01-01")), code: "InvalidAction"},
		{name: "PUT on the query endpoint", req: rawReq{method: http.MethodPut, body: listRoles, signAs: admin}, code: "InvalidAction", status: 405},
		{name: "unknown REST path", req: rawReq{method: http.MethodGet, path: "/no/such/api", signAs: admin, service: "eks"}, code: "UnknownOperationException"},
		{name: "body over 1 MiB", req: asAdmin(iamForm("CreateRole", "RoleName", "new", "Description", strings.Repeat("d", 1<<20))), code: "RequestEntityTooLarge"},

		// Policy documents.
		{name: "trust policy not JSON", req: trustDoc(`{"Version":"2012-10-17","Statement":[`), code: "MalformedPolicyDocument", status: 400},
		{name: "trust policy is an array", req: trustDoc(`[]`), code: "MalformedPolicyDocument", status: 400},
		{name: "trust policy without Principal", req: trustDoc(policyDoc(stmt("Allow", "sts:AssumeRole", "*"))), code: "MalformedPolicyDocument", status: 400},
		{name: "trust policy with unknown Version", req: trustDoc(`{"Version":"2020-01-01","Statement":[{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]}`), code: "MalformedPolicyDocument", status: 400},
		{name: "identity policy with Principal", req: inline(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":"*","Action":"s3:*","Resource":"*"}]}`), code: "MalformedPolicyDocument", status: 400},
		{name: "Effect Maybe", req: inline(policyDoc(stmt("Maybe", "s3:*", "*"))), code: "MalformedPolicyDocument", status: 400},
		{name: "unknown condition operator", req: inline(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*","Condition":{"StringSorta":{"a:b":"c"}}}]}`), code: "MalformedPolicyDocument", status: 400},
		{name: "statement without Action", req: inline(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Resource":"*"}]}`), code: "MalformedPolicyDocument", status: 400},
		{name: "empty policy document", req: inline(""), code: "ValidationError", status: 400},
		{name: "managed policy over 6144 characters", req: asAdmin(iamForm("CreatePolicy", "PolicyName", "big", "PolicyDocument",
			policyDoc(stmt("Allow", "s3:GetObject", "arn:aws:s3:::"+strings.Repeat("b", 7000))))), code: "LimitExceeded"},

		// Tags and names.
		{name: "51 tags on CreateRole", req: createRoleWith(tagParams(51, 0, 0)...), code: "ValidationError", status: 400},
		{name: "tag key of 129 characters", req: createRoleWith(tagParams(1, 129, 0)...), code: "ValidationError", status: 400},
		{name: "tag value of 257 characters", req: createRoleWith(tagParams(1, 0, 257)...), code: "ValidationError", status: 400},
		{name: "aws: tag key", req: createRoleWith("Tags.member.1.Key", "aws:team", "Tags.member.1.Value", "x"), code: "InvalidInput", status: 400},
		{name: "duplicate tag keys on TagRole", req: asAdmin(iamForm("TagRole", "RoleName", "app", "Tags.member.1.Key", "a", "Tags.member.1.Value", "1", "Tags.member.2.Key", "A", "Tags.member.2.Value", "2")), code: "InvalidInput", status: 400},
		{name: "51 tags on TagRole", req: asAdmin(iamForm("TagRole", append([]string{"RoleName", "app"}, tagParams(51, 0, 0)...)...)), code: "ValidationError", status: 400},
		{name: "role name with a slash", req: asAdmin(iamForm("CreateRole", "RoleName", "a/b", "AssumeRolePolicyDocument", mustJSON(trustAccount()))), code: "ValidationError", status: 400},
		{name: "MaxSessionDuration below an hour", req: createRoleWith("MaxSessionDuration", "100"), code: "ValidationError", status: 400},
		{name: "permissions boundary", req: createRoleWith("PermissionsBoundary", "arn:aws:iam::111122223333:policy/b"), code: "InvalidInput", status: 400},
		{name: "CreateRole without trust policy", req: asAdmin(iamForm("CreateRole", "RoleName", "new")), code: "ValidationError", status: 400},
		{name: "OIDC provider over http", req: asAdmin(iamForm("CreateOpenIDConnectProvider", "Url", "http://issuer.example", "ClientIDList.member.1", "x")), code: "InvalidInput", status: 400},
		{name: "OIDC thumbprint not hex", req: asAdmin(iamForm("CreateOpenIDConnectProvider", "Url", "https://issuer.example", "ThumbprintList.member.1", "xyz")), code: "ValidationError", status: 400},
		{name: "trust policy over 2048 characters", req: trustDoc(mustJSON(map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{
			"Effect": "Allow", "Principal": map[string]any{"AWS": "*"}, "Action": "sts:AssumeRole", "Condition": map[string]any{"StringEquals": map[string]any{"sts:ExternalId": strings.Repeat("x", 2100)}}}}})), code: "LimitExceeded"},
		{name: "policy with invalid UTF-8", req: inline(strings.Replace(policyDoc(stmt("Allow", "s3:*", "arn:aws:s3:::MARK")), "MARK", "\xff", 1)), code: "MalformedPolicyDocument", status: 400},
		{name: "identity policy without Resource", req: inline(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*"}]}`), code: "MalformedPolicyDocument", status: 400},
		{name: "UpdateAssumeRolePolicy with a bad document", req: asAdmin(iamForm("UpdateAssumeRolePolicy", "RoleName", "app", "PolicyDocument", `{"Version":"2012-10-17"}`)), code: "MalformedPolicyDocument", status: 400},
		{name: "TagRole past 50 tags", req: asAdmin(iamForm("TagRole", "RoleName", "chain", "Tags.member.1.Key", "one-more", "Tags.member.1.Value", "x")), code: "LimitExceeded"},
		{name: "tag key with a star", req: createRoleWith("Tags.member.1.Key", "a*b", "Tags.member.1.Value", "x"), code: "ValidationError", status: 400},
		{name: "UpdateRole MaxSessionDuration 50000", req: asAdmin(iamForm("UpdateRole", "RoleName", "app", "MaxSessionDuration", "50000")), code: "ValidationError", status: 400},
		{name: "AddClientID to a missing provider", req: asAdmin(iamForm("AddClientIDToOpenIDConnectProvider", "OpenIDConnectProviderArn", provider+"x", "ClientID", "c")), code: "NoSuchEntity"},
		{name: "client ID of 256 characters", req: asAdmin(iamForm("AddClientIDToOpenIDConnectProvider", "OpenIDConnectProviderArn", provider, "ClientID", strings.Repeat("c", 256))), code: "ValidationError", status: 400},
		{name: "ListRoles MaxItems 0", req: asAdmin(iamForm("ListRoles", "MaxItems", "0")), code: "ValidationError", status: 400},
		{name: "attach a missing policy", req: asAdmin(iamForm("AttachRolePolicy", "RoleName", "app", "PolicyArn", "arn:aws:iam::aws:policy/Nope")), code: "NoSuchEntity"},
		{name: "delete a missing role", req: asAdmin(iamForm("DeleteRole", "RoleName", "ghost")), code: "NoSuchEntity"},

		// STS parameters.
		{name: "DurationSeconds 899", req: assume(admin, "DurationSeconds", "899"), code: "ValidationError", status: 400},
		{name: "DurationSeconds 43201", req: assume(admin, "DurationSeconds", "43201"), code: "ValidationError", status: 400},
		{name: "DurationSeconds not a number", req: assume(admin, "DurationSeconds", "1h"), code: "ValidationError", status: 400},
		{name: "DurationSeconds over the role maximum", req: assume(admin, "DurationSeconds", "7200"), code: "ValidationError", status: 400},
		{name: "chained DurationSeconds over an hour", req: rawReq{body: stsForm("AssumeRole", "RoleArn", chainRole, "RoleSessionName", "again", "DurationSeconds", "3601"), signAs: roleSess}, code: "ValidationError", status: 400},
		{name: "RoleSessionName too short", req: rawReq{body: stsForm("AssumeRole", "RoleArn", appRole, "RoleSessionName", "a"), signAs: admin}, code: "ValidationError", status: 400},
		{name: "RoleSessionName with a space", req: rawReq{body: stsForm("AssumeRole", "RoleArn", appRole, "RoleSessionName", "bad name"), signAs: admin}, code: "ValidationError", status: 400},
		{name: "ExternalId of one character", req: assume(admin, "ExternalId", "x"), code: "ValidationError", status: 400},
		{name: "malformed role ARN", req: rawReq{body: stsForm("AssumeRole", "RoleArn", "arn:aws:iam::role/app", "RoleSessionName", "sess"), signAs: admin}, code: "ValidationError", status: 400},
		{name: "role ARN of another account", req: rawReq{body: stsForm("AssumeRole", "RoleArn", "arn:aws:iam::999988887777:role/app", "RoleSessionName", "sess"), signAs: admin}, code: "AccessDenied"},
		{name: "aws: session tag", req: assume(admin, "Tags.member.1.Key", "aws:x", "Tags.member.1.Value", "y"), code: "InvalidParameterValue", status: 400},
		{name: "51 session tags", req: assume(admin, tagParams(51, 0, 0)...), code: "ValidationError", status: 400},
		{name: "transitive key not among tags", req: assume(admin, "TransitiveTagKeys.member.1", "team"), code: "InvalidParameterValue", status: 400},
		{name: "malformed session policy", req: assume(admin, "Policy", `{"Statement":`), code: "MalformedPolicyDocument", status: 400},
		{name: "role ARN with the wrong path", req: rawReq{body: stsForm("AssumeRole", "RoleArn", "arn:aws:iam::111122223333:role/other/app", "RoleSessionName", "sess"), signAs: admin}, code: "AccessDenied"},
		{name: "malformed policy ARN", req: assume(admin, "PolicyArns.member.1.arn", "arn:aws:s3:::bucket"), code: "ValidationError", status: 400},
		{name: "ExternalId of 1225 characters", req: assume(admin, "ExternalId", strings.Repeat("e", 1225)), code: "ValidationError", status: 400},
		{name: "SourceIdentity with a space", req: assume(admin, "SourceIdentity", "a b"), code: "ValidationError", status: 400},
		{name: "session tag key with a star", req: assume(admin, "Tags.member.1.Key", "a*b", "Tags.member.1.Value", "y"), code: "ValidationError", status: 400},
		{name: "GetSessionToken with session credentials", req: rawReq{body: stsForm("GetSessionToken"), signAs: roleSess}, code: "AccessDenied"},

		// Signatures and credentials.
		{name: "missing Authorization", req: rawReq{body: listRoles}, code: "MissingAuthenticationToken"},
		{name: "tampered signature", req: rawReq{body: listRoles, signAs: admin, after: editAuth(func(a string) string {
			return a[:len(a)-1] + map[bool]string{true: "1", false: "0"}[a[len(a)-1] == '0']
		})}, code: "SignatureDoesNotMatch"},
		{name: "body changed after signing", req: rawReq{body: listRoles, signAs: admin, after: func(r *http.Request) {
			altered := iamForm("DeleteRole", "RoleName", "app")
			r.Body, r.GetBody, r.ContentLength = io.NopCloser(strings.NewReader(altered)), nil, int64(len(altered))
		}}, code: "SignatureDoesNotMatch"},
		{name: "wrong secret key", req: rawReq{body: listRoles, signAs: &creds{admin.id, strings.Repeat("x", 40), ""}}, code: "SignatureDoesNotMatch"},
		{name: "credential scope names s3", req: rawReq{body: listRoles, signAs: admin, service: "s3"}, code: "SignatureDoesNotMatch"},
		{name: "STS call scoped to iam", req: rawReq{body: stsForm("GetCallerIdentity"), signAs: admin, service: "iam"}, code: "SignatureDoesNotMatch"},
		{name: "X-Amz-Date 20 minutes ahead", req: rawReq{body: listRoles, signAs: admin, at: 20 * time.Minute}, code: "RequestTimeTooSkewed"},
		{name: "X-Amz-Date 20 minutes behind", req: rawReq{body: listRoles, signAs: admin, at: -20 * time.Minute}, code: "RequestTimeTooSkewed"},
		{name: "no Signature", req: rawReq{body: listRoles, signAs: admin, after: editAuth(func(a string) string { return a[:strings.Index(a, ", Signature=")] })}, code: "IncompleteSignature", status: 400},
		{name: "no Credential", req: rawAuth("AWS4-HMAC-SHA256 SignedHeaders=host;x-amz-date, Signature=abcd"), code: "IncompleteSignature", status: 400},
		{name: "short credential scope", req: rawAuth("AWS4-HMAC-SHA256 Credential=" + inst.AccessKeyID + "/2024, SignedHeaders=host;x-amz-date, Signature=abcd"), code: "IncompleteSignature", status: 400},
		{name: "pair without equal sign", req: rawAuth("AWS4-HMAC-SHA256 " + fullCred + ", SignedHeaders, Signature=abcd"), code: "IncompleteSignature", status: 400},
		{name: "SigV2 Authorization", req: rawAuth("AWS " + inst.AccessKeyID + ":c2lnbmF0dXJl"), code: "IncompleteSignature", status: 400},
		{name: "no X-Amz-Date", req: rawReq{body: listRoles, signAs: admin, after: func(r *http.Request) { r.Header.Del("X-Amz-Date") }}, code: "IncompleteSignature", status: 400},
		{name: "X-Amz-Date not ISO 8601", req: rawReq{body: listRoles, signAs: admin, after: setHeader("X-Amz-Date", "yesterday")}, code: "IncompleteSignature", status: 400},
		{name: "presigned URL past X-Amz-Expires", req: rawReq{body: stsForm("GetCallerIdentity"), signAs: admin, presign: true, at: -5 * time.Minute}, code: "AccessDenied"},
		{name: "presigned URL with a tampered signature", req: rawReq{body: stsForm("GetCallerIdentity"), signAs: admin, presign: true, after: func(r *http.Request) {
			q := r.URL.Query()
			q.Set("X-Amz-Signature", strings.Repeat("0", 64))
			r.URL.RawQuery = q.Encode()
		}}, code: "SignatureDoesNotMatch"},
		{name: "presigned URL with an expired session token", req: rawReq{body: stsForm("GetCallerIdentity"), signAs: expired, presign: true}, code: "ExpiredToken"},
		{name: "session token without a signature", req: rawReq{body: listRoles, after: setHeader("X-Amz-Security-Token", roleSess.token)}, code: "MissingAuthenticationToken"},
		{name: "unknown access key", req: rawReq{body: listRoles, signAs: &creds{"AKIAAAAAAAAAAAAAAAAA", admin.secret, ""}}, code: "InvalidClientTokenId"},
		{name: "tampered session token", req: rawReq{body: stsForm("GetCallerIdentity"), signAs: tampered}, code: "InvalidClientTokenId"},
		{name: "session token of another key", req: rawReq{body: stsForm("GetCallerIdentity"), signAs: swapped}, code: "InvalidClientTokenId"},
		{name: "session token not ours", req: rawReq{body: stsForm("GetCallerIdentity"), signAs: &creds{roleSess.id, roleSess.secret, "FwoGZXIvYXdzEBYaDexample"}}, code: "InvalidClientTokenId"},
		{name: "expired session token", req: rawReq{body: stsForm("GetCallerIdentity"), signAs: expired}, code: "ExpiredToken"},
		{name: "expired session token on IAM", req: rawReq{body: iamForm("DeleteRole", "RoleName", "app"), signAs: expired}, code: "ExpiredToken"},

		// Web identity tokens.
		{name: "alg none", req: webIdentity(tokens["alg none"]), code: "InvalidIdentityToken", status: 400},
		{name: "HS256 keyed with the RSA public key (PEM)", req: webIdentity(tokens["HS256 PEM"]), code: "InvalidIdentityToken", status: 400},
		{name: "HS256 keyed with the RSA public key (DER)", req: webIdentity(tokens["HS256 DER"]), code: "InvalidIdentityToken", status: 400},
		{name: "unknown kid", req: webIdentity(tokens["unknown kid"]), code: "InvalidIdentityToken", status: 400},
		{name: "signed by another issuer's key", req: webIdentity(tokens["foreign key"]), code: "InvalidIdentityToken", status: 400},
		{name: "wrong iss", req: webIdentity(tokens["wrong iss"]), code: "InvalidIdentityToken", status: 400},
		{name: "http iss", req: webIdentity(tokens["http iss"]), code: "InvalidIdentityToken", status: 400},
		{name: "issuer without provider", req: webIdentity(tokens["no provider"]), code: "InvalidIdentityToken", status: 400},
		{name: "wrong aud", req: webIdentity(tokens["wrong aud"]), code: "InvalidIdentityToken", status: 400},
		{name: "expired exp", req: webIdentity(tokens["expired"]), code: "ExpiredTokenException", status: 400},
		{name: "future nbf", req: webIdentity(tokens["future nbf"]), code: "InvalidIdentityToken", status: 400},
		{name: "garbage JWT", req: webIdentity(tokens["garbage"]), code: "InvalidIdentityToken", status: 400},
		{name: "three dots", req: webIdentity(tokens["three dots"]), code: "InvalidIdentityToken", status: 400},
		{name: "subject the trust policy rejects", req: webIdentity(tokens["other subject"]), code: "AccessDenied"},
		{name: "token without exp", req: webIdentity(tokens["no exp"]), code: "InvalidIdentityToken", status: 400},
		{name: "JWS JSON serialization", req: webIdentity(jwsJSON(t, tokens["valid"])), code: "InvalidIdentityToken", status: 400},
		{name: "web identity without token", req: rawReq{body: stsForm("AssumeRoleWithWebIdentity", "RoleArn", irsaRole, "RoleSessionName", "web")}, code: "ValidationError", status: 400},
		{name: "web identity token too short", req: webIdentity("abc"), code: "ValidationError", status: 400},
		{name: "web identity for a malformed role ARN", req: rawReq{body: stsForm("AssumeRoleWithWebIdentity", "RoleArn", "irsa", "RoleSessionName", "web", "WebIdentityToken", tokens["valid"])}, code: "ValidationError", status: 400},
	}

	client := &http.Client{Timeout: 10 * time.Second}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := storeSnapshot(t, ic)
			auditBefore := len(inst.AuditLog(t))
			resp, err := client.Do(tc.req.build(t, inst.URL))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			want := tc.status
			if want == 0 {
				want = statusFor[tc.code]
			}
			if got := errorCode(resp, body); got != tc.code || resp.StatusCode != want {
				t.Errorf("got %d %q, want %d %q\n%s", resp.StatusCode, got, want, tc.code, body)
			}
			if resp.StatusCode < 400 || resp.StatusCode >= 500 {
				t.Errorf("status %d is not a client error", resp.StatusCode)
			}
			for _, s := range append(secrets, admin.secret) {
				if bytes.Contains(body, []byte(s)) {
					t.Errorf("response body echoes a secret")
				}
			}
			// Exactly one audit record, carrying the error code.
			added := strings.Split(strings.TrimSpace(inst.AuditLog(t)[auditBefore:]), "\n")
			var rec struct{ ErrorCode string }
			if len(added) != 1 || json.Unmarshal([]byte(added[0]), &rec) != nil || rec.ErrorCode != tc.code {
				t.Errorf("audit records %q, want one with errorCode %q", added, tc.code)
			}
			if after := storeSnapshot(t, ic); after != before {
				t.Errorf("store changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
	if len(cases) < 40 {
		t.Errorf("only %d bad-input cases", len(cases))
	}
	log := inst.AuditLog(t)
	for i, s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("audit log holds secret #%d (%.12s…)", i, s)
		}
	}
	if !strings.Contains(log, "HIDDEN_DUE_TO_SECURITY_REASONS") {
		t.Error("audit log never redacted the web identity tokens")
	}
}

func sdkTags(kv []string) []iamtypes.Tag {
	var tags []iamtypes.Tag
	for i := 0; i+3 < len(kv); i += 4 {
		tags = append(tags, iamtypes.Tag{Key: aws.String(kv[i+1]), Value: aws.String(kv[i+3])})
	}
	return tags
}

// jwsJSON re-encodes a compact JWS in the flattened JSON serialization,
// which AWS does not accept as a web identity token.
func jwsJSON(t *testing.T, compact string) string {
	t.Helper()
	parts := strings.Split(compact, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", compact)
	}
	return mustJSON(map[string]string{"protected": parts[0], "payload": parts[1], "signature": parts[2]})
}
