package session

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var testNow = time.Date(2025, 5, 9, 12, 0, 0, 0, time.UTC)

func testKey(id string, fill byte) Key {
	return Key{ID: id, Secret: bytes.Repeat([]byte{fill}, 32)}
}

func testSession() *Session {
	return &Session{
		AccessKeyID:       "ASIAABCDEFGHIJKLMNOP",
		SecretAccessKey:   "0123456789012345678901234567890123456789",
		Account:           "111122223333",
		RoleARN:           "arn:aws:iam::111122223333:role/app",
		RoleID:            "AROAABCDEFGHIJKLMNOPQ",
		SessionName:       "s1",
		Tags:              []Tag{{Key: "team", Value: "blue"}},
		TransitiveTagKeys: []string{"team"},
		SourceIdentity:    "alice",
		Policy:            `{"Version":"2012-10-17","Statement":[]}`,
		PolicyARNs:        []string{"arn:aws:iam::111122223333:policy/p"},
		Chained:           true,
		Expiration:        testNow.Add(time.Hour),
	}
}

func mustSealer(t testing.TB, keys ...Key) *Sealer {
	t.Helper()
	s, err := NewSealer(keys)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustSeal(t testing.TB, s *Sealer, sess *Session) string {
	t.Helper()
	tok, err := s.Seal(sess)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestSealOpenRoundTrip(t *testing.T) {
	s := mustSealer(t, testKey("k1", 1))
	want := testSession()
	tok := mustSeal(t, s, want)
	if !strings.HasPrefix(tok, tokenPrefix) {
		t.Errorf("token %q lacks prefix %q", tok, tokenPrefix)
	}
	if strings.Contains(tok, want.SecretAccessKey) || strings.Contains(tok, want.RoleARN) {
		t.Error("token carries the session in clear")
	}
	got, err := s.Open(tok, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Open = %+v, want %+v", got, want)
	}
	if again := mustSeal(t, s, want); again == tok {
		t.Error("two seals of one session are identical: nonce reused")
	}
}

func TestSealRotation(t *testing.T) {
	s := mustSealer(t, testKey("old", 1))
	oldTok := mustSeal(t, s, testSession())
	if err := s.Add(testKey("new", 2)); err != nil {
		t.Fatal(err)
	}
	newTok := mustSeal(t, s, testSession())
	for name, tok := range map[string]string{"old": oldTok, "new": newTok} {
		if _, err := s.Open(tok, testNow); err != nil {
			t.Errorf("%s token after rotation: %v", name, err)
		}
	}
	// New tokens are sealed with the new key: a ring without it refuses them.
	if _, err := mustSealer(t, testKey("old", 1)).Open(newTok, testNow); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("new token, ring without the new key: err = %v, want ErrInvalidToken", err)
	}
	// A ring that dropped the old key refuses its tokens.
	if _, err := mustSealer(t, testKey("new", 2)).Open(oldTok, testNow); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("unknown key ID: err = %v, want ErrInvalidToken", err)
	}
	// Same key ID, different secret: refused.
	if _, err := mustSealer(t, testKey("old", 3)).Open(oldTok, testNow); !errors.Is(err, ErrInvalidToken) {
		t.Errorf("wrong secret under the right ID: err = %v, want ErrInvalidToken", err)
	}
}

func TestSealBadKeys(t *testing.T) {
	for name, k := range map[string]Key{
		"short secret": {ID: "k", Secret: make([]byte, 16)},
		"empty ID":     {ID: "", Secret: make([]byte, 32)},
		"long ID":      {ID: strings.Repeat("k", 256), Secret: make([]byte, 32)},
	} {
		if _, err := NewSealer([]Key{k}); err == nil {
			t.Errorf("%s: NewSealer accepted the key", name)
		}
	}
	if _, err := (&Sealer{}).Seal(testSession()); err == nil {
		t.Error("Seal without a key succeeded")
	}
}

