package policy

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
)

// object is a JSON object that remembers key order, so that errors and
// conditions follow the document.
type object struct {
	keys []string
	vals map[string]any
}

// maxDepth bounds nesting; real policies are at most five levels deep.
const maxDepth = 32

// errSyntax is the message AWS gives for anything that is not JSON.
const errSyntax = "Syntax errors in policy."

// decodeJSON decodes doc into a tree of *object, []any, string,
// json.Number, bool and nil. Unlike encoding/json it rejects duplicate
// keys, which AWS treats as an error rather than letting the last win.
func decodeJSON(doc string) (any, error) {
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber()
	v, err := decodeValue(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, syntaxErr(errSyntax + " Unexpected content after the policy document.")
	}
	return v, nil
}

func decodeValue(dec *json.Decoder, depth int) (any, error) {
	if depth > maxDepth {
		return nil, syntaxErr(errSyntax + " The policy document is nested too deeply.")
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, jsonErr(err)
	}
	switch tok := tok.(type) {
	case json.Delim:
		switch tok {
		case '{':
			obj := &object{vals: map[string]any{}}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, jsonErr(err)
				}
				k, ok := kt.(string)
				if !ok {
					return nil, syntaxErr(errSyntax)
				}
				if _, dup := obj.vals[k]; dup {
					return nil, syntaxErr(errSyntax + " Duplicate field " + k)
				}
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				obj.keys = append(obj.keys, k)
				obj.vals[k] = v
			}
			if _, err := dec.Token(); err != nil { // '}'
				return nil, jsonErr(err)
			}
			return obj, nil
		case '[':
			list := []any{}
			for dec.More() {
				v, err := decodeValue(dec, depth+1)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			if _, err := dec.Token(); err != nil { // ']'
				return nil, jsonErr(err)
			}
			return list, nil
		}
		// A closing delimiter where a value belongs.
		return nil, syntaxErr(errSyntax)
	}
	return tok, nil
}

func jsonErr(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return syntaxErr(errSyntax + " Unexpected end of the policy document.")
	}
	return syntaxErr(errSyntax)
}

func syntaxErr(msg string) *SyntaxError { return &SyntaxError{Msg: msg} }

// Size returns the length of doc in characters with the white space
// outside strings removed, which is how IAM measures policies against its
// size quotas.
func Size(doc string) int {
	n := 0
	inString, escaped := false, false
	for _, r := range doc {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case r == '\\':
				escaped = true
			case r == '"':
				inString = false
			}
		case r == '"':
			inString = true
		case r == ' ' || r == '\t' || r == '\n' || r == '\r':
			continue
		}
		n++
	}
	return n
}
