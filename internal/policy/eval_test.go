package policy

import (
	"fmt"
	"reflect"
	"testing"
)

func mustParse(t *testing.T, doc string, kind Kind) *Document {
	t.Helper()
	d, err := Parse(doc, kind)
	if err != nil {
		t.Fatalf("Parse(%s): %v", doc, err)
	}
	return d
}

// ctx builds a Context from alternating keys and values; a value of nil
// sets no values, and a []string sets several.
func ctx(kv ...any) Context {
	c := Context{}
	for i := 0; i < len(kv); i += 2 {
		switch v := kv[i+1].(type) {
		case string:
			c.Set(kv[i].(string), v)
		case []string:
			c.Set(kv[i].(string), v...)
		case nil:
			c.Set(kv[i].(string))
		}
	}
	return c
}

func TestDecisionString(t *testing.T) {
	for d, want := range map[Decision]string{ImplicitDeny: "implicitDeny", Allow: "allowed", ExplicitDeny: "explicitDeny"} {
		if got := d.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", d, got, want)
		}
	}
}

func TestContext(t *testing.T) {
	c := Context{}
	c.Set("aws:RequestTag/Team", "a", "b")
	if v, ok := c.Get("AWS:requesttag/team"); !ok || !reflect.DeepEqual(v, []string{"a", "b"}) {
		t.Errorf("Get = %v, %v", v, ok)
	}
	c.Set("aws:TagKeys")
	if v, ok := c.Get("aws:tagkeys"); !ok || v == nil || len(v) != 0 {
		t.Errorf("empty Set: Get = %#v, %v", v, ok)
	}
	if _, ok := Context(nil).Get("x:y"); ok {
		t.Error("nil Context has a key")
	}
}

func TestEvaluateIdentity(t *testing.T) {
	doc := mustParse(t, `{
	  "Version": "2012-10-17",
	  "Statement": [
	    {"Sid": "ReadAll", "Effect": "Allow", "Action": ["s3:Get*", "s3:List?ucket"], "Resource": "*"},
	    {"Sid": "NoSecrets", "Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::secrets/*"},
	    {"Effect": "Allow", "NotAction": ["iam:*", "s3:*"], "Resource": "arn:aws:ec2:*:123456789012:*"},
	    {"Sid": "OnlyOwnBucket", "Effect": "Deny", "Action": "s3:PutObject", "NotResource": "arn:aws:s3:::mine/*"},
	    {"Sid": "Put", "Effect": "Allow", "Action": "s3:PutObject", "Resource": "*"}
	  ]
	}`, Identity)

	tests := []struct {
		action, resource string
		want             Decision
		matched          []MatchedStatement
	}{
		{"s3:GetObject", "arn:aws:s3:::data/k", Allow, []MatchedStatement{{0, "ReadAll", "Allow"}}},
		{"S3:getobject", "arn:aws:s3:::data/k", Allow, nil}, // actions ignore case
		{"s3:ListBucket", "arn:aws:s3:::data", Allow, nil},
		{"s3:ListBuckets", "arn:aws:s3:::data", ImplicitDeny, nil},
		{"s3:GetObject", "arn:aws:s3:::secrets/k", ExplicitDeny, []MatchedStatement{{1, "NoSecrets", "Deny"}}},
		{"s3:GetObject", "arn:aws:s3:::Secrets/k", Allow, nil}, // resources respect case
		{"s3:DeleteObject", "arn:aws:s3:::data/k", ImplicitDeny, nil},
		{"ec2:RunInstances", "arn:aws:ec2:eu-west-1:123456789012:instance/i-1", Allow, []MatchedStatement{{2, "", "Allow"}}},
		{"ec2:RunInstances", "arn:aws:ec2:eu-west-1:999999999999:instance/i-1", ImplicitDeny, nil},
		{"iam:CreateUser", "arn:aws:ec2:eu-west-1:123456789012:x", ImplicitDeny, nil},
		{"s3:PutObject", "arn:aws:s3:::mine/k", Allow, []MatchedStatement{{4, "Put", "Allow"}}},
		{"s3:PutObject", "arn:aws:s3:::other/k", ExplicitDeny, []MatchedStatement{{3, "OnlyOwnBucket", "Deny"}}},
	}
	for _, tt := range tests {
		got, matched := doc.Evaluate(&Request{Action: tt.action, Resource: tt.resource})
		if got != tt.want {
			t.Errorf("%s on %s = %v, want %v", tt.action, tt.resource, got, tt.want)
		}
		if tt.matched != nil && !reflect.DeepEqual(matched, tt.matched) {
			t.Errorf("%s on %s matched %+v, want %+v", tt.action, tt.resource, matched, tt.matched)
		}
		if got == ImplicitDeny && matched != nil {
			t.Errorf("%s on %s: implicit deny matched %+v", tt.action, tt.resource, matched)
		}
	}
}

