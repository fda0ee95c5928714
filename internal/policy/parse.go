package policy

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// Parse parses and validates a JSON policy document of the given kind.
// Errors are of type *SyntaxError.
func Parse(doc string, kind Kind) (*Document, error) {
	// The JSON decoder would silently replace bad bytes.
	if !utf8.ValidString(doc) {
		return nil, syntaxErr(errSyntax + " The policy document is not valid UTF-8.")
	}
	if strings.TrimSpace(doc) == "" {
		return nil, syntaxErr(errSyntax + " The policy document is empty.")
	}
	tree, err := decodeJSON(doc)
	if err != nil {
		return nil, err
	}
	top, ok := tree.(*object)
	if !ok {
		return nil, syntaxErr(errSyntax + " The policy document must be a JSON object.")
	}
	if err := checkFields(top, "Version", "Id", "Statement"); err != nil {
		return nil, err
	}
	d := new(Document)
	if v, ok := top.vals["Version"]; ok {
		s, ok := v.(string)
		if !ok {
			return nil, syntaxErr("Version must be a string")
		}
		if s != Version2012 && s != Version2008 {
			return nil, syntaxErr(fmt.Sprintf("The policy failed legacy parsing: invalid Version %q; use %s or %s", s, Version2012, Version2008))
		}
		d.Version = s
	}
	if v, ok := top.vals["Id"]; ok {
		s, ok := v.(string)
		if !ok {
			return nil, syntaxErr("Id must be a string")
		}
		d.ID = s
	}
	sv, ok := top.vals["Statement"]
	if !ok {
		return nil, syntaxErr("Missing required field Statement")
	}
	var list []any
	switch sv := sv.(type) {
	case *object:
		list = []any{sv}
	case []any:
		list = sv
	default:
		return nil, syntaxErr("Statement must be an object or an array of objects")
	}
	if len(list) == 0 {
		return nil, syntaxErr("Policy document must contain at least one statement in field Statement")
	}
	sids := map[string]bool{}
	for i, v := range list {
		obj, ok := v.(*object)
		if !ok {
			return nil, syntaxErr("Statement must be an object or an array of objects")
		}
		st, err := parseStatement(obj, kind, d.Version == Version2012)
		if err != nil {
			if len(list) > 1 {
				err.Msg += fmt.Sprintf(" (statement %d)", i+1)
			}
			return nil, err
		}
		if st.Sid != "" {
			if sids[st.Sid] {
				return nil, syntaxErr("Statement IDs (SID) in a single policy must be unique.")
			}
			sids[st.Sid] = true
		}
		d.Statements = append(d.Statements, st)
	}
	return d, nil
}

var statementFields = []string{
	"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction",
	"Resource", "NotResource", "Condition",
}

func parseStatement(obj *object, kind Kind, vars bool) (Statement, *SyntaxError) {
	st := Statement{vars: vars}
	if err := checkFields(obj, statementFields...); err != nil {
		return st, err
	}
	has := func(k string) bool { _, ok := obj.vals[k]; return ok }

	if v, ok := obj.vals["Sid"]; ok {
		s, ok := v.(string)
		if !ok {
			return st, syntaxErr("Sid must be a string")
		}
		if kind == Identity && !isAlnum(s) {
			return st, syntaxErr("Statement IDs (SID) must be alpha-numeric. Check that your input satisfies the regular expression [0-9A-Za-z]*")
		}
		st.Sid = s
	}

	ev, ok := obj.vals["Effect"]
	if !ok {
		return st, syntaxErr("Missing required field Effect")
	}
	effect, _ := ev.(string)
	if effect != "Allow" && effect != "Deny" {
		return st, syntaxErr(fmt.Sprintf("Invalid effect: %s; Effect must be Allow or Deny", describe(ev)))
	}
	st.Effect = effect

	switch kind {
	case Identity:
		for _, k := range []string{"Principal", "NotPrincipal"} {
			if has(k) {
				return st, syntaxErr("Has prohibited field " + k)
			}
		}
	case Trust:
		switch {
		case has("Principal") && has("NotPrincipal"):
			return st, syntaxErr("Statement must not contain both Principal and NotPrincipal")
		case has("Principal"):
			p, err := parsePrincipals(obj.vals["Principal"], "Principal")
			if err != nil {
				return st, err
			}
			st.Principal = p
		case has("NotPrincipal"):
			p, err := parsePrincipals(obj.vals["NotPrincipal"], "NotPrincipal")
			if err != nil {
				return st, err
			}
			st.NotPrincipal = p
		default:
			return st, syntaxErr("Missing required field Principal")
		}
	}

	var err *SyntaxError
	switch {
	case has("Action") && has("NotAction"):
		return st, syntaxErr("Statement must not contain both Action and NotAction")
	case has("Action"):
		st.Action, err = parseActions(obj.vals["Action"], "Action")
	case has("NotAction"):
		st.NotAction, err = parseActions(obj.vals["NotAction"], "NotAction")
	default:
		return st, syntaxErr("Missing required field Action")
	}
	if err != nil {
		return st, err
	}

	switch {
	case kind == Trust && has("Resource"):
		return st, syntaxErr("Has prohibited field Resource")
	case kind == Trust && has("NotResource"):
		return st, syntaxErr("Has prohibited field NotResource")
	case kind == Trust:
	case has("Resource") && has("NotResource"):
		return st, syntaxErr("Statement must not contain both Resource and NotResource")
	case has("Resource"):
		st.Resource, err = parseResources(obj.vals["Resource"], "Resource")
	case has("NotResource"):
		st.NotResource, err = parseResources(obj.vals["NotResource"], "NotResource")
	default:
		return st, syntaxErr("Missing required field Resource")
	}
	if err != nil {
		return st, err
	}

	if v, ok := obj.vals["Condition"]; ok {
		st.Conditions, err = parseConditions(v)
		if err != nil {
			return st, err
		}
	}
	return st, nil
}

