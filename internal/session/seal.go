package session

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// tokenPrefix versions the token format.
const tokenPrefix = "PDS1"

// ErrInvalidToken means the token is not one of ours or was tampered with.
var ErrInvalidToken = errors.New("session: invalid session token")

// ErrUnknownKey means the token names a sealing key this sealer does not
// hold: forged, sealed with a key since deleted, or sealed by another
// replica with a key created after this one last loaded its ring. It wraps
// ErrInvalidToken.
var ErrUnknownKey = fmt.Errorf("%w: unknown sealing key", ErrInvalidToken)

// ErrExpired means the token is authentic but past its expiration.
var ErrExpired = errors.New("session: session token expired")

// Key is one AES-256 sealing key and its ID.
type Key struct {
	ID     string
	Secret []byte // 32 bytes
}

// Sealer seals sessions with the newest key and opens them with any key in
// its ring, so keys can rotate while older tokens are still valid.
type Sealer struct {
	mu      sync.RWMutex
	current string
	aeads   map[string]cipher.AEAD
}

// NewSealer builds a sealer; keys[len-1] seals new tokens.
func NewSealer(keys []Key) (*Sealer, error) {
	s := &Sealer{aeads: map[string]cipher.AEAD{}}
	for _, k := range keys {
		if err := s.Add(k); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Reset replaces the whole ring with keys; keys[len-1] seals new tokens.
// Nothing changes when a key is invalid or keys is empty.
func (s *Sealer) Reset(keys []Key) error {
	if len(keys) == 0 {
		return errors.New("session: reset with no keys")
	}
	aeads := make(map[string]cipher.AEAD, len(keys))
	for _, k := range keys {
		if err := checkKeyID(k.ID); err != nil {
			return err
		}
		aead, err := newAEAD(k.Secret)
		if err != nil {
			return fmt.Errorf("session: key %s: %w", k.ID, err)
		}
		aeads[k.ID] = aead
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aeads = aeads
	s.current = keys[len(keys)-1].ID
	return nil
}

// Current returns the ID of the key that seals new tokens ("" if none).
func (s *Sealer) Current() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.current
}

// KeyIDs returns the IDs of the keys in the ring, in no particular order.
func (s *Sealer) KeyIDs() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	ids := make([]string, 0, len(s.aeads))
	for id := range s.aeads {
		ids = append(ids, id)
	}
	return ids
}

func checkKeyID(id string) error {
	if len(id) == 0 || len(id) > 255 {
		return fmt.Errorf("session: key ID length %d out of range", len(id))
	}
	return nil
}

// Add puts a key into the ring and makes it the sealing key.
func (s *Sealer) Add(k Key) error {
	if err := checkKeyID(k.ID); err != nil {
		return err
	}
	aead, err := newAEAD(k.Secret)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aeads[k.ID] = aead
	s.current = k.ID
	return nil
}

func newAEAD(secret []byte) (cipher.AEAD, error) {
	if len(secret) != 32 {
		return nil, fmt.Errorf("session: sealing key must be 32 bytes, got %d", len(secret))
	}
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	return cipher.NewGCM(block)
}

// Seal returns the session token for sess.
//
// Layout: "PDS1" + base64url(len(keyID) | keyID | nonce | AES-GCM(json)),
// with the prefix and key ID as additional data so neither can be swapped.
func (s *Sealer) Seal(sess *Session) (string, error) {
	s.mu.RLock()
	id, aead := s.current, s.aeads[s.current]
	s.mu.RUnlock()
	if aead == nil {
		return "", errors.New("session: no sealing key")
	}
	plain, err := json.Marshal(sess)
	if err != nil {
		return "", fmt.Errorf("session: encode: %w", err)
	}
	head := make([]byte, 0, 1+len(id)+aead.NonceSize())
	head = append(head, byte(len(id)))
	head = append(head, id...)
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("session: nonce: %w", err)
	}
	out := aead.Seal(append(head, nonce...), nonce, plain, additionalData(id))
	return tokenPrefix + base64.RawURLEncoding.EncodeToString(out), nil
}

// Open verifies and decodes a token. It returns ErrExpired (with the
// session) when the token is authentic but expired at now, and
// ErrUnknownKey when the key it names is not in the ring.
func (s *Sealer) Open(token string, now time.Time) (*Session, error) {
	// Decoders skip \r and \n, so a token with them would open too.
	if len(token) < len(tokenPrefix) || token[:len(tokenPrefix)] != tokenPrefix || strings.ContainsAny(token, "\r\n") {
		return nil, ErrInvalidToken
	}
	// Strict: otherwise the unused low bits of the last character are
	// ignored and one token has several spellings that all open.
	raw, err := base64.RawURLEncoding.Strict().DecodeString(token[len(tokenPrefix):])
	if err != nil || len(raw) < 2 {
		return nil, ErrInvalidToken
	}
	idLen := int(raw[0])
	if len(raw) < 1+idLen {
		return nil, ErrInvalidToken
	}
	id := string(raw[1 : 1+idLen])
	s.mu.RLock()
	aead := s.aeads[id]
	s.mu.RUnlock()
	if aead == nil {
		return nil, ErrUnknownKey
	}
	if len(raw) < 1+idLen+aead.NonceSize()+aead.Overhead() {
		return nil, ErrInvalidToken
	}
	nonce := raw[1+idLen : 1+idLen+aead.NonceSize()]
	plain, err := aead.Open(nil, nonce, raw[1+idLen+aead.NonceSize():], additionalData(id))
	if err != nil {
		return nil, ErrInvalidToken
	}
	var sess Session
	dec := json.NewDecoder(bytes.NewReader(plain))
	if err := dec.Decode(&sess); err != nil {
		return nil, ErrInvalidToken
	}
	if !now.Before(sess.Expiration) {
		return &sess, ErrExpired
	}
	return &sess, nil
}

func additionalData(keyID string) []byte {
	return []byte(tokenPrefix + keyID)
}

// NewKey returns a fresh random sealing key.
func NewKey(now time.Time) (Key, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return Key{}, fmt.Errorf("session: key: %w", err)
	}
	return Key{ID: "k" + now.UTC().Format("20060102T150405") + randomBase32(4), Secret: secret}, nil
}