func TestEvaluateCombined(t *testing.T) {
	allow := mustParse(t, `{"Statement":{"Effect":"Allow","Action":"sts:*","Resource":"*"}}`, Identity)
	deny := mustParse(t, `{"Statement":{"Effect":"Deny","Action":"sts:AssumeRole","Resource":"arn:aws:iam::*:role/admin"}}`, Identity)
	other := mustParse(t, `{"Statement":{"Effect":"Allow","Action":"s3:*","Resource":"*"}}`, Identity)
	admin := &Request{Action: "sts:AssumeRole", Resource: "arn:aws:iam::123456789012:role/admin"}
	dev := &Request{Action: "sts:AssumeRole", Resource: "arn:aws:iam::123456789012:role/dev"}
	tests := []struct {
		req  *Request
		docs []*Document
		want Decision
	}{
		{admin, nil, ImplicitDeny},
		{admin, []*Document{other}, ImplicitDeny},
		{admin, []*Document{allow}, Allow},
		{admin, []*Document{allow, deny}, ExplicitDeny},
		{admin, []*Document{deny, allow}, ExplicitDeny},
		{dev, []*Document{other, nil, deny, allow}, Allow},
	}
	for i, tt := range tests {
		if got := Evaluate(tt.req, tt.docs...); got != tt.want {
			t.Errorf("%d: Evaluate = %v, want %v", i, got, tt.want)
		}
	}
}

