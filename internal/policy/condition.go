package policy

import (
	"bytes"
	"encoding/base64"
	"math"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"time"
)

type opKind int

const (
	kindString opKind = iota
	kindNumeric
	kindDate
	kindBool
	kindBinary
	kindIP
	kindARN
	kindNull
)

type comparison int

const (
	cmpEq comparison = iota
	cmpFold
	cmpLike
	cmpLT
	cmpLE
	cmpGT
	cmpGE
)

type setMode int

const (
	setNone setMode = iota
	setAny          // ForAnyValue:
	setAll          // ForAllValues:
)

// operator is a parsed condition operator such as
// "ForAllValues:StringNotLikeIfExists".
type operator struct {
	kind     opKind
	cmp      comparison
	negate   bool // the Not forms: true when no value matches
	ifExists bool
	set      setMode
}

// baseOperators maps lower-cased operator names, without set prefix or
// IfExists suffix, to their meaning.
var baseOperators = map[string]operator{}

func init() {
	add := func(name string, kind opKind, cmp comparison, negate bool) {
		baseOperators[strings.ToLower(name)] = operator{kind: kind, cmp: cmp, negate: negate}
	}
	add("StringEquals", kindString, cmpEq, false)
	add("StringNotEquals", kindString, cmpEq, true)
	add("StringEqualsIgnoreCase", kindString, cmpFold, false)
	add("StringNotEqualsIgnoreCase", kindString, cmpFold, true)
	add("StringLike", kindString, cmpLike, false)
	add("StringNotLike", kindString, cmpLike, true)
	for _, k := range []struct {
		prefix string
		kind   opKind
	}{{"Numeric", kindNumeric}, {"Date", kindDate}} {
		add(k.prefix+"Equals", k.kind, cmpEq, false)
		add(k.prefix+"NotEquals", k.kind, cmpEq, true)
		add(k.prefix+"LessThan", k.kind, cmpLT, false)
		add(k.prefix+"LessThanEquals", k.kind, cmpLE, false)
		add(k.prefix+"GreaterThan", k.kind, cmpGT, false)
		add(k.prefix+"GreaterThanEquals", k.kind, cmpGE, false)
	}
	add("Bool", kindBool, cmpEq, false)
	add("BinaryEquals", kindBinary, cmpEq, false)
	add("IpAddress", kindIP, cmpEq, false)
	add("NotIpAddress", kindIP, cmpEq, true)
	// AWS gives ArnEquals and ArnLike the same meaning: both take wildcards.
	add("ArnEquals", kindARN, cmpLike, false)
	add("ArnLike", kindARN, cmpLike, false)
	add("ArnNotEquals", kindARN, cmpLike, true)
	add("ArnNotLike", kindARN, cmpLike, true)
	add("Null", kindNull, cmpEq, false)
}

// parseOperator parses a condition operator name. Names are matched
// case-insensitively.
func parseOperator(name string) (operator, bool) {
	s := name
	set := setNone
	if p := len("ForAnyValue:"); len(s) > p && strings.EqualFold(s[:p], "ForAnyValue:") {
		set, s = setAny, s[p:]
	} else if p := len("ForAllValues:"); len(s) > p && strings.EqualFold(s[:p], "ForAllValues:") {
		set, s = setAll, s[p:]
	}
	ifExists := false
	if p := len(s) - len("IfExists"); p > 0 && strings.EqualFold(s[p:], "IfExists") {
		ifExists, s = true, s[:p]
	}
	op, ok := baseOperators[strings.ToLower(s)]
	if !ok || op.kind == kindNull && (ifExists || set != setNone) {
		return operator{}, false
	}
	op.ifExists, op.set = ifExists, set
	return op, true
}

// validValue reports whether s is a well-formed policy value for op.
// String and ARN values may hold anything, including policy variables.
func (op operator) validValue(s string) bool {
	switch op.kind {
	case kindNumeric:
		_, ok := parseNumber(s)
		return ok
	case kindDate:
		_, ok := parseDate(s)
		return ok
	case kindBool, kindNull:
		return strings.EqualFold(s, "true") || strings.EqualFold(s, "false")
	case kindBinary:
		_, err := base64.StdEncoding.DecodeString(s)
		return err == nil
	case kindIP:
		_, ok := parsePrefix(s)
		return ok
	}
	return true
}

