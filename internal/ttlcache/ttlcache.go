// Package ttlcache keeps values for a bounded time. The server's hot paths
// use it for store rows and verified tokens, where rereading on every
// request is too slow. Store rows are dropped as soon as the store announces
// a change to them (Delete, Clear), the TTL bounding staleness otherwise;
// Generation and PutIfGeneration keep a read that raced a change from
// caching the old value.
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

	mu  sync.Mutex
	m   map[K]entry[V]
	gen uint64 // counts Deletes and Clears
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
	c.put(k, v, expires)
}

func (c *Cache[K, V]) put(k K, v V, expires time.Time) {
	if len(c.m) >= c.max {
		clear(c.m)
	}
	c.m[k] = entry[V]{value: v, expires: expires}
}

// Generation changes whenever an entry is deleted or the cache cleared.
// Take it before reading the value to cache and store it with
// PutIfGeneration: a value read before an invalidation is then not cached
// after it.
func (c *Cache[K, V]) Generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gen
}

// PutIfGeneration stores v for the cache's TTL from now, unless an entry
// was deleted or the cache cleared since Generation returned gen. It
// reports whether v was stored.
func (c *Cache[K, V]) PutIfGeneration(k K, v V, now time.Time, gen uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen != gen {
		return false
	}
	c.put(k, v, now.Add(c.ttl))
	return true
}

// Delete forgets k.
func (c *Cache[K, V]) Delete(k K) {
	c.mu.Lock()
	delete(c.m, k)
	c.gen++
	c.mu.Unlock()
}

// Clear forgets everything.
func (c *Cache[K, V]) Clear() {
	c.mu.Lock()
	clear(c.m)
	c.gen++
	c.mu.Unlock()
}
