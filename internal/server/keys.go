package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/podid/podid/internal/session"
	"github.com/podid/podid/internal/store"
)

// Session-token sealing keys live in the store, sealed with the master key,
// so that every replica seals and opens with the same ring. Each replica
// reloads the ring every KeyReloadInterval (jittered) and when it is handed
// a token naming a key it does not hold; the reload also rotates (a new key
// once the newest is older than SealingKeyRotation) and prunes keys no
// unexpired token can still name. Replicas that race to rotate both create
// a key: both are valid, and since every replica seals with the newest by
// (CreatedAt, ID) they converge at their next reload.
const (
	// DefaultSealingKeyRotation is how long a sealing key seals new tokens.
	DefaultSealingKeyRotation = 30 * 24 * time.Hour
	// DefaultKeyReloadInterval is how often replicas reload the ring.
	DefaultKeyReloadInterval = time.Minute

	// maxTokenLifetime is the longest session a token can carry:
	// GetSessionToken allows DurationSeconds up to 129600 (36 h); role
	// sessions stop at 12 h and pod credentials at 6 h.
	maxTokenLifetime = 36 * time.Hour
	// keyClockMargin covers clock skew between the replica that created a
	// key, the ones that sealed with it and the one deciding to delete it.
	keyClockMargin = 15 * time.Minute
	// minKeyReloadGap rate-limits the reloads that unknown key IDs trigger.
	minKeyReloadGap = time.Second
	// keyReloadTimeout bounds one background reload.
	keyReloadTimeout = 30 * time.Second
)

// keyRetention is how long a superseded key is kept after the key that
// replaced it was created: the longest token, plus the time a replica may
// keep sealing with the old key before its next reload, plus clock skew.
func (s *Server) keyRetention() time.Duration {
	return maxTokenLifetime + 2*s.keyReloadInterval() + keyClockMargin
}

func (s *Server) keyReloadInterval() time.Duration {
	if s.cfg.KeyReloadInterval > 0 {
		return s.cfg.KeyReloadInterval
	}
	return DefaultKeyReloadInterval
}

// sealingKeyRotation is 0 when rotation is disabled.
func (s *Server) sealingKeyRotation() time.Duration {
	switch r := s.cfg.SealingKeyRotation; {
	case r < 0:
		return 0
	case r == 0:
		return DefaultSealingKeyRotation
	default:
		return r
	}
}

func (s *Server) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}

// SealingKeyID returns the ID of the key that seals new session tokens.
func (s *Server) SealingKeyID() string { return s.sealer.Current() }

// syncKeys reloads the sealing keys from the store into the sealer. With
// maintain it also creates the first key, rotates and prunes. Callers hold
// keysSem.
func (s *Server) syncKeys(ctx context.Context, maintain bool) error {
	s.keysLoadedAt = time.Now()
	s.keyReloads.Add(1)
	stored, err := s.listSealingKeys(ctx)
	if err != nil {
		return err
	}
	if maintain {
		if stored, err = s.maintainKeys(ctx, stored); err != nil {
			return err
		}
	}
	if len(stored) == 0 {
		return errors.New("server: the store holds no sealing key")
	}
	keys := make([]session.Key, 0, len(stored))
	for _, sk := range stored {
		secret, err := s.box.Open(sk.Sealed, labelSealingKey+"/"+sk.ID)
		if err != nil {
			return fmt.Errorf("server: open sealing key %s: %w", sk.ID, err)
		}
		keys = append(keys, session.Key{ID: sk.ID, Secret: secret})
	}
	before, had := s.sealer.Current(), s.sealer.KeyIDs()
	if err := s.sealer.Reset(keys); err != nil {
		return fmt.Errorf("server: load sealing keys: %w", err)
	}
	if cur := s.sealer.Current(); cur != before {
		s.log.Info("sealing key now seals new session tokens", "key_id", cur, "previous_key_id", before, "keys", len(keys))
	} else if len(had) != len(keys) {
		s.log.Debug("sealing keys reloaded", "key_id", cur, "keys", len(keys))
	}
	return nil
}

// listSealingKeys returns the stored keys oldest first, by CreatedAt then
// ID, whatever order the backend returned.
func (s *Server) listSealingKeys(ctx context.Context) ([]store.SealingKey, error) {
	stored, err := s.store.ListSealingKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("server: list sealing keys: %w", err)
	}
	slices.SortStableFunc(stored, func(a, b store.SealingKey) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return stored, nil
}