// holds reports whether the condition is satisfied by ctx.
func (c *Condition) holds(ctx Context, vars bool) bool {
	vals, _ := ctx.Get(c.key)
	absent := len(vals) == 0
	op := c.op
	if op.kind == kindNull {
		for _, v := range c.Values {
			if strings.EqualFold(v, "true") == absent {
				return true
			}
		}
		return false
	}
	if absent {
		switch {
		case op.ifExists:
			return true
		case op.set == setAll:
			return true // vacuously: every one of no values matches
		case op.set == setAny:
			return false
		}
		// A missing key cannot equal anything, so only the Not forms hold.
		return op.negate
	}
	// each reports whether one context value satisfies the operator.
	each := func(v string) bool {
		return c.matchAny(v, ctx, vars) != op.negate
	}
	if op.set == setAny || op.set == setNone && !op.negate {
		for _, v := range vals {
			if each(v) {
				return true
			}
		}
		return false
	}
	// ForAllValues, and the Not forms of single-valued operators: no
	// value of the key may match.
	for _, v := range vals {
		if !each(v) {
			return false
		}
	}
	return true
}

// matchAny reports whether context value v matches any of the policy
// values under the operator's positive sense.
func (c *Condition) matchAny(v string, ctx Context, vars bool) bool {
	for _, pv := range c.Values {
		if c.op.match(v, pv, ctx, vars) {
			return true
		}
	}
	return false
}

func (op operator) match(v, pv string, ctx Context, vars bool) bool {
	switch op.kind {
	case kindString:
		if op.cmp == cmpLike {
			return matchPattern(pv, v, ctx, vars)
		}
		want, ok := literal(pv, ctx, vars)
		if !ok {
			return false
		}
		if op.cmp == cmpFold {
			return strings.EqualFold(v, want)
		}
		return v == want
	case kindARN:
		return matchARN(pv, v, ctx, vars)
	case kindNumeric:
		a, ok1 := parseNumber(v)
		b, ok2 := parseNumber(pv)
		return ok1 && ok2 && compare(op.cmp, cmpFloat(a, b))
	case kindDate:
		a, ok1 := parseDate(v)
		b, ok2 := parseDate(pv)
		return ok1 && ok2 && compare(op.cmp, a.Compare(b))
	case kindBool:
		return strings.EqualFold(v, pv)
	case kindBinary:
		want, err := base64.StdEncoding.DecodeString(pv)
		if err != nil {
			return false
		}
		got, err := base64.StdEncoding.DecodeString(v)
		if err != nil {
			got = []byte(v) // raw bytes rather than their encoding
		}
		return bytes.Equal(got, want)
	case kindIP:
		prefix, ok := parsePrefix(pv)
		if !ok {
			return false
		}
		addr, err := netip.ParseAddr(v)
		if err != nil {
			return false
		}
		return prefix.Contains(addr.WithZone("").Unmap())
	}
	return false
}

func compare(cmp comparison, c int) bool {
	switch cmp {
	case cmpEq:
		return c == 0
	case cmpLT:
		return c < 0
	case cmpLE:
		return c <= 0
	case cmpGT:
		return c > 0
	case cmpGE:
		return c >= 0
	}
	return false
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func parseNumber(s string) (float64, bool) {
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return f, true
}

var epochRE = regexp.MustCompile(`^-?[0-9]+(\.[0-9]+)?$`)

// dateLayouts are the ISO 8601 forms AWS accepts, most specific first.
var dateLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02T15:04:05Z0700",
	"2006-01-02T15:04Z07:00",
	"2006-01-02T15:04:05",
	"2006-01-02T15:04",
	"2006-01-02",
}

// parseDate parses an ISO 8601 date or epoch seconds. Times without a
// zone are UTC.
func parseDate(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if epochRE.MatchString(s) {
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.Abs(f) > 1e13 {
			return time.Time{}, false
		}
		sec, frac := math.Modf(f)
		return time.Unix(int64(sec), int64(frac*1e9)).UTC(), true
	}
	for _, layout := range dateLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	return time.Time{}, false
}

// parsePrefix parses a CIDR block or a single address.
func parsePrefix(s string) (netip.Prefix, bool) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, false
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), true
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), true
}
