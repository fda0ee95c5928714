// Package ttlcache keeps values for a short, bounded time. The server's hot
// paths use it for store rows and verified tokens, where a second of
// staleness is acceptable (IAM itself is eventually consistent) and
// rereading on every request is not.
package ttlcache

import (
	"sync"
	"time"
)

type entry[V any] struct {
	value   V
	expires time.Time
}

// Cache maps keys to values that expire. It holds at most max entries; when
// full it drops everything, which is cheap and bounds memory without an
// eviction list (entries live only seconds anyway).
type Cache[K comparable, V any] struct {
	ttl time.Duration
	max int

	mu sync.Mutex
	m  map[K]entry[V]
}

// New returns a cache whose entries live for ttl, holding at most max.
func New[K comparable, V any](ttl time.Duration, max int) *Cache[K, V] {
	return &Cache[K, V]{ttl: ttl, max: max, m: make(map[K]entry[V])}
}

// Get returns the value for k if it has not expired at now.
func (c *Cache[K, V]) Get(k K, now time.Time) (V, bool) {
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if !ok || !now.Before(e.expires) {
		var zero V
		return zero, false
	}
	return e.value, true
}

// Put stores v for the cache's TTL from now.
func (c *Cache[K, V]) Put(k K, v V, now time.Time) {
	c.PutUntil(k, v, now.Add(c.ttl))
}

// PutUntil stores v until expires.
func (c *Cache[K, V]) PutUntil(k K, v V, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = entry[V]{value: v, expires: expires}
}

// Delete forgets k.
func (c *Cache[K, V]) Delete(k K) {
	c.mu.Lock()
	delete(c.m, k)
	c.mu.Unlock()
}

// Clear forgets everything.
func (c *Cache[K, V]) Clear() {
	c.mu.Lock()
	clear(c.m)
	c.mu.Unlock()
}