func TestEvaluateTrust(t *testing.T) {
	podIdentity := mustParse(t, podIdentityTrust, Trust)
	irsa := mustParse(t, irsaTrust, Trust)
	accounts := mustParse(t, `{"Statement":{"Effect":"Allow","Principal":{"AWS":["111111111111","arn:aws:iam::222222222222:root","arn:aws:iam::333333333333:role/ci"]},"Action":"sts:AssumeRole"}}`, Trust)
	anyone := mustParse(t, `{"Statement":{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole"}}`, Trust)
	anyAWS := mustParse(t, `{"Statement":{"Effect":"Allow","Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}}`, Trust)
	notPrincipal := mustParse(t, `{"Statement":[
		{"Effect":"Allow","Principal":{"AWS":"444444444444"},"Action":"sts:AssumeRole"},
		{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::444444444444:role/trusted"},"Action":"sts:AssumeRole"}]}`, Trust)

	pods := &Principal{Type: "Service", ID: "pods.eks.amazonaws.com"}
	podsUpper := &Principal{Type: "Service", ID: "PODS.EKS.amazonaws.com"}
	ec2 := &Principal{Type: "Service", ID: "ec2.amazonaws.com"}
	oidc := &Principal{Type: "Federated", ID: "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/ABC"}
	otherOIDC := &Principal{Type: "Federated", ID: "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/XYZ"}
	user := func(acct, name string) *Principal {
		return &Principal{Type: "AWS", Account: acct, ARNs: []string{"arn:aws:iam::" + acct + ":user/" + name}}
	}
	session := func(acct, role string) *Principal {
		return &Principal{Type: "AWS", Account: acct, ARNs: []string{
			"arn:aws:sts::" + acct + ":assumed-role/" + role + "/s1",
			"arn:aws:iam::" + acct + ":role/" + role,
		}}
	}
	irsaCtx := ctx("oidc.example.com/id/ABC:sub", "system:serviceaccount:default:my-sa", "oidc.example.com/id/ABC:aud", "sts.amazonaws.com")

	tests := []struct {
		name string
		doc  *Document
		p    *Principal
		act  string
		c    Context
		want Decision
	}{
		{"pod identity assume", podIdentity, pods, "sts:AssumeRole", nil, Allow},
		{"pod identity tag", podIdentity, pods, "sts:TagSession", nil, Allow},
		{"pod identity service case", podIdentity, podsUpper, "sts:AssumeRole", nil, Allow},
		{"pod identity other action", podIdentity, pods, "sts:AssumeRoleWithWebIdentity", nil, ImplicitDeny},
		{"pod identity other service", podIdentity, ec2, "sts:AssumeRole", nil, ImplicitDeny},
		{"pod identity aws caller", podIdentity, user("111111111111", "bob"), "sts:AssumeRole", nil, ImplicitDeny},
		{"irsa", irsa, oidc, "sts:AssumeRoleWithWebIdentity", irsaCtx, Allow},
		{"irsa wrong provider", irsa, otherOIDC, "sts:AssumeRoleWithWebIdentity", irsaCtx, ImplicitDeny},
		{"irsa wrong sub", irsa, oidc, "sts:AssumeRoleWithWebIdentity", ctx("oidc.example.com/id/ABC:sub", "system:serviceaccount:default:other", "oidc.example.com/id/ABC:aud", "sts.amazonaws.com"), ImplicitDeny},
		{"irsa missing aud", irsa, oidc, "sts:AssumeRoleWithWebIdentity", ctx("oidc.example.com/id/ABC:sub", "system:serviceaccount:default:my-sa"), ImplicitDeny},
		{"account id", accounts, user("111111111111", "bob"), "sts:AssumeRole", nil, Allow},
		{"account id role session", accounts, session("111111111111", "any"), "sts:AssumeRole", nil, Allow},
		{"root arn", accounts, user("222222222222", "alice"), "sts:AssumeRole", nil, Allow},
		{"role arn matches session", accounts, session("333333333333", "ci"), "sts:AssumeRole", nil, Allow},
		{"other role in account", accounts, session("333333333333", "dev"), "sts:AssumeRole", nil, ImplicitDeny},
		{"other account", accounts, user("555555555555", "bob"), "sts:AssumeRole", nil, ImplicitDeny},
		{"account without id", accounts, &Principal{Type: "AWS"}, "sts:AssumeRole", nil, ImplicitDeny},
		{"service is not account", accounts, &Principal{Type: "Service", ID: "111111111111"}, "sts:AssumeRole", nil, ImplicitDeny},
		{"star user", anyone, user("555555555555", "bob"), "sts:AssumeRole", nil, Allow},
		{"star service", anyone, pods, "sts:AssumeRole", nil, Allow},
		{"aws star service", anyAWS, pods, "sts:AssumeRole", nil, Allow},
		{"aws star federated", anyAWS, oidc, "sts:AssumeRole", nil, Allow},
		{"notprincipal trusted", notPrincipal, session("444444444444", "trusted"), "sts:AssumeRole", nil, Allow},
		{"notprincipal untrusted", notPrincipal, session("444444444444", "other"), "sts:AssumeRole", nil, ExplicitDeny},
		{"nil principal skips check", podIdentity, nil, "sts:AssumeRole", nil, Allow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := tt.doc.Evaluate(&Request{Principal: tt.p, Action: tt.act, Resource: "arn:aws:iam::123456789012:role/R", Context: tt.c})
			if got != tt.want {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConditions(t *testing.T) {
	tests := []struct {
		cond string // the Condition object
		c    Context
		want bool
	}{
		// Strings.
		{`{"StringEquals":{"aws:k":"v"}}`, ctx("aws:k", "v"), true},
		{`{"StringEquals":{"aws:k":"v"}}`, ctx("AWS:K", "V"), false},
		{`{"StringEquals":{"aws:k":["a","v"]}}`, ctx("aws:k", "v"), true},
		{`{"StringEquals":{"aws:k":"v*"}}`, ctx("aws:k", "vv"), false},
		{`{"StringEquals":{"aws:k":"v"}}`, ctx(), false},
		{`{"StringNotEquals":{"aws:k":"v"}}`, ctx("aws:k", "w"), true},
		{`{"StringNotEquals":{"aws:k":"v"}}`, ctx("aws:k", "v"), false},
		{`{"StringNotEquals":{"aws:k":"v"}}`, ctx(), true}, // missing key
		{`{"StringNotEquals":{"aws:k":["a","b"]}}`, ctx("aws:k", "b"), false},
		{`{"StringEqualsIgnoreCase":{"aws:k":"Value"}}`, ctx("aws:k", "vALUE"), true},
		{`{"StringNotEqualsIgnoreCase":{"aws:k":"Value"}}`, ctx("aws:k", "vALUE"), false},
		{`{"StringNotEqualsIgnoreCase":{"aws:k":"Value"}}`, ctx("aws:k", "other"), true},
		{`{"StringLike":{"aws:k":"sys*:default:?b"}}`, ctx("aws:k", "system:serviceaccount:default:ab"), true},
		{`{"StringLike":{"aws:k":"sys*:default:?b"}}`, ctx("aws:k", "system:serviceaccount:default:b"), false},
		{`{"StringLike":{"aws:k":"A*"}}`, ctx("aws:k", "abc"), false},
		{`{"StringNotLike":{"aws:k":"a*"}}`, ctx("aws:k", "abc"), false},
		{`{"StringNotLike":{"aws:k":"a*"}}`, ctx("aws:k", "bcd"), true},
		{`{"StringNotLike":{"aws:k":"a*"}}`, ctx(), true},
		// Several keys AND; several operators AND.
		{`{"StringEquals":{"aws:a":"1","aws:b":"2"}}`, ctx("aws:a", "1", "aws:b", "2"), true},
		{`{"StringEquals":{"aws:a":"1","aws:b":"2"}}`, ctx("aws:a", "1", "aws:b", "3"), false},
		{`{"StringEquals":{"aws:a":"1"},"StringLike":{"aws:b":"x*"}}`, ctx("aws:a", "1", "aws:b", "y"), false},
		{`{"StringEquals":{"aws:a":"1"},"StringLike":{"aws:b":"x*"}}`, ctx("aws:a", "1", "aws:b", "xy"), true},
		// IfExists.
		{`{"StringEqualsIfExists":{"aws:k":"v"}}`, ctx(), true},
		{`{"StringEqualsIfExists":{"aws:k":"v"}}`, ctx("aws:k", "w"), false},
		{`{"StringEqualsIfExists":{"aws:k":"v"}}`, ctx("aws:k", "v"), true},
		{`{"NumericLessThanIfExists":{"aws:n":"5"}}`, ctx(), true},
		{`{"ArnLikeIfExists":{"aws:SourceArn":"arn:aws:s3:::b"}}`, ctx(), true},
		// Numbers.
		{`{"NumericEquals":{"aws:n":10}}`, ctx("aws:n", "10.0"), true},
		{`{"NumericNotEquals":{"aws:n":10}}`, ctx("aws:n", "11"), true},
		{`{"NumericNotEquals":{"aws:n":10}}`, ctx(), true},
		{`{"NumericLessThan":{"aws:n":10}}`, ctx("aws:n", "9"), true},
		{`{"NumericLessThan":{"aws:n":10}}`, ctx("aws:n", "10"), false},
		{`{"NumericLessThanEquals":{"aws:n":10}}`, ctx("aws:n", "10"), true},
		{`{"NumericGreaterThan":{"aws:n":"-1.5"}}`, ctx("aws:n", "0"), true},
		{`{"NumericGreaterThanEquals":{"aws:n":"3"}}`, ctx("aws:n", "2"), false},
		{`{"NumericGreaterThan":{"aws:n":"3"}}`, ctx("aws:n", "x"), false},
		{`{"NumericLessThan":{"aws:n":10}}`, ctx(), false},
		// Dates.
		{`{"DateLessThan":{"aws:CurrentTime":"2024-01-01T00:00:00Z"}}`, ctx("aws:CurrentTime", "2023-12-31T23:59:59Z"), true},
		{`{"DateLessThan":{"aws:CurrentTime":"2024-01-01"}}`, ctx("aws:CurrentTime", "2024-01-01T00:00:01Z"), false},
		{`{"DateGreaterThan":{"aws:CurrentTime":"2024-01-01T01:00:00+01:00"}}`, ctx("aws:CurrentTime", "2024-01-01T00:00:01Z"), true},
		{`{"DateEquals":{"aws:EpochTime":1704067200}}`, ctx("aws:EpochTime", "2024-01-01T00:00:00Z"), true},
		{`{"DateNotEquals":{"aws:EpochTime":"2024-01-01T00:00:00Z"}}`, ctx("aws:EpochTime", "1704067200"), false},
		{`{"DateLessThanEquals":{"aws:t":"2024-01-01T00:00:00.5Z"}}`, ctx("aws:t", "2024-01-01T00:00:00.5Z"), true},
		{`{"DateGreaterThanEquals":{"aws:t":"2024-01-01"}}`, ctx("aws:t", "2023-06-01"), false},
		{`{"DateGreaterThanEquals":{"aws:t":"2024-01-01"}}`, ctx("aws:t", "garbage"), false},
		// Bool, binary.
		{`{"Bool":{"aws:SecureTransport":true}}`, ctx("aws:SecureTransport", "true"), true},
		{`{"Bool":{"aws:SecureTransport":"false"}}`, ctx("aws:SecureTransport", "TRUE"), false},
		{`{"Bool":{"aws:SecureTransport":"false"}}`, ctx(), false},
		{`{"BinaryEquals":{"aws:b":"QmluYXJ5"}}`, ctx("aws:b", "QmluYXJ5"), true},
		{`{"BinaryEquals":{"aws:b":"QmluYXJ5"}}`, ctx("aws:b", "Binary"), true},
		{`{"BinaryEquals":{"aws:b":"QmluYXJ5"}}`, ctx("aws:b", "binary"), false},
		// IP addresses.
		{`{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx("aws:SourceIp", "10.1.2.3"), true},
		{`{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx("aws:SourceIp", "11.1.2.3"), false},
		{`{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx("aws:SourceIp", "::ffff:10.1.2.3"), true},
		{`{"IpAddress":{"aws:SourceIp":"192.0.2.7"}}`, ctx("aws:SourceIp", "192.0.2.7"), true},
		{`{"IpAddress":{"aws:SourceIp":["192.0.2.0/24","2001:db8::/32"]}}`, ctx("aws:SourceIp", "2001:db8::1"), true},
		{`{"IpAddress":{"aws:SourceIp":"2001:db8::/32"}}`, ctx("aws:SourceIp", "2001:db9::1"), false},
		{`{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx("aws:SourceIp", "not-an-ip"), false},
		{`{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx("aws:SourceIp", "11.1.2.3"), true},
		{`{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx("aws:SourceIp", "10.1.2.3"), false},
		{`{"NotIpAddress":{"aws:SourceIp":"10.0.0.0/8"}}`, ctx(), true},
		// ARNs.
		{`{"ArnEquals":{"aws:SourceArn":"arn:aws:iam::123456789012:role/R"}}`, ctx("aws:SourceArn", "arn:aws:iam::123456789012:role/R"), true},
		{`{"ArnLike":{"aws:SourceArn":"arn:aws:iam::*:role/*"}}`, ctx("aws:SourceArn", "arn:aws:iam::123456789012:role/a/b"), true},
		{`{"ArnLike":{"aws:SourceArn":"arn:aws:iam::*:role/*"}}`, ctx("aws:SourceArn", "arn:aws:iam::123456789012:user/a"), false},
		// A wildcard in one component must not span into the next.
		{`{"ArnLike":{"aws:SourceArn":"arn:aws:s3:*:bucket"}}`, ctx("aws:SourceArn", "arn:aws:s3:::bucket"), false},
		{`{"ArnLike":{"aws:SourceArn":"arn:aws:*:*:*:*"}}`, ctx("aws:SourceArn", "arn:aws:sqs:us-east-1:123456789012:q:x"), true},
		{`{"ArnLike":{"aws:SourceArn":"arn:aws:*:*:*:*"}}`, ctx("aws:SourceArn", "not-an-arn"), false},
		{`{"ArnLike":{"aws:SourceArn":"*"}}`, ctx("aws:SourceArn", "arn:aws:s3:::b"), true},
		{`{"ArnNotEquals":{"aws:SourceArn":"arn:aws:s3:::b"}}`, ctx("aws:SourceArn", "arn:aws:s3:::c"), true},
		{`{"ArnNotLike":{"aws:SourceArn":"arn:aws:s3:::b*"}}`, ctx("aws:SourceArn", "arn:aws:s3:::bucket"), false},
		{`{"ArnNotLike":{"aws:SourceArn":"arn:aws:s3:::b*"}}`, ctx(), true},
		// Null.
		{`{"Null":{"aws:TokenIssueTime":"true"}}`, ctx(), true},
		{`{"Null":{"aws:TokenIssueTime":"true"}}`, ctx("aws:TokenIssueTime", "x"), false},
		{`{"Null":{"aws:TokenIssueTime":false}}`, ctx("aws:TokenIssueTime", "x"), true},
		{`{"Null":{"aws:TokenIssueTime":false}}`, ctx(), false},
		// Set operators.
		{`{"ForAnyValue:StringEquals":{"aws:TagKeys":["a","b"]}}`, ctx("aws:TagKeys", []string{"x", "b"}), true},
		{`{"ForAnyValue:StringEquals":{"aws:TagKeys":["a","b"]}}`, ctx("aws:TagKeys", []string{"x", "y"}), false},
		{`{"ForAnyValue:StringEquals":{"aws:TagKeys":["a","b"]}}`, ctx(), false},
		{`{"ForAnyValue:StringEquals":{"aws:TagKeys":["a","b"]}}`, ctx("aws:TagKeys", nil), false},
		{`{"ForAllValues:StringEquals":{"aws:TagKeys":["a","b"]}}`, ctx("aws:TagKeys", []string{"a", "b"}), true},
		{`{"ForAllValues:StringEquals":{"aws:TagKeys":["a","b"]}}`, ctx("aws:TagKeys", []string{"a", "c"}), false},
		{`{"ForAllValues:StringEquals":{"aws:TagKeys":["a","b"]}}`, ctx(), true},
		{`{"ForAllValues:StringEquals":{"aws:TagKeys":["a","b"]}}`, ctx("aws:TagKeys", nil), true},
		{`{"ForAllValues:StringLike":{"aws:TagKeys":"team-*"}}`, ctx("aws:TagKeys", []string{"team-a", "team-b"}), true},
		{`{"ForAnyValue:StringNotEquals":{"aws:TagKeys":"a"}}`, ctx("aws:TagKeys", []string{"a", "b"}), true},
		{`{"ForAnyValue:StringNotEquals":{"aws:TagKeys":"a"}}`, ctx("aws:TagKeys", []string{"a"}), false},
		{`{"ForAllValues:StringNotEquals":{"aws:TagKeys":"a"}}`, ctx("aws:TagKeys", []string{"b", "c"}), true},
		{`{"ForAllValues:StringNotEquals":{"aws:TagKeys":"a"}}`, ctx("aws:TagKeys", []string{"b", "a"}), false},
		{`{"ForAnyValue:StringNotEquals":{"aws:TagKeys":"a"}}`, ctx(), false},
		{`{"ForAnyValue:StringEqualsIfExists":{"aws:TagKeys":"a"}}`, ctx(), true},
		{`{"ForAnyValue:IpAddress":{"aws:ips":"10.0.0.0/8"}}`, ctx("aws:ips", []string{"1.1.1.1", "10.0.0.1"}), true},
		// Single-valued operators on multi-valued keys: any value matches;
		// for the Not forms, no value may match.
		{`{"StringEquals":{"aws:k":"a"}}`, ctx("aws:k", []string{"b", "a"}), true},
		{`{"StringNotEquals":{"aws:k":"a"}}`, ctx("aws:k", []string{"b", "a"}), false},
		// Operators are matched without regard to case.
		{`{"forallvalues:stringequalsifexists":{"aws:k":"a"}}`, ctx("aws:k", "a"), true},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s/%v", tt.cond, map[string][]string(tt.c))
		doc := `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":` + tt.cond + `}}`
		d, err := Parse(doc, Identity)
		if err != nil {
			t.Errorf("%s: Parse: %v", name, err)
			continue
		}
		got, _ := d.Evaluate(&Request{Action: "s3:GetObject", Resource: "arn:aws:s3:::b/k", Context: tt.c})
		if (got == Allow) != tt.want {
			t.Errorf("%s: got %v, want match=%v", name, got, tt.want)
		}
	}
}

func TestPolicyVariables(t *testing.T) {
	tests := []struct {
		version  string
		resource string
		cond     string
		c        Context
		target   string
		want     bool
	}{
		{Version2012, "arn:aws:s3:::b/${aws:username}/*", "", ctx("aws:username", "bob"), "arn:aws:s3:::b/bob/x", true},
		{Version2012, "arn:aws:s3:::b/${aws:username}/*", "", ctx("aws:username", "bob"), "arn:aws:s3:::b/alice/x", false},
		{Version2012, "arn:aws:s3:::b/${aws:username}/*", "", ctx(), "arn:aws:s3:::b//x", false},
		{Version2012, "arn:aws:s3:::b/${aws:username}/*", "", ctx("aws:username", []string{"a", "b"}), "arn:aws:s3:::b/a/x", false},
		{Version2012, "arn:aws:s3:::b/${aws:PrincipalTag/Team}/*", "", ctx("aws:principaltag/team", "red"), "arn:aws:s3:::b/red/x", true},
		{Version2012, "arn:aws:s3:::b/${aws:PrincipalTag/team, 'shared'}/*", "", ctx(), "arn:aws:s3:::b/shared/x", true},
		{Version2012, "arn:aws:s3:::b/${aws:PrincipalTag/team,'shared'}/*", "", ctx("aws:PrincipalTag/team", "red"), "arn:aws:s3:::b/shared/x", false},
		{Version2012, "arn:aws:s3:::b/${*}${?}${$}", "", nil, "arn:aws:s3:::b/*?$", true},
		{Version2012, "arn:aws:s3:::b/${*}", "", nil, "arn:aws:s3:::b/anything", false},
		// A value is literal, even when it holds a wildcard character.
		{Version2012, "arn:aws:s3:::b/${aws:username}", "", ctx("aws:username", "*"), "arn:aws:s3:::b/bob", false},
		{Version2012, "arn:aws:s3:::b/${aws:userid}", "", ctx("aws:userid", "AIDA:x"), "arn:aws:s3:::b/AIDA:x", true},
		// Before 2012-10-17 variables are plain text.
		{Version2008, "arn:aws:s3:::b/${aws:username}", "", ctx("aws:username", "bob"), "arn:aws:s3:::b/bob", false},
		{Version2008, "arn:aws:s3:::b/${aws:username}", "", ctx("aws:username", "bob"), "arn:aws:s3:::b/${aws:username}", true},
		// Conditions.
		{Version2012, "*", `{"StringEquals":{"aws:ResourceTag/team":"${aws:PrincipalTag/team}"}}`, ctx("aws:ResourceTag/team", "red", "aws:PrincipalTag/Team", "red"), "arn:aws:s3:::b", true},
		{Version2012, "*", `{"StringEquals":{"aws:ResourceTag/team":"${aws:PrincipalTag/team}"}}`, ctx("aws:ResourceTag/team", "red", "aws:PrincipalTag/Team", "blue"), "arn:aws:s3:::b", false},
		{Version2012, "*", `{"StringEquals":{"aws:ResourceTag/team":"${aws:PrincipalTag/team}"}}`, ctx("aws:ResourceTag/team", "red"), "arn:aws:s3:::b", false},
		{Version2012, "*", `{"StringLike":{"s3:prefix":"home/${aws:username}/*"}}`, ctx("s3:prefix", "home/bob/docs", "aws:username", "bob"), "arn:aws:s3:::b", true},
		{Version2012, "*", `{"ArnLike":{"aws:SourceArn":"arn:aws:iam::${aws:PrincipalAccount}:role/*"}}`, ctx("aws:SourceArn", "arn:aws:iam::123456789012:role/x", "aws:PrincipalAccount", "123456789012"), "arn:aws:s3:::b", true},
		{Version2008, "*", `{"StringEquals":{"aws:k":"${aws:username}"}}`, ctx("aws:k", "bob", "aws:username", "bob"), "arn:aws:s3:::b", false},
	}
	for i, tt := range tests {
		cond := ""
		if tt.cond != "" {
			cond = `,"Condition":` + tt.cond
		}
		doc := fmt.Sprintf(`{"Version":%q,"Statement":{"Effect":"Allow","Action":"s3:*","Resource":%q%s}}`, tt.version, tt.resource, cond)
		d := mustParse(t, doc, Identity)
		got, _ := d.Evaluate(&Request{Action: "s3:GetObject", Resource: tt.target, Context: tt.c})
		if (got == Allow) != tt.want {
			t.Errorf("%d: %s on %s = %v, want match=%v", i, doc, tt.target, got, tt.want)
		}
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pat, s string
		want   bool
	}{
		{"", "", true},
		{"*", "", true},
		{"*", "a:b:c", true},
		{"a*c", "abbbc", true},
		{"a*c", "abbbd", false},
		{"a?c", "abc", true},
		{"a?c", "ac", false},
		{"*a*b*", "xxaxxbxx", true},
		{"*a*b*", "xxbxxaxx", false},
		{"é?", "éü", true},
		{"**", "x", true},
	}
	for _, tt := range tests {
		if got := matchPattern(tt.pat, tt.s, nil, false); got != tt.want {
			t.Errorf("match(%q, %q) = %v, want %v", tt.pat, tt.s, got, tt.want)
		}
	}
}
