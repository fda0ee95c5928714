package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"sync"
	"sync/atomic"
	"unsafe"
)

// tokenKey identifies a pod token in the cache: its SHA-256, so the cache
// never holds a raw token that a heap dump or a debug print could leak.
type tokenKey [sha256.Size]byte

// keyOf hashes token without copying it: this runs on every request and a
// token is about 1 KiB. Sum256 only reads the bytes.
func keyOf(token string) tokenKey {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// short is the first 8 hex digits of the hash, the only form of a token
// that is ever logged.
func (k tokenKey) short() string { return hex.EncodeToString(k[:4]) }

// entry is one cached answer. Everything but the list links and the
// refresh bookkeeping is immutable once inserted; a refresh replaces the
// entry, which also resets its backoff.
type entry struct {
	key  tokenKey
	body []byte // the JSON answer, encoded once at insert

	// Times in Unix nanoseconds (smaller than time.Time, and atomic-free
	// reads are safe because they never change).
	fetched   int64
	refreshAt int64 // from here, answer from cache and refresh in the background
	staleAt   int64 // from here, refresh before answering (wait a little)
	usable    int64 // expiry minus margin: never served at or after this
	expiry    int64

	nextTry  atomic.Int64 // earliest next background refresh (backoff)
	failures atomic.Int32

	prev, next *entry // LRU list; guarded by cache.mu
}

// cache is a size-bounded map with least-recently-used eviction. A single
// mutex is enough: a hit holds it for a map lookup and two pointer moves.
type cache struct {
	mu    sync.Mutex
	max   int
	m     map[tokenKey]*entry
	head  entry // sentinel: head.next is the most recently used
	evict func(*entry)
}

func newCache(max int, evict func(*entry)) *cache {
	c := &cache{max: max, m: make(map[tokenKey]*entry), evict: evict}
	c.head.next, c.head.prev = &c.head, &c.head
	return c
}

func (c *cache) get(k tokenKey) *entry {
	c.mu.Lock()
	e := c.m[k]
	if e != nil && c.head.next != e {
		c.unlink(e)
		c.pushFront(e)
	}
	c.mu.Unlock()
	return e
}

// peek returns the entry for k without marking it used.
func (c *cache) peek(k tokenKey) *entry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[k]
}

// put inserts or replaces e and evicts the least recently used entries
// beyond the bound.
func (c *cache) put(e *entry) {
	var evicted []*entry
	c.mu.Lock()
	if old := c.m[e.key]; old != nil {
		c.unlink(old)
	}
	c.m[e.key] = e
	c.pushFront(e)
	for len(c.m) > c.max {
		lru := c.head.prev
		c.unlink(lru)
		delete(c.m, lru.key)
		evicted = append(evicted, lru)
	}
	c.mu.Unlock()
	if c.evict != nil {
		for _, e := range evicted {
			c.evict(e)
		}
	}
}

// remove deletes the entry for k if it is still e (a concurrent refresh may
// have replaced it with a good one).
func (c *cache) remove(k tokenKey, e *entry) {
	c.mu.Lock()
	if cur := c.m[k]; cur != nil && (e == nil || cur == e) {
		c.unlink(cur)
		delete(c.m, k)
	}
	c.mu.Unlock()
}

func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

func (c *cache) unlink(e *entry) {
	e.prev.next, e.next.prev = e.next, e.prev
	e.prev, e.next = nil, nil
}

func (c *cache) pushFront(e *entry) {
	e.prev, e.next = &c.head, c.head.next
	c.head.next.prev = e
	c.head.next = e
}
