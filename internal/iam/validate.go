package iam

import (
	"errors"
	"regexp"
	"strconv"
	"strings"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/policy"
	"github.com/podid/podid/internal/store"
)

// Limits from the IAM API reference and IAM quotas.
const (
	maxRoleName        = 64
	maxPolicyName      = 128
	maxPath            = 512
	maxDescription     = 1000
	maxTags            = 50
	maxTagKey          = 128
	maxTagValue        = 256
	maxDocument        = 131072 // request-level length of any policy document
	maxTrustSize       = 2048   // ACLSizePerRole
	maxInlineSize      = 10240  // aggregate of a role's inline policies
	maxManagedSize     = 6144   // PolicySize
	maxAttached        = 10     // PoliciesPerRole
	maxClientIDs       = 100
	maxClientIDLen     = 255
	maxThumbprints     = 5
	maxOIDCURL         = 255
	minSessionDuration = 3600
	maxSessionDuration = 43200
)

var (
	nameRE        = regexp.MustCompile(`^[\w+=,.@-]+$`)
	pathRE        = regexp.MustCompile(`^(/|/[\x21-\x7E]+/)$`)
	pathPrefixRE  = regexp.MustCompile(`^/[\x21-\x7E]*$`)
	descriptionRE = regexp.MustCompile(`^[\t\n\r\x20-\x7E\x{A1}-\x{FF}]*$`)
	tagKeyRE      = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]+$`)
	tagValueRE    = regexp.MustCompile(`^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$`)
	thumbprintRE  = regexp.MustCompile(`^[0-9A-Fa-f]{40}$`)
)

// invalid reports one failed constraint in the wording of AWS's request
// validation; field is the lower-camel member name AWS prints.
func invalid(field, value, constraint string) error {
	return awsproto.ValidationError("1 validation error detected: Value '%s' at '%s' failed to satisfy constraint: %s", value, field, constraint)
}

func null(field string) error {
	return awsproto.ValidationError("1 validation error detected: Value null at '%s' failed to satisfy constraint: Member must not be null", field)
}

func checkLen(field, v string, min, max int) error {
	n := len([]rune(v))
	if n < min {
		return invalid(field, v, "Member must have length greater than or equal to "+strconv.Itoa(min))
	}
	if n > max {
		return invalid(field, v, "Member must have length less than or equal to "+strconv.Itoa(max))
	}
	return nil
}

// requiredName reads a role or policy name parameter.
func requiredName(form awsproto.Form, param string, max int) (string, error) {
	field := lowerFirst(param)
	v := form.Get(param)
	if !form.Has(param) {
		return "", null(field)
	}
	if err := checkLen(field, v, 1, max); err != nil {
		return "", err
	}
	if !nameRE.MatchString(v) {
		return "", invalid(field, v, `Member must satisfy regular expression pattern: [\w+=,.@-]+`)
	}
	return v, nil
}

// optionalPath reads a Path parameter, "/" when absent.
func optionalPath(form awsproto.Form) (string, error) {
	if !form.Has("Path") {
		return "/", nil
	}
	v := form.Get("Path")
	if err := checkLen("path", v, 1, maxPath); err != nil {
		return "", err
	}
	if !pathRE.MatchString(v) {
		return "", invalid("path", v, `Member must satisfy regular expression pattern: (\u002F)|(\u002F[\u0021-\u007E]+\u002F)`)
	}
	return v, nil
}

// optionalPathPrefix reads a PathPrefix parameter, "/" when absent.
func optionalPathPrefix(form awsproto.Form) (string, error) {
	if !form.Has("PathPrefix") {
		return "/", nil
	}
	v := form.Get("PathPrefix")
	if err := checkLen("pathPrefix", v, 1, maxPath); err != nil {
		return "", err
	}
	if !pathPrefixRE.MatchString(v) {
		return "", invalid("pathPrefix", v, `Member must satisfy regular expression pattern: \u002F[\u0021-\u007F]*`)
	}
	return v, nil
}

func checkDescription(v string) error {
	if err := checkLen("description", v, 0, maxDescription); err != nil {
		return err
	}
	if !descriptionRE.MatchString(v) {
		return invalid("description", v, `Member must satisfy regular expression pattern: [\u0009\u000A\u000D\u0020-\u007E\u00A1-\u00FF]*`)
	}
	return nil
}

// requiredDocument reads and parses a policy document parameter. Size
// quotas are checked by the caller, which knows which quota applies.
func requiredDocument(form awsproto.Form, param string, kind policy.Kind) (string, *policy.Document, error) {
	field := lowerFirst(param)
	doc := form.Get(param)
	if !form.Has(param) {
		return "", nil, null(field)
	}
	if doc == "" || len(doc) > maxDocument {
		// Not echoed: a document can be long.
		return "", nil, checkLen(field, doc, 1, maxDocument)
	}
	d, err := parseDocument(doc, kind)
	if err != nil {
		return "", nil, err
	}
	return doc, d, nil
}

func parseDocument(doc string, kind policy.Kind) (*policy.Document, error) {
	d, err := policy.Parse(doc, kind)
	if err != nil {
		var se *policy.SyntaxError
		if errors.As(err, &se) {
			return nil, malformed(se.Msg)
		}
		return nil, malformed(err.Error())
	}
	return d, nil
}

// tagList validates a Tags.member.N list sent with a create or tag call.
func tagList(form awsproto.Form, param string) ([]store.Tag, error) {
	kvs := form.KeyValues(param)
	if len(kvs) > maxTags {
		return nil, invalid(lowerFirst(param), "["+strconv.Itoa(len(kvs))+" tags]", "Member must have length less than or equal to "+strconv.Itoa(maxTags))
	}
	seen := make(map[string]bool, len(kvs))
	tags := make([]store.Tag, 0, len(kvs))
	for i, kv := range kvs {
		prefix := lowerFirst(param) + "." + strconv.Itoa(i+1) + ".member."
		if kv.Key == "" && !form.Has(param+".member."+strconv.Itoa(i+1)+".Key") {
			return nil, null(prefix + "key")
		}
		if err := checkTagKey(prefix+"key", kv.Key); err != nil {
			return nil, err
		}
		if err := checkLen(prefix+"value", kv.Value, 0, maxTagValue); err != nil {
			return nil, err
		}
		if !tagValueRE.MatchString(kv.Value) {
			return nil, invalid(prefix+"value", kv.Value, `Member must satisfy regular expression pattern: [\p{L}\p{Z}\p{N}_.:/=+\-@]*`)
		}
		k := strings.ToLower(kv.Key)
		if seen[k] {
			return nil, invalidInput("Duplicate tag keys found. Please note that Tag keys are case insensitive.")
		}
		seen[k] = true
		tags = append(tags, store.Tag{Key: kv.Key, Value: kv.Value})
	}
	return tags, nil
}

func checkTagKey(field, k string) error {
	if err := checkLen(field, k, 1, maxTagKey); err != nil {
		return err
	}
	if !tagKeyRE.MatchString(k) {
		return invalid(field, k, `Member must satisfy regular expression pattern: [\p{L}\p{Z}\p{N}_.:/=+\-@]+`)
	}
	if strings.HasPrefix(strings.ToLower(k), "aws:") {
		return invalidInput("User-entered tag keys cannot start with 'aws:' (case-insensitive): %s.", k)
	}
	return nil
}

// mergeTags adds or replaces tags by case-insensitive key, keeping the
// order of existing tags, and enforces the per-resource quota.
func mergeTags(have, add []store.Tag, quota string) ([]store.Tag, error) {
	out := append([]store.Tag(nil), have...)
	for _, t := range add {
		replaced := false
		for i := range out {
			if strings.EqualFold(out[i].Key, t.Key) {
				out[i] = t
				replaced = true
				break
			}
		}
		if !replaced {
			out = append(out, t)
		}
	}
	if len(out) > maxTags {
		return nil, limitExceeded("Cannot exceed quota for %s: %d.", quota, maxTags)
	}
	return out, nil
}

// page reads Marker and MaxItems.
func page(form awsproto.Form) (store.Page, error) {
	n, err := form.Int("MaxItems", 100, 1, 1000)
	if err != nil {
		return store.Page{}, err
	}
	// AWS caps markers at 320 characters; ours are opaque store markers
	// that may be longer, so only emptiness is checked.
	if form.Has("Marker") && form.Get("Marker") == "" {
		return store.Page{}, invalid("marker", "", "Member must have length greater than or equal to 1")
	}
	return store.Page{Marker: form.Get("Marker"), MaxItems: int(n)}, nil
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}
