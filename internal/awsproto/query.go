package awsproto

import (
	"bytes"
	"encoding/xml"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Form is a decoded query-protocol request (Action=…&Version=…&Name=…).
type Form struct{ url.Values }

// ParseForm decodes a form body. Query-string parameters are merged in, as AWS
// accepts both.
func ParseForm(body []byte, query url.Values) (Form, error) {
	v, err := url.ParseQuery(string(body))
	if err != nil {
		return Form{}, Errorf(http.StatusBadRequest, "MalformedQueryString", "The request body is not a valid form encoding.")
	}
	for k, vs := range query {
		if _, ok := v[k]; !ok {
			v[k] = vs
		}
	}
	return Form{v}, nil
}

// Has reports whether the parameter was sent.
func (f Form) Has(name string) bool { _, ok := f.Values[name]; return ok }

// Required returns a parameter that must be present and non-empty.
func (f Form) Required(name string) (string, error) {
	v := f.Get(name)
	if v == "" {
		return "", ValidationError("1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", lowerFirst(name))
	}
	return v, nil
}

// Int returns an optional integer parameter within [min, max]; def when absent.
func (f Form) Int(name string, def, min, max int64) (int64, error) {
	s := f.Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, ValidationError("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must be a number", s, lowerFirst(name))
	}
	if n < min {
		return 0, ValidationError("1 validation error detected: Value '%d' at '%s' failed to satisfy constraint: Member must have value greater than or equal to %d", n, lowerFirst(name), min)
	}
	if n > max {
		return 0, ValidationError("1 validation error detected: Value '%d' at '%s' failed to satisfy constraint: Member must have value less than or equal to %d", n, lowerFirst(name), max)
	}
	return n, nil
}

// Bool returns an optional boolean parameter.
func (f Form) Bool(name string) (bool, error) {
	s := f.Get(name)
	switch strings.ToLower(s) {
	case "":
		return false, nil
	case "true":
		return true, nil
	case "false":
		return false, nil
	}
	return false, ValidationError("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: Member must be a boolean", s, lowerFirst(name))
}

// Members returns a list sent as Name.member.1, Name.member.2, … in order.
// A gap ends the list, as in AWS.
func (f Form) Members(name string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := f.Values[name+".member."+strconv.Itoa(i)]
		if !ok {
			return out
		}
		out = append(out, v[0])
	}
}

// KeyValue is one entry of a Name.member.N.Key / .Value list (tags).
type KeyValue struct{ Key, Value string }

// KeyValues returns a list sent as Name.member.N.Key and Name.member.N.Value.
func (f Form) KeyValues(name string) []KeyValue {
	var out []KeyValue
	for i := 1; ; i++ {
		p := name + ".member." + strconv.Itoa(i)
		k, okK := f.Values[p+".Key"]
		v, okV := f.Values[p+".Value"]
		if !okK && !okV {
			return out
		}
		kv := KeyValue{}
		if okK {
			kv.Key = k[0]
		}
		if okV {
			kv.Value = v[0]
		}
		out = append(out, kv)
	}
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// WriteQueryResult writes <ActionResponse><ActionResult>result</ActionResult>
// <ResponseMetadata><RequestId/></ResponseMetadata></ActionResponse>.
// result is a struct marshalled with encoding/xml as the ActionResult element
// (its fields become the children); nil writes no result element.
func WriteQueryResult(w http.ResponseWriter, action, namespace, requestID string, result any) {
	var buf bytes.Buffer
	buf.WriteString(`<` + action + `Response xmlns="` + namespace + `">`)
	if result != nil {
		start := xml.StartElement{Name: xml.Name{Local: action + "Result"}}
		if err := xml.NewEncoder(&buf).EncodeElement(result, start); err != nil {
			WriteQueryError(w, Internal(), requestID)
			return
		}
	}
	buf.WriteString(`<ResponseMetadata><RequestId>` + requestID + `</RequestId></ResponseMetadata></` + action + `Response>`)
	h := w.Header()
	h.Set("Content-Type", "text/xml")
	h.Set("X-Amzn-Requestid", requestID)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf.Bytes())
}

// WriteQueryError writes the query protocol's ErrorResponse document.
func WriteQueryError(w http.ResponseWriter, e *Error, requestID string) {
	kind := "Sender"
	if e.Receiver {
		kind = "Receiver"
	}
	var buf bytes.Buffer
	buf.WriteString(`<ErrorResponse><Error><Type>` + kind + `</Type><Code>`)
	_ = xml.EscapeText(&buf, []byte(e.Code))
	buf.WriteString(`</Code><Message>`)
	_ = xml.EscapeText(&buf, []byte(e.Message))
	buf.WriteString(`</Message></Error><RequestId>` + requestID + `</RequestId></ErrorResponse>`)
	h := w.Header()
	h.Set("Content-Type", "text/xml")
	h.Set("X-Amzn-Requestid", requestID)
	w.WriteHeader(statusOf(e))
	_, _ = w.Write(buf.Bytes())
}

func statusOf(e *Error) int {
	if e.Status == 0 {
		return http.StatusBadRequest
	}
	return e.Status
}