func TestOpenExpired(t *testing.T) {
	s := mustSealer(t, testKey("k1", 1))
	sess := testSession()
	tok := mustSeal(t, s, sess)
	for _, tc := range []struct {
		at      time.Time
		wantErr error
	}{
		{sess.Expiration.Add(-time.Second), nil},
		{sess.Expiration, ErrExpired},
		{sess.Expiration.Add(time.Hour), ErrExpired},
	} {
		got, err := s.Open(tok, tc.at)
		if !errors.Is(err, tc.wantErr) {
			t.Errorf("Open at %v: err = %v, want %v", tc.at, err, tc.wantErr)
		}
		// An expired token is still authentic: the session comes back for logs.
		if got == nil || got.AccessKeyID != sess.AccessKeyID {
			t.Errorf("Open at %v: session = %+v", tc.at, got)
		}
	}
}

// b64url is the alphabet of the token body.
const b64url = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// TestOpenTamperEveryByte changes each character of a real token to every
// other character of the alphabet: no change may be accepted.
func TestOpenTamperEveryByte(t *testing.T) {
	s := mustSealer(t, testKey("k1", 1))
	tok := mustSeal(t, s, testSession())
	for i := range len(tok) {
		for _, c := range []byte(b64url + "=.~ ") {
			if c == tok[i] {
				continue
			}
			bad := tok[:i] + string(c) + tok[i+1:]
			if got, err := s.Open(bad, testNow); !errors.Is(err, ErrInvalidToken) || got != nil {
				t.Fatalf("byte %d set to %q: Open = %v, %v; want ErrInvalidToken", i, c, got, err)
			}
		}
	}
	// Inserted characters, newlines included (base64 decoders skip them).
	for i := len(tokenPrefix); i <= len(tok); i++ {
		for _, c := range []string{"\n", "\r", "A", "="} {
			if _, err := s.Open(tok[:i]+c+tok[i:], testNow); !errors.Is(err, ErrInvalidToken) {
				t.Fatalf("%q inserted at %d: err = %v, want ErrInvalidToken", c, i, err)
			}
		}
	}
	for _, bad := range []string{"", "PDS1", "PDS2" + tok[4:], tok[:len(tok)-1], tok + "A", tok + tok, strings.ToLower(tok), "x" + tok} {
		if _, err := s.Open(bad, testNow); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("Open(%.20q…) err = %v, want ErrInvalidToken", bad, err)
		}
	}
}

func TestSealerReset(t *testing.T) {
	s := mustSealer(t, testKey("old", 1))
	oldTok := mustSeal(t, s, testSession())

	if err := s.Reset([]Key{testKey("old", 1), testKey("new", 2)}); err != nil {
		t.Fatal(err)
	}
	if got := s.Current(); got != "new" {
		t.Fatalf("Current after Reset = %q, want new", got)
	}
	newTok := mustSeal(t, s, testSession())
	if _, err := mustSealer(t, testKey("new", 2)).Open(newTok, testNow); err != nil {
		t.Errorf("token sealed after Reset does not open under the new key alone: %v", err)
	}
	if _, err := s.Open(oldTok, testNow); err != nil {
		t.Errorf("old token after Reset kept the old key: %v", err)
	}

	// A bad key leaves the ring as it was.
	if err := s.Reset([]Key{testKey("x", 3), {ID: "bad", Secret: make([]byte, 5)}}); err == nil {
		t.Error("Reset accepted a 5-byte secret")
	}
	if err := s.Reset(nil); err == nil {
		t.Error("Reset accepted no keys")
	}
	if got := s.Current(); got != "new" {
		t.Errorf("Current after failed Resets = %q, want new", got)
	}
	if _, err := s.Open(oldTok, testNow); err != nil {
		t.Errorf("old token after failed Resets: %v", err)
	}

	// Dropping the old key: its tokens name a key the ring lacks.
	if err := s.Reset([]Key{testKey("new", 2)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Open(oldTok, testNow); !errors.Is(err, ErrUnknownKey) || !errors.Is(err, ErrInvalidToken) {
		t.Errorf("token of a dropped key: err = %v, want ErrUnknownKey (an ErrInvalidToken)", err)
	}
	if ids := s.KeyIDs(); len(ids) != 1 || ids[0] != "new" {
		t.Errorf("KeyIDs = %v, want [new]", ids)
	}
	// A known ID with the wrong secret is invalid, not unknown: no point
	// reloading keys for it.
	if _, err := mustSealer(t, testKey("new", 9)).Open(newTok, testNow); !errors.Is(err, ErrInvalidToken) || errors.Is(err, ErrUnknownKey) {
		t.Errorf("wrong secret under a known ID: err = %v, want ErrInvalidToken only", err)
	}
}
