package iam

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/podid/podid/internal/awsproto"
	"github.com/podid/podid/internal/policy"
	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
)

// sourcePolicy is one policy taking part in a simulation.
type sourcePolicy struct {
	id   string // SourcePolicyId
	typ  string // SourcePolicyType
	doc  *policy.Document
	text string
}

var contextKeyTypes = []string{
	"string", "stringList", "numeric", "numericList", "boolean", "booleanList",
	"ip", "ipList", "binary", "binaryList", "date", "dateList",
}

func (s *Service) simulatePrincipalPolicy(ctx context.Context, caller *session.Principal, form awsproto.Form) (any, error) {
	if !form.Has("PolicySourceArn") {
		return nil, null("policySourceArn")
	}
	source := form.Get("PolicySourceArn")
	if err := checkLen("policySourceArn", source, 20, 2048); err != nil {
		return nil, err
	}
	actions := form.Members("ActionNames")
	if len(actions) == 0 {
		return nil, null("actionNames")
	}
	for i, a := range actions {
		if err := checkLen("actionNames."+strconv.Itoa(i+1)+".member", a, 3, 128); err != nil {
			return nil, err
		}
	}
	resources := form.Members("ResourceArns")
	if len(resources) == 0 {
		resources = []string{"*"}
	}
	for i, r := range resources {
		if err := checkLen("resourceArns."+strconv.Itoa(i+1)+".member", r, 1, 2048); err != nil {
			return nil, err
		}
	}
	reqCtx, err := contextEntries(form)
	if err != nil {
		return nil, err
	}
	var inputs []sourcePolicy
	for i, doc := range form.Members("PolicyInputList") {
		if err := checkLen("policyInputList."+strconv.Itoa(i+1)+".member", doc, 1, maxDocument); err != nil {
			return nil, err
		}
		d, err := parseDocument(doc, policy.Identity)
		if err != nil {
			return nil, err
		}
		inputs = append(inputs, sourcePolicy{id: "PolicyInputList." + strconv.Itoa(i+1), typ: "IAM Policy", doc: d, text: doc})
	}
	roleName, err := s.roleNameFromARN("policySourceArn", source)
	if err != nil {
		return nil, err
	}
	r, err := s.authorizedRole(ctx, caller, "SimulatePrincipalPolicy", roleName)
	if err != nil {
		return nil, err
	}
	if r.ARN != source {
		return nil, noSuchRole(roleName) // same name, different path
	}
	sources, err := s.rolePolicies(ctx, roleName)
	if err != nil {
		return nil, err
	}
	sources = append(sources, inputs...)

	res := &SimulatePrincipalPolicyResult{EvaluationResults: []EvaluationResult{}}
	for _, action := range actions {
		for _, resource := range resources {
			res.EvaluationResults = append(res.EvaluationResults, evaluate(sources, &policy.Request{Action: action, Resource: resource, Context: reqCtx}))
		}
	}
	return res, nil
}

// contextEntries reads ContextEntries.member.N.{ContextKeyName,
// ContextKeyValues.member.M, ContextKeyType}.
func contextEntries(form awsproto.Form) (policy.Context, error) {
	c := policy.Context{}
	for i := 1; ; i++ {
		p := "ContextEntries.member." + strconv.Itoa(i) + "."
		field := "contextEntries." + strconv.Itoa(i) + ".member."
		if !form.Has(p+"ContextKeyName") && !form.Has(p+"ContextKeyType") && len(form.Members(p+"ContextKeyValues")) == 0 {
			return c, nil
		}
		name := form.Get(p + "ContextKeyName")
		if err := checkLen(field+"contextKeyName", name, 5, 256); err != nil {
			return nil, err
		}
		if t := form.Get(p + "ContextKeyType"); t != "" && !slices.Contains(contextKeyTypes, t) {
			return nil, invalid(field+"contextKeyType", t, "Member must satisfy enum value set: ["+strings.Join(contextKeyTypes, ", ")+"]")
		}
		c.Set(name, form.Members(p+"ContextKeyValues")...)
	}
}

