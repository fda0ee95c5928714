package server

import (
	"log/slog"
	"time"

	"github.com/podid/podid/internal/store"
)

// notifiedCacheTTL is how long the caches of store rows (associations,
// clusters, roles, OIDC providers, role policies) live when the store
// announces every change (store.Notifier): each change then invalidates
// what it affects at once, on every replica, and the TTL is only the
// periodic full resync behind the notifications. Without notifications the
// services keep their 1 s defaults.
const notifiedCacheTTL = 30 * time.Second

// watchStore subscribes the services' caches to the store's change
// notifications, when it has them, and lengthens their TTLs accordingly.
// It runs before the services are first used.
func (s *Server) watchStore() {
	n, ok := s.store.(store.Notifier)
	if !ok {
		s.log.Info("store announces no changes: caches expire after 1 s")
		return
	}
	if l, ok := s.store.(interface{ SetLogger(*slog.Logger) }); ok {
		l.SetLogger(s.log)
	}
	s.eks.CacheTTL = notifiedCacheTTL
	s.sts.CacheTTL = notifiedCacheTTL
	s.authz.CacheTTL = notifiedCacheTTL
	unsubscribe := n.Subscribe(func(c store.Change) {
		s.log.Debug("store change", "kind", string(c.Kind), "key", c.Key)
		s.eks.Invalidate(c)
		s.sts.Invalidate(c)
		s.authz.Invalidate(c)
	})
	s.closers = append(s.closers, func() error {
		unsubscribe()
		return nil
	})
}
