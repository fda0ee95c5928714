package policy

import (
	"strings"
	"unicode/utf8"
)

// Wildcards in an expanded pattern. They are negative so that they never
// collide with a character, which lets a variable's value (or ${*}) stand
// for a literal '*' inside a pattern.
const (
	wildAny rune = -1 // '*': any run of characters, including ':'
	wildOne rune = -2 // '?': exactly one character
)

// expand returns the characters of s. When vars is set, policy variables
// are replaced by their single value in ctx; ok is false if one has no
// such value and no default, in which case the element matches nothing.
// When wild is set, '*' and '?' outside variables become wildcards.
func expand(s string, ctx Context, vars, wild bool) (p []rune, ok bool) {
	p = make([]rune, 0, len(s))
	for i := 0; i < len(s); {
		if vars && strings.HasPrefix(s[i:], "${") {
			if end := strings.IndexByte(s[i+2:], '}'); end >= 0 {
				val, ok := resolve(s[i+2:i+2+end], ctx)
				if !ok {
					return nil, false
				}
				p = append(p, []rune(val)...)
				i += 2 + end + 1
				continue
			}
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		if wild {
			switch r {
			case '*':
				r = wildAny
			case '?':
				r = wildOne
			}
		}
		p = append(p, r)
	}
	return p, true
}

// resolve returns the value of the variable body found between "${" and
// "}": a special character, or a context key with an optional quoted
// default as in ${aws:PrincipalTag/team, 'none'}.
func resolve(body string, ctx Context) (string, bool) {
	body = strings.TrimSpace(body)
	switch body {
	case "*", "?", "$":
		return body, true
	}
	key, def, hasDef := strings.Cut(body, ",")
	key = strings.TrimSpace(key)
	if hasDef {
		def = strings.TrimSpace(def)
		if len(def) >= 2 && def[0] == '\'' && def[len(def)-1] == '\'' {
			def = def[1 : len(def)-1]
		} else {
			hasDef = false
		}
	}
	if vals, ok := ctx.Get(key); ok && len(vals) == 1 {
		return vals[0], true
	}
	return def, hasDef
}

// literal expands s without wildcards.
func literal(s string, ctx Context, vars bool) (string, bool) {
	p, ok := expand(s, ctx, vars, false)
	return string(p), ok
}

// glob reports whether s matches the expanded pattern p.
func glob(p []rune, s string) bool {
	// Iterative matching that backtracks only to the most recent '*':
	// O(len(p)*len(s)) at worst, with no recursion.
	str := []rune(s)
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(str) {
		if pi < len(p) {
			switch p[pi] {
			case wildAny:
				starP, starS = pi, si
				pi++
				continue
			case wildOne:
				pi++
				si++
				continue
			case str[si]:
				pi++
				si++
				continue
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		pi, si = starP+1, starS
	}
	for pi < len(p) && p[pi] == wildAny {
		pi++
	}
	return pi == len(p)
}

// matchPattern reports whether s matches the wildcard pattern pat after
// expanding variables.
func matchPattern(pat, s string, ctx Context, vars bool) bool {
	p, ok := expand(pat, ctx, vars, true)
	return ok && glob(p, s)
}

// matchARN matches ARN s against pattern pat component by component, so
// that a wildcard in one component cannot swallow a ':' separator. The
// final resource component may itself contain colons.
func matchARN(pat, s string, ctx Context, vars bool) bool {
	p, ok := expand(pat, ctx, vars, true)
	if !ok {
		return false
	}
	pp := splitRunes(p, 6)
	switch {
	case len(pp) == 1:
		return glob(p, s) // a bare wildcard such as "*"
	case len(pp) < 6:
		return false
	}
	sp := strings.SplitN(s, ":", 6)
	if len(sp) < 6 {
		return false
	}
	for i := range pp {
		if !glob(pp[i], sp[i]) {
			return false
		}
	}
	return true
}

// splitRunes splits p at literal ':' into at most n parts.
func splitRunes(p []rune, n int) [][]rune {
	var parts [][]rune
	start := 0
	for i, r := range p {
		if len(parts) == n-1 {
			break
		}
		if r == ':' {
			parts = append(parts, p[start:i])
			start = i + 1
		}
	}
	return append(parts, p[start:])
}