// checkFields rejects keys of obj that are not in allowed.
func checkFields(obj *object, allowed ...string) *SyntaxError {
	for _, k := range obj.keys {
		if !slices.Contains(allowed, k) {
			return syntaxErr(fmt.Sprintf("Syntax errors in policy. Unknown field %s", k))
		}
	}
	return nil
}

// stringList accepts a string or a non-empty array of strings.
func stringList(v any, field string) ([]string, *SyntaxError) {
	switch v := v.(type) {
	case string:
		return []string{v}, nil
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, syntaxErr(fmt.Sprintf("%s must be a string or an array of strings; found %s", field, describe(e)))
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, syntaxErr(fmt.Sprintf("%s must be a string or an array of strings; found %s", field, describe(v)))
}

var (
	vendorRE = regexp.MustCompile(`^[A-Za-z0-9-]+$`)
	actionRE = regexp.MustCompile(`^[A-Za-z0-9_*?-]+$`)
)

func parseActions(v any, field string) ([]string, *SyntaxError) {
	acts, err := stringList(v, field)
	if err != nil {
		return nil, err
	}
	if len(acts) == 0 {
		return nil, syntaxErr("Policy statement must contain actions.")
	}
	for _, a := range acts {
		if a == "*" {
			continue
		}
		vendor, name, ok := strings.Cut(a, ":")
		switch {
		case !ok || vendor == "":
			return nil, syntaxErr(fmt.Sprintf("Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc. (%s %q)", field, a))
		case strings.Contains(name, ":"):
			return nil, syntaxErr(fmt.Sprintf("Actions/Condition can contain only one colon. (%s %q)", field, a))
		case !vendorRE.MatchString(vendor):
			return nil, syntaxErr(fmt.Sprintf("Vendor %s is not valid (%s %q)", vendor, field, a))
		case !actionRE.MatchString(name):
			return nil, syntaxErr(fmt.Sprintf("Action %s is not valid (%s %q)", a, field, a))
		}
	}
	return acts, nil
}

// partitionRE accepts aws, aws-cn, aws-us-gov, aws-iso-b and future
// partitions of the same shape, or a wildcard.
var partitionRE = regexp.MustCompile(`^(aws(-[a-z]+)*|[a-z*?-]*[*?][a-z*?-]*)$`)

func parseResources(v any, field string) ([]string, *SyntaxError) {
	res, err := stringList(v, field)
	if err != nil {
		return nil, err
	}
	if len(res) == 0 {
		return nil, syntaxErr("Policy statement must contain resources.")
	}
	for _, r := range res {
		if r == "*" {
			continue
		}
		parts := strings.SplitN(r, ":", 6)
		if len(parts) < 6 || parts[0] != "arn" || parts[5] == "" {
			return nil, syntaxErr(fmt.Sprintf("Resource %s must be in ARN format or \"*\".", r))
		}
		if !partitionRE.MatchString(parts[1]) {
			return nil, syntaxErr(fmt.Sprintf("Partition %q is not valid for resource %q.", parts[1], r))
		}
		if parts[2] == "" {
			return nil, syntaxErr(fmt.Sprintf("Resource vendor must be fully qualified and cannot contain regexes. (%s %q)", field, r))
		}
	}
	return res, nil
}

var (
	accountRE      = regexp.MustCompile(`^[0-9]{12}$`)
	principalARNRE = regexp.MustCompile(`^arn:aws(-[a-z]+)*:(iam::[0-9]{12}:(root|user/.+|role/.+)|sts::[0-9]{12}:(assumed-role/[^/]+/.+|federated-user/.+))$`)
)

func parsePrincipals(v any, field string) (Principals, *SyntaxError) {
	if s, ok := v.(string); ok {
		if s != "*" {
			return nil, syntaxErr(fmt.Sprintf("Invalid principal in policy: %s must be \"*\" or an object, found %q", field, s))
		}
		return Principals{"*": {"*"}}, nil
	}
	obj, ok := v.(*object)
	if !ok {
		return nil, syntaxErr(fmt.Sprintf("Invalid principal in policy: %s must be \"*\" or an object, found %s", field, describe(v)))
	}
	if len(obj.keys) == 0 {
		return nil, syntaxErr(fmt.Sprintf("Invalid principal in policy: %s is empty", field))
	}
	p := Principals{}
	for _, typ := range obj.keys {
		vals, err := stringList(obj.vals[typ], field+"."+typ)
		if err != nil {
			return nil, err
		}
		if len(vals) == 0 {
			return nil, syntaxErr(fmt.Sprintf("Invalid principal in policy: %q has no values", typ))
		}
		for _, s := range vals {
			bad := false
			switch typ {
			case "AWS":
				// Wildcards are only allowed as the whole value.
				bad = s != "*" && (strings.ContainsAny(s, "*?") ||
					!accountRE.MatchString(s) && !principalARNRE.MatchString(s))
			case "Service", "Federated", "CanonicalUser":
				bad = s == "" || strings.ContainsAny(s, "*? \t\n")
			default:
				return nil, syntaxErr(fmt.Sprintf("Invalid principal in policy: unknown principal type %q", typ))
			}
			if bad {
				return nil, syntaxErr(fmt.Sprintf("Invalid principal in policy: %q:%q", typ, s))
			}
		}
		p[typ] = vals
	}
	return p, nil
}

func parseConditions(v any) ([]Condition, *SyntaxError) {
	ops, ok := v.(*object)
	if !ok {
		return nil, syntaxErr(fmt.Sprintf("Condition must be an object; found %s", describe(v)))
	}
	var conds []Condition
	for _, name := range ops.keys {
		op, ok := parseOperator(name)
		if !ok {
			return nil, syntaxErr("Invalid Condition type : " + name)
		}
		keys, ok := ops.vals[name].(*object)
		if !ok {
			return nil, syntaxErr(fmt.Sprintf("Condition %s must be an object of condition keys; found %s", name, describe(ops.vals[name])))
		}
		for _, key := range keys.keys {
			if vendor, _, ok := strings.Cut(key, ":"); !ok || vendor == "" {
				return nil, syntaxErr(fmt.Sprintf("Actions/Conditions must be prefaced by a vendor, e.g., iam, sdb, ec2, etc. (condition key %q)", key))
			}
			vals, err := conditionValues(keys.vals[key], name, key)
			if err != nil {
				return nil, err
			}
			for _, s := range vals {
				if !op.validValue(s) {
					return nil, syntaxErr(fmt.Sprintf("Invalid Condition value for %s on key %s: %q", name, key, s))
				}
			}
			conds = append(conds, Condition{
				Operator: name,
				Key:      key,
				Values:   vals,
				op:       op,
				key:      strings.ToLower(key),
			})
		}
	}
	return conds, nil
}

// conditionValues accepts a string, boolean or number, or an array of
// them, and returns their text.
func conditionValues(v any, op, key string) ([]string, *SyntaxError) {
	scalar := func(e any) (string, bool) {
		switch e := e.(type) {
		case string:
			return e, true
		case bool:
			if e {
				return "true", true
			}
			return "false", true
		case json.Number:
			return e.String(), true
		}
		return "", false
	}
	if s, ok := scalar(v); ok {
		return []string{s}, nil
	}
	list, ok := v.([]any)
	if !ok {
		return nil, syntaxErr(fmt.Sprintf("Condition %s value for key %s must be a string, boolean, number or an array of them; found %s", op, key, describe(v)))
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, ok := scalar(e)
		if !ok {
			return nil, syntaxErr(fmt.Sprintf("Condition %s value for key %s must be a string, boolean, number or an array of them; found %s", op, key, describe(e)))
		}
		out = append(out, s)
	}
	return out, nil
}

// describe names the JSON type of v for error messages.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("%q", v)
	case json.Number:
		return "number " + v.String()
	case bool:
		return fmt.Sprintf("boolean %t", v)
	case nil:
		return "null"
	case []any:
		return "an array"
	case *object:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

func isAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}
