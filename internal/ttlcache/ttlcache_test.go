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
