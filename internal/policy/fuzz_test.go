package policy

import (
	"errors"
	"testing"
	"unicode/utf8"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		podIdentityTrust,
		irsaTrust,
		`{"Version":"2012-10-17","Statement":{"Effect":"Allow","Action":"*","Resource":"arn:aws:s3:::b/${aws:username, 'x'}/*"}}`,
		`{"Statement":[{"Sid":"A","Effect":"Deny","NotAction":"s3:?et*","NotResource":["arn:aws:s3:::*"],"Condition":{"ForAnyValue:StringLike":{"aws:TagKeys":["a*"]},"Null":{"aws:x":true},"IpAddress":{"aws:SourceIp":"10.0.0.0/8"},"DateLessThan":{"aws:CurrentTime":1700000000}}}]}`,
		`{"Statement":{"Effect":"Allow","NotPrincipal":{"AWS":["123456789012"]},"Action":"sts:AssumeRole","Condition":{"ArnNotLikeIfExists":{"aws:SourceArn":"arn:*:*:*:*:*"}}}}`,
		`{"Version":"2012-10-18"}`,
		`[`,
		`{"Statement":[]}`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	reqs := []*Request{
		{Action: "s3:GetObject", Resource: "arn:aws:s3:::b/x"},
		{
			Principal: &Principal{Type: "AWS", Account: "123456789012", ARNs: []string{"arn:aws:iam::123456789012:role/R"}},
			Action:    "sts:AssumeRole",
			Resource:  "arn:aws:iam::123456789012:role/R",
			Context: Context{
				"aws:username":       {"bob"},
				"aws:tagkeys":        {"a", "b"},
				"aws:sourceip":       {"10.1.2.3"},
				"aws:currenttime":    {"2024-01-01T00:00:00Z"},
				"aws:sourcearn":      {"arn:aws:s3:::b"},
				"aws:principaltag/x": {"${aws:username}*"},
			},
		},
		{Principal: &Principal{Type: "Service", ID: "pods.eks.amazonaws.com"}, Action: "sts:TagSession"},
	}
	f.Fuzz(func(t *testing.T, doc string, trust bool) {
		kind := Identity
		if trust {
			kind = Trust
		}
		d, err := Parse(doc, kind)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) || se.Msg == "" {
				t.Fatalf("error %#v is not a *SyntaxError with a message", err)
			}
			return
		}
		for _, req := range reqs {
			d.Evaluate(req)
			// Feed the document's own strings back as request values.
			for _, st := range d.Statements {
				r := &Request{Action: "x:y", Resource: "arn:aws:s3:::b", Context: Context{}}
				if len(st.Action) > 0 {
					r.Action = st.Action[0]
				}
				if len(st.Resource) > 0 {
					r.Resource = st.Resource[0]
				}
				for _, c := range st.Conditions {
					r.Context.Set(c.Key, c.Values...)
				}
				Evaluate(r, d)
			}
		}
		if n := Size(doc); n > utf8.RuneCountInString(doc) {
			t.Fatalf("Size = %d, longer than the document", n)
		}
	})
}