// rolePolicies loads and parses a role's inline and attached policies.
func (s *Service) rolePolicies(ctx context.Context, role string) ([]sourcePolicy, error) {
	var out []sourcePolicy
	var perr error
	err := s.eachRolePolicy(ctx, role, func(p store.RolePolicy) {
		d, err := policy.Parse(p.Document, policy.Identity)
		if err != nil {
			perr = fmt.Errorf("iam: stored policy %s of role %s: %w", p.PolicyName, role, err)
			return
		}
		out = append(out, sourcePolicy{id: p.PolicyName, typ: "role", doc: d, text: p.Document})
	})
	if err != nil {
		return nil, storeErr("list role policies", err, func() error { return noSuchRole(role) })
	}
	if perr != nil {
		return nil, perr
	}
	arns, err := s.attachedARNs(ctx, role)
	if err != nil {
		return nil, storeErr("list attached role policies", err, func() error { return noSuchRole(role) })
	}
	for _, arn := range arns {
		mp, err := s.Store.GetPolicy(ctx, arn)
		if err != nil {
			return nil, storeErr("get policy", err, func() error { return noSuchPolicy(arn) })
		}
		d, err := policy.Parse(mp.Document, policy.Identity)
		if err != nil {
			return nil, fmt.Errorf("iam: stored policy %s: %w", arn, err)
		}
		out = append(out, sourcePolicy{id: mp.Name, typ: "user-managed", doc: d, text: mp.Document})
	}
	return out, nil
}

// evaluate decides one action/resource pair and explains the decision: the
// statements that produced it and the context keys the applicable
// statements test but the request did not supply.
func evaluate(sources []sourcePolicy, req *policy.Request) EvaluationResult {
	docs := make([]*policy.Document, len(sources))
	for i, sp := range sources {
		docs[i] = sp.doc
	}
	dec := policy.Evaluate(req, docs...)
	res := EvaluationResult{
		EvalActionName:       req.Action,
		EvalResourceName:     req.Resource,
		EvalDecision:         dec.String(),
		MatchedStatements:    []Statement{},
		MissingContextValues: []string{},
	}
	effect := ""
	switch dec {
	case policy.Allow:
		effect = "Allow"
	case policy.ExplicitDeny:
		effect = "Deny"
	}
	for _, sp := range sources {
		if effect != "" {
			_, matched := sp.doc.Evaluate(req)
			for _, m := range matched {
				if strings.EqualFold(m.Effect, effect) {
					res.MatchedStatements = append(res.MatchedStatements, Statement{SourcePolicyID: sp.id, SourcePolicyType: sp.typ})
					break
				}
			}
		}
		for _, k := range missingKeys(sp.doc, req) {
			if !slices.Contains(res.MissingContextValues, k) {
				res.MissingContextValues = append(res.MissingContextValues, k)
			}
		}
	}
	return res
}

// missingKeys lists the condition keys of statements that apply to req's
// action and resource but that req's context lacks. A statement applies if
// it matches with its conditions removed; keys tested only with an
// ...IfExists or Null operator are never missing.
func missingKeys(doc *policy.Document, req *policy.Request) []string {
	var out []string
	for _, st := range doc.Statements {
		var keys []string
		for _, c := range st.Conditions {
			if strings.HasSuffix(c.Operator, "IfExists") || c.Operator == "Null" {
				continue
			}
			if _, ok := req.Context.Get(c.Key); !ok {
				keys = append(keys, c.Key)
			}
		}
		if len(keys) == 0 {
			continue
		}
		bare := st
		bare.Conditions = nil
		one := *doc
		one.Statements = []policy.Statement{bare}
		if dec, _ := one.Evaluate(req); dec == policy.ImplicitDeny {
			continue
		}
		out = append(out, keys...)
	}
	return out
}
