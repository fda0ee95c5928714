package session

import (
	"encoding/base64"
	"errors"
	"reflect"
	"testing"
	"time"
)

// FuzzOpen feeds arbitrary tokens to Open. It must never panic, must fail
// only with ErrInvalidToken or ErrExpired, and may accept a token only in
// its one canonical spelling carrying a session that was really sealed:
// AES-GCM makes forging a new one infeasible, so anything else accepted is
// a modified token getting through.
func FuzzOpen(f *testing.F) {
	keys := []Key{testKey("old", 1), testKey("new", 2)}
	s := mustSealer(f, keys...)
	sealed := []*Session{testSession(), {AccessKeyID: "ASIAQQQQQQQQQQQQQQQQ", Account: "111122223333", PrincipalARN: "arn:aws:iam::111122223333:root", Expiration: testNow.Add(-time.Minute)}}
	oldOnly := mustSealer(f, keys[0])
	for _, sess := range sealed {
		for _, sealer := range []*Sealer{s, oldOnly} {
			tok := mustSeal(f, sealer, sess)
			f.Add(tok)
			f.Add(tok[:len(tok)-1])
			f.Add(tok[:len(tokenPrefix)+3])
			f.Add(tok[:20] + "A" + tok[21:])
			f.Add(tok + "AA")
		}
	}
	f.Add("")
	f.Add("PDS1")
	f.Add("PDS1AA")
	f.Add("PDS1" + base64.RawURLEncoding.EncodeToString([]byte{255}))
	f.Add("PDS1" + base64.RawURLEncoding.EncodeToString(append([]byte{3}, "new"...)))

	f.Fuzz(func(t *testing.T, tok string) {
		got, err := s.Open(tok, testNow)
		switch {
		case err == nil, errors.Is(err, ErrExpired):
		case errors.Is(err, ErrInvalidToken):
			if got != nil {
				t.Fatalf("ErrInvalidToken with a session: %+v", got)
			}
			return
		default:
			t.Fatalf("unexpected error %v", err)
		}
		raw, decErr := base64.RawURLEncoding.DecodeString(tok[len(tokenPrefix):])
		if decErr != nil || tokenPrefix+base64.RawURLEncoding.EncodeToString(raw) != tok {
			t.Fatalf("accepted a non-canonical token %q", tok)
		}
		for _, want := range sealed {
			if reflect.DeepEqual(got, want) {
				if wantExpired := !testNow.Before(want.Expiration); wantExpired != (err != nil) {
					t.Fatalf("expired = %v, want %v", err != nil, wantExpired)
				}
				return
			}
		}
		t.Fatalf("accepted a session that was never sealed: %+v", got)
	})
}