// maintainKeys creates a key when there is none or the newest is due for
// rotation, deletes the keys whose tokens have all expired, and returns
// the keys left.
func (s *Server) maintainKeys(ctx context.Context, stored []store.SealingKey) ([]store.SealingKey, error) {
	now := s.now()
	rotation := s.sealingKeyRotation()
	switch {
	case len(stored) == 0:
		k, err := s.createSealingKey(ctx, now)
		if err != nil {
			return nil, err
		}
		s.log.Info("sealing key created", "key_id", k.ID)
	case rotation > 0 && now.Sub(stored[len(stored)-1].CreatedAt) >= rotation:
		old := stored[len(stored)-1]
		k, err := s.createSealingKey(ctx, now)
		if err != nil {
			return nil, err
		}
		s.log.Info("sealing key rotated", "key_id", k.ID, "previous_key_id", old.ID,
			"previous_created", old.CreatedAt, "rotation", rotation.String())
	default:
		return s.pruneKeys(ctx, stored, now)
	}
	// Read the keys back: another replica may have created one meanwhile,
	// and the newest of all is what every replica seals with.
	stored, err := s.listSealingKeys(ctx)
	if err != nil {
		return nil, err
	}
	return s.pruneKeys(ctx, stored, now)
}

// pruneKeys deletes every key superseded more than keyRetention ago: a key
// seals tokens until the next one is created, so once the next one is
// older than the longest token (plus reload lag and skew), no valid token
// names it. The newest key is never deleted.
func (s *Server) pruneKeys(ctx context.Context, stored []store.SealingKey, now time.Time) ([]store.SealingKey, error) {
	retention := s.keyRetention()
	kept := stored[:0:0]
	for i, k := range stored {
		if i == len(stored)-1 {
			kept = append(kept, k)
			break
		}
		next := stored[i+1]
		if now.Sub(next.CreatedAt) <= retention {
			kept = append(kept, k)
			continue
		}
		err := s.store.DeleteSealingKey(ctx, k.ID)
		switch {
		case errors.Is(err, store.ErrNotFound):
			// Another replica pruned it first.
		case err != nil:
			return nil, fmt.Errorf("server: delete sealing key %s: %w", k.ID, err)
		default:
			s.log.Info("sealing key deleted: every token it sealed has expired", "key_id", k.ID,
				"superseded_by", next.ID, "superseded", next.CreatedAt, "retention", retention.String())
		}
	}
	return kept, nil
}

func (s *Server) createSealingKey(ctx context.Context, now time.Time) (store.SealingKey, error) {
	k, err := session.NewKey(now)
	if err != nil {
		return store.SealingKey{}, fmt.Errorf("server: new sealing key: %w", err)
	}
	sk := store.SealingKey{ID: k.ID, Sealed: s.box.Seal(k.Secret, labelSealingKey+"/"+k.ID), CreatedAt: now.UTC()}
	if err := s.store.CreateSealingKey(ctx, sk); err != nil {
		return store.SealingKey{}, fmt.Errorf("server: create sealing key: %w", err)
	}
	return sk, nil
}

// lockKeys takes keysSem, the one-reload-at-a-time token.
func (s *Server) lockKeys(ctx context.Context) error {
	select {
	case s.keysSem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) unlockKeys() { <-s.keysSem }

// MaintainSealingKeys reloads the sealing keys, rotating and pruning as
// due: what the background loop does at each tick.
func (s *Server) MaintainSealingKeys(ctx context.Context) error {
	if err := s.lockKeys(ctx); err != nil {
		return err
	}
	defer s.unlockKeys()
	return s.syncKeys(ctx, true)
}

// reloadKeysAfter makes sure the sealer holds every key the store held at
// missed (when a token named an unknown key): it returns at once if a
// reload started after missed, and otherwise reloads, at most once per
// minKeyReloadGap, so forged key IDs cannot turn into a stream of store
// queries. Concurrent callers share one reload.
func (s *Server) reloadKeysAfter(ctx context.Context, missed time.Time) error {
	if err := s.lockKeys(ctx); err != nil {
		return err
	}
	defer s.unlockKeys()
	if s.keysLoadedAt.After(missed) {
		return nil
	}
	if wait := time.Until(s.keysLoadedAt.Add(minKeyReloadGap)); wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.syncKeys(ctx, false)
}

// openToken opens a session token, reloading the keys once when it names a
// key this replica does not know yet (another replica rotated).
func (s *Server) openToken(ctx context.Context, token string, now time.Time) (*session.Session, error) {
	missed := time.Now()
	sess, err := s.sealer.Open(token, now)
	if !errors.Is(err, session.ErrUnknownKey) {
		return sess, err
	}
	if rerr := s.reloadKeysAfter(ctx, missed); rerr != nil {
		s.log.Warn("sealing keys: reload for an unknown key ID failed", "error", rerr)
		return nil, err
	}
	return s.sealer.Open(token, now)
}

// keyLoop reloads, rotates and prunes the sealing keys every
// keyReloadInterval, jittered by ±20% so replicas spread their queries and
// rarely rotate at the same instant, until ctx ends.
func (s *Server) keyLoop(ctx context.Context) {
	base := s.keyReloadInterval()
	for {
		d := base*4/5 + rand.N(base*2/5+1)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		rctx, cancel := context.WithTimeout(ctx, keyReloadTimeout)
		err := s.MaintainSealingKeys(rctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			s.log.Warn("sealing keys: reload failed; still using the keys loaded before", "error", err)
		}
	}
}
