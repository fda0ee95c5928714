package ttlcache

import (
	"testing"
	"time"
)

func TestExpiryAndBound(t *testing.T) {
	now := time.Unix(1000, 0)
	c := New[string, int](time.Second, 2)
	c.Put("a", 1, now)
	if v, ok := c.Get("a", now.Add(999*time.Millisecond)); !ok || v != 1 {
		t.Fatalf("Get before expiry = %d, %v", v, ok)
	}
	if _, ok := c.Get("a", now.Add(time.Second)); ok {
		t.Fatal("entry served at its expiry")
	}
	c.PutUntil("b", 2, now.Add(time.Hour))
	c.Put("c", 3, now) // full: drops a and b
	if _, ok := c.Get("b", now); ok {
		t.Fatal("cache grew past its bound")
	}
	if v, ok := c.Get("c", now); !ok || v != 3 {
		t.Fatalf("Get(c) = %d, %v", v, ok)
	}
	c.Delete("c")
	if _, ok := c.Get("c", now); ok {
		t.Fatal("deleted entry served")
	}
}

// A value read before an invalidation is not cached after it.
func TestPutIfGeneration(t *testing.T) {
	now := time.Unix(1000, 0)
	c := New[string, int](time.Second, 10)
	gen := c.Generation()
	if !c.PutIfGeneration("a", 1, now, gen) {
		t.Fatal("put refused with an unchanged generation")
	}
	gen = c.Generation()
	c.Delete("b") // another key's invalidation counts too
	if c.PutIfGeneration("a", 2, now, gen) {
		t.Fatal("put accepted after a Delete")
	}
	if v, _ := c.Get("a", now); v != 1 {
		t.Fatalf("Get(a) = %d, want the earlier 1", v)
	}
	gen = c.Generation()
	c.Clear()
	if c.PutIfGeneration("a", 3, now, gen) {
		t.Fatal("put accepted after a Clear")
	}
	if _, ok := c.Get("a", now); ok {
		t.Fatal("entry served after Clear")
	}
}
