package policy

import (
	"errors"
	"strings"
	"testing"
)

// stmt wraps statement JSON in a 2012-10-17 document.
func stmt(s string) string {
	return `{"Version":"2012-10-17","Statement":` + s + `}`
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		kind Kind
		doc  string
		want string
	}{
		{"not json", Identity, `not json`, "Syntax errors in policy."},
		{"empty", Identity, ``, "Syntax errors in policy."},
		{"white space", Identity, " \n\t", "Syntax errors in policy."},
		{"truncated", Identity, `{"Version":"2012-10-17","Statement":[`, "Unexpected end"},
		{"trailing garbage", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"*"}`) + ` x`, "Syntax errors in policy."},
		{"second document", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"*"}`) + `{}`, "Unexpected content"},
		{"array document", Identity, `[]`, "must be a JSON object"},
		{"string document", Identity, `"policy"`, "must be a JSON object"},
		{"invalid utf8", Identity, "{\"Id\":\"\xff\"}", "UTF-8"},
		{"trailing comma", Identity, `{"Statement":[{"Effect":"Allow",}]}`, "Syntax errors in policy."},
		{"duplicate top-level key", Identity, `{"Version":"2012-10-17","Version":"2012-10-17","Statement":[]}`, "Duplicate field Version"},
		{"duplicate statement key", Identity, stmt(`{"Effect":"Allow","Effect":"Deny","Action":"*","Resource":"*"}`), "Duplicate field Effect"},
		{"unknown top-level field", Identity, `{"Version":"2012-10-17","Statment":[]}`, "Unknown field Statment"},
		{"unknown statement field", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"*","Actions":"*"}`), "Unknown field Actions"},
		{"lower-case field", Identity, stmt(`{"effect":"Allow","Action":"*","Resource":"*"}`), "Unknown field effect"},
		{"wrong version", Identity, `{"Version":"2012-10-18","Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`, `invalid Version "2012-10-18"`},
		{"numeric version", Identity, `{"Version":2012,"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`, "Version must be a string"},
		{"id not string", Identity, `{"Id":1,"Statement":{"Effect":"Allow","Action":"*","Resource":"*"}}`, "Id must be a string"},
		{"missing statement", Identity, `{"Version":"2012-10-17"}`, "Missing required field Statement"},
		{"empty statement list", Identity, stmt(`[]`), "at least one statement"},
		{"statement is string", Identity, stmt(`"Allow"`), "Statement must be an object"},
		{"statement element is string", Identity, stmt(`["Allow"]`), "Statement must be an object"},
		{"missing effect", Identity, stmt(`{"Action":"*","Resource":"*"}`), "Missing required field Effect"},
		{"bad effect", Identity, stmt(`{"Effect":"Permit","Action":"*","Resource":"*"}`), `Invalid effect: "Permit"`},
		{"lower-case effect", Identity, stmt(`{"Effect":"allow","Action":"*","Resource":"*"}`), `Invalid effect: "allow"`},
		{"effect not string", Identity, stmt(`{"Effect":true,"Action":"*","Resource":"*"}`), "Invalid effect: boolean true"},
		{"sid with dash", Identity, stmt(`{"Sid":"a-b","Effect":"Allow","Action":"*","Resource":"*"}`), "Statement IDs (SID) must be alpha-numeric"},
		{"sid not string", Identity, stmt(`{"Sid":7,"Effect":"Allow","Action":"*","Resource":"*"}`), "Sid must be a string"},
		{"duplicate sid", Identity, stmt(`[{"Sid":"A","Effect":"Allow","Action":"*","Resource":"*"},{"Sid":"A","Effect":"Deny","Action":"*","Resource":"*"}]`), "must be unique"},
		{"missing action", Identity, stmt(`{"Effect":"Allow","Resource":"*"}`), "Missing required field Action"},
		{"action and notaction", Identity, stmt(`{"Effect":"Allow","Action":"*","NotAction":"s3:*","Resource":"*"}`), "both Action and NotAction"},
		{"empty action list", Identity, stmt(`{"Effect":"Allow","Action":[],"Resource":"*"}`), "must contain actions"},
		{"non-string action", Identity, stmt(`{"Effect":"Allow","Action":[1],"Resource":"*"}`), "Action must be a string or an array of strings; found number 1"},
		{"action object", Identity, stmt(`{"Effect":"Allow","Action":{"s3":"Get"},"Resource":"*"}`), "Action must be a string or an array of strings"},
		{"action without vendor", Identity, stmt(`{"Effect":"Allow","Action":"GetObject","Resource":"*"}`), "Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc."},
		{"action empty vendor", Identity, stmt(`{"Effect":"Allow","Action":":GetObject","Resource":"*"}`), "Actions/Conditions must be prefaced by a vendor"},
		{"notaction without vendor", Identity, stmt(`{"Effect":"Allow","NotAction":["s3:Get*","Put"],"Resource":"*"}`), `NotAction "Put"`},
		{"action two colons", Identity, stmt(`{"Effect":"Allow","Action":"s3:Get:Object","Resource":"*"}`), "only one colon"},
		{"action bad vendor", Identity, stmt(`{"Effect":"Allow","Action":"s 3:GetObject","Resource":"*"}`), "Vendor s 3 is not valid"},
		{"action empty name", Identity, stmt(`{"Effect":"Allow","Action":"s3:","Resource":"*"}`), "Action s3: is not valid"},
		{"missing resource", Identity, stmt(`{"Effect":"Allow","Action":"*"}`), "Missing required field Resource"},
		{"resource and notresource", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"*","NotResource":"*"}`), "both Resource and NotResource"},
		{"empty resource list", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":[]}`), "must contain resources"},
		{"resource not arn", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"bucket"}`), `Resource bucket must be in ARN format or "*".`},
		{"resource short arn", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::"}`), "must be in ARN format"},
		{"resource bad partition", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"arn:amazon:s3:::b"}`), `Partition "amazon" is not valid`},
		{"resource no vendor", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"arn:aws::::b"}`), "Resource vendor must be fully qualified"},
		{"resource number", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":5}`), "Resource must be a string"},
		{"principal in identity", Identity, stmt(`{"Effect":"Allow","Principal":"*","Action":"*","Resource":"*"}`), "Has prohibited field Principal"},
		{"notprincipal in identity", Identity, stmt(`{"Effect":"Allow","NotPrincipal":{"AWS":"123456789012"},"Action":"*","Resource":"*"}`), "Has prohibited field NotPrincipal"},
		{"missing principal in trust", Trust, stmt(`{"Effect":"Allow","Action":"sts:AssumeRole"}`), "Missing required field Principal"},
		{"resource in trust", Trust, stmt(`{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","Resource":"*"}`), "Has prohibited field Resource"},
		{"notresource in trust", Trust, stmt(`{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","NotResource":"*"}`), "Has prohibited field NotResource"},
		{"principal and notprincipal", Trust, stmt(`{"Effect":"Deny","Principal":"*","NotPrincipal":{"AWS":"123456789012"},"Action":"sts:AssumeRole"}`), "both Principal and NotPrincipal"},
		{"bad aws principal", Trust, stmt(`{"Effect":"Allow","Principal":{"AWS":"foo"},"Action":"sts:AssumeRole"}`), `Invalid principal in policy: "AWS":"foo"`},
		{"short account principal", Trust, stmt(`{"Effect":"Allow","Principal":{"AWS":"12345"},"Action":"sts:AssumeRole"}`), `Invalid principal in policy: "AWS":"12345"`},
		{"wildcard in principal arn", Trust, stmt(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:role/*"},"Action":"sts:AssumeRole"}`), `Invalid principal in policy: "AWS":"arn:aws:iam::123456789012:role/*"`},
		{"group principal", Trust, stmt(`{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::123456789012:group/admins"},"Action":"sts:AssumeRole"}`), "Invalid principal in policy"},
		{"principal string not star", Trust, stmt(`{"Effect":"Allow","Principal":"arn:aws:iam::123456789012:root","Action":"sts:AssumeRole"}`), "Invalid principal in policy"},
		{"unknown principal type", Trust, stmt(`{"Effect":"Allow","Principal":{"User":"bob"},"Action":"sts:AssumeRole"}`), `unknown principal type "User"`},
		{"empty principal", Trust, stmt(`{"Effect":"Allow","Principal":{},"Action":"sts:AssumeRole"}`), "Principal is empty"},
		{"empty service", Trust, stmt(`{"Effect":"Allow","Principal":{"Service":""},"Action":"sts:AssumeRole"}`), `Invalid principal in policy: "Service":""`},
		{"principal list empty", Trust, stmt(`{"Effect":"Allow","Principal":{"AWS":[]},"Action":"sts:AssumeRole"}`), `"AWS" has no values`},
		{"unknown operator", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"Foo":{"aws:x":"y"}}}`), "Invalid Condition type : Foo"},
		{"null with ifexists", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"NullIfExists":{"aws:x":"true"}}}`), "Invalid Condition type : NullIfExists"},
		{"unknown set prefix", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"ForSomeValues:StringLike":{"aws:x":"y"}}}`), "Invalid Condition type : ForSomeValues:StringLike"},
		{"condition not object", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":[]}`), "Condition must be an object"},
		{"condition block not object", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":"x"}}`), "Condition StringEquals must be an object"},
		{"condition key without vendor", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"username":"x"}}}`), "Actions/Conditions must be prefaced by a vendor"},
		{"condition value object", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:x":{"a":"b"}}}}`), "found an object"},
		{"condition value null", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"StringEquals":{"aws:x":[null]}}}`), "found null"},
		{"bad number", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"NumericLessThan":{"aws:MultiFactorAuthAge":"soon"}}}`), `Invalid Condition value for NumericLessThan on key aws:MultiFactorAuthAge: "soon"`},
		{"bad date", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"DateGreaterThan":{"aws:CurrentTime":"yesterday"}}}`), "Invalid Condition value for DateGreaterThan"},
		{"bad ip", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.300/8"}}}`), "Invalid Condition value for IpAddress"},
		{"bad bool", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"Bool":{"aws:SecureTransport":"yes"}}}`), "Invalid Condition value for Bool"},
		{"bad base64", Identity, stmt(`{"Effect":"Allow","Action":"*","Resource":"*","Condition":{"BinaryEquals":{"aws:x":"!!"}}}`), "Invalid Condition value for BinaryEquals"},
		{"error names statement", Identity, stmt(`[{"Effect":"Allow","Action":"*","Resource":"*"},{"Effect":"Allow","Action":"*"}]`), "Missing required field Resource (statement 2)"},
		{"too deep", Identity, strings.Repeat("[", 100) + strings.Repeat("]", 100), "nested too deeply"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := Parse(tt.doc, tt.kind)
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", d)
			}
			var se *SyntaxError
			if !errors.As(err, &se) {
				t.Fatalf("error %T is not *SyntaxError", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

const (
	podIdentityTrust = `{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Sid": "AllowEksAuthToAssumeRoleForPodIdentity",
      "Effect": "Allow",
      "Principal": {
        "Service": "pods.eks.amazonaws.com"
      },
      "Action": [
        "sts:AssumeRole",
        "sts:TagSession"
      ]
    }
  ]
}`
	irsaTrust = `{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Principal": {
        "Federated": "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/ABC"
      },
      "Action": "sts:AssumeRoleWithWebIdentity",
      "Condition": {
        "StringEquals": {
          "oidc.example.com/id/ABC:sub": "system:serviceaccount:default:my-sa",
          "oidc.example.com/id/ABC:aud": "sts.amazonaws.com"
        }
      }
    }
  ]
}`
)

func TestParseValid(t *testing.T) {
	tests := []struct {
		name string
		kind Kind
		doc  string
	}{
		{"pod identity trust", Trust, podIdentityTrust},
		{"irsa trust", Trust, irsaTrust},
		{"account trust", Trust, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Principal":{"AWS":["123456789012","arn:aws:iam::123456789012:root","arn:aws:iam::123456789012:role/path/R","arn:aws:sts::123456789012:assumed-role/R/s","arn:aws:iam::123456789012:user/bob"]},"Action":"sts:AssumeRole"}}`},
		{"wildcard trust with condition", Trust, `{"Statement":[{"Effect":"Allow","Principal":"*","Action":"sts:AssumeRole","Condition":{"StringEquals":{"aws:PrincipalOrgID":"o-abc"}}}]}`},
		{"notprincipal trust", Trust, `{"Statement":{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:role/R"},"Action":"sts:AssumeRole"}}`},
		{"sid with spaces in trust", Trust, `{"Statement":{"Sid":"Allow pods","Effect":"Allow","Principal":{"Service":["pods.eks.amazonaws.com","ec2.amazonaws.com"]},"Action":"sts:*"}}`},
		{"saml trust", Trust, `{"Statement":{"Effect":"Allow","Principal":{"Federated":"arn:aws:iam::123456789012:saml-provider/Okta"},"Action":"sts:AssumeRoleWithSAML","Condition":{"StringEquals":{"SAML:aud":"https://signin.aws.amazon.com/saml"}}}}`},
		{"admin", Identity, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`},
		{"old version", Identity, `{"Version":"2008-10-17","Id":"x","Statement":{"Sid":"1","Effect":"Deny","NotAction":["iam:*","sts:Get*"],"NotResource":"arn:aws:s3:::b/*"}}`},
		{"no version", Identity, `{"Statement":{"Effect":"Allow","Action":"s3:Get?bject","Resource":"arn:aws-cn:s3:::b"}}`},
		{"variables", Identity, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"s3:*","Resource":"arn:aws:s3:::b/${aws:PrincipalTag/team, 'none'}/*"}}`},
		{"all operators", Identity, `{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"*","Condition":{
			"StringEquals":{"aws:a":"x"},"StringNotEqualsIgnoreCase":{"aws:b":["x","y"]},"ForAnyValue:StringLike":{"aws:TagKeys":"t*"},
			"ForAllValues:StringNotLikeIfExists":{"aws:c":"z"},"NumericLessThanEquals":{"aws:MultiFactorAuthAge":3600},
			"DateGreaterThan":{"aws:CurrentTime":"2020-01-01T00:00:00Z"},"DateLessThan":{"aws:EpochTime":1700000000},
			"Bool":{"aws:SecureTransport":true},"BinaryEquals":{"aws:d":"QmluYXJ5"},"IpAddress":{"aws:SourceIp":["10.0.0.0/8","2001:db8::/32","192.0.2.1"]},
			"ArnLike":{"aws:SourceArn":"arn:aws:iam::*:role/*"},"Null":{"aws:e":"false"},"stringequalsifexists":{"aws:f":"g"}}}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Parse(tt.doc, tt.kind); err != nil {
				t.Fatalf("Parse: %v", err)
			}
		})
	}
}

func TestParseFields(t *testing.T) {
	d, err := Parse(irsaTrust, Trust)
	if err != nil {
		t.Fatal(err)
	}
	if d.Version != Version2012 || len(d.Statements) != 1 {
		t.Fatalf("got %+v", d)
	}
	st := d.Statements[0]
	if st.Effect != "Allow" || st.Principal["Federated"][0] != "arn:aws:iam::111122223333:oidc-provider/oidc.example.com/id/ABC" {
		t.Errorf("statement = %+v", st)
	}
	if len(st.Conditions) != 2 || st.Conditions[0].Key != "oidc.example.com/id/ABC:sub" || st.Conditions[1].Key != "oidc.example.com/id/ABC:aud" {
		t.Errorf("conditions not in document order: %+v", st.Conditions)
	}

	d, err = Parse(`{"Statement":{"Effect":"Deny","Principal":"*","Action":"sts:AssumeRole"}}`, Trust)
	if err != nil {
		t.Fatal(err)
	}
	if got := d.Statements[0].Principal["*"]; len(got) != 1 || got[0] != "*" {
		t.Errorf(`Principal "*" stored as %v`, d.Statements[0].Principal)
	}
}

func TestSize(t *testing.T) {
	tests := []struct {
		doc  string
		want int
	}{
		{``, 0},
		{`{ }`, 2},
		{"{\n\t\"a b\" : \"c\\\" d\"\r\n}", len(`{"a b":"c\" d"}`)},
		{`{"é": "ü"}`, 9},
	}
	for _, tt := range tests {
		if got := Size(tt.doc); got != tt.want {
			t.Errorf("Size(%q) = %d, want %d", tt.doc, got, tt.want)
		}
	}
}
