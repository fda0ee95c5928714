package policy

import (
	"regexp"
	"slices"
	"strings"
)

// Evaluate combines the decisions of docs for req: an explicit deny in any
// document wins, then an allow in any, and otherwise the request is
// implicitly denied. Nil documents are skipped.
func Evaluate(req *Request, docs ...*Document) Decision {
	dec := ImplicitDeny
	for _, d := range docs {
		if d == nil {
			continue
		}
		switch r, _ := d.Evaluate(req); r {
		case ExplicitDeny:
			return ExplicitDeny
		case Allow:
			dec = Allow
		}
	}
	return dec
}

// Evaluate returns the decision of d for req and the statements that
// produced it: the matching Deny statements for ExplicitDeny, the matching
// Allow statements for Allow, and none for ImplicitDeny.
func (d *Document) Evaluate(req *Request) (Decision, []MatchedStatement) {
	var allows, denies []MatchedStatement
	for i := range d.Statements {
		st := &d.Statements[i]
		if !st.applies(req) {
			continue
		}
		m := MatchedStatement{Index: i, Sid: st.Sid, Effect: st.Effect}
		if st.Effect == "Deny" {
			denies = append(denies, m)
		} else {
			allows = append(allows, m)
		}
	}
	switch {
	case len(denies) > 0:
		return ExplicitDeny, denies
	case len(allows) > 0:
		return Allow, allows
	}
	return ImplicitDeny, nil
}

// applies reports whether every element of st matches req.
func (st *Statement) applies(req *Request) bool {
	if p := req.Principal; p != nil {
		if st.Principal != nil && !st.Principal.match(p) {
			return false
		}
		if st.NotPrincipal != nil && st.NotPrincipal.match(p) {
			return false
		}
	}

	action := strings.ToLower(req.Action)
	matchAction := func(pats []string) bool {
		return slices.ContainsFunc(pats, func(pat string) bool {
			return matchPattern(strings.ToLower(pat), action, nil, false)
		})
	}
	if st.Action != nil && !matchAction(st.Action) {
		return false
	}
	if st.NotAction != nil && matchAction(st.NotAction) {
		return false
	}

	matchResource := func(pats []string) bool {
		return slices.ContainsFunc(pats, func(pat string) bool {
			return matchPattern(pat, req.Resource, req.Context, st.vars)
		})
	}
	if st.Resource != nil && !matchResource(st.Resource) {
		return false
	}
	if st.NotResource != nil && matchResource(st.NotResource) {
		return false
	}

	for i := range st.Conditions {
		if !st.Conditions[i].holds(req.Context, st.vars) {
			return false
		}
	}
	return true
}

var rootARNRE = regexp.MustCompile(`^arn:[^:]+:iam::([0-9]{12}):root$`)

// match reports whether any principal in ps names p.
func (ps Principals) match(p *Principal) bool {
	for typ, vals := range ps {
		for _, v := range vals {
			if matchPrincipal(typ, v, p) {
				return true
			}
		}
	}
	return false
}

func matchPrincipal(typ, v string, p *Principal) bool {
	switch typ {
	case "*":
		return true
	case "AWS":
		if v == "*" {
			return true // {"AWS": "*"} is the same as "*"
		}
		if p.Type != "AWS" {
			return false
		}
		if m := rootARNRE.FindStringSubmatch(v); m != nil {
			v = m[1]
		}
		if accountRE.MatchString(v) {
			return p.Account != "" && v == p.Account
		}
		return slices.Contains(p.ARNs, v)
	case "Service":
		return p.Type == "Service" && strings.EqualFold(p.ID, v)
	case "Federated", "CanonicalUser":
		return p.Type == typ && p.ID == v
	}
	return false
}
