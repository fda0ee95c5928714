//go:build unix

package kubetest

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"
)

func TestLockFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock")
	unlock, err := lockFile(t.Context(), path, func() { t.Error("waited for a free lock") })
	if err != nil {
		t.Fatal(err)
	}

	// A second holder waits, says so, and gives up when its context ends.
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	waited := false
	_, err = lockFile(ctx, path, func() { waited = true })
	if !errors.Is(err, context.DeadlineExceeded) || !waited {
		t.Fatalf("second lockFile = %v (waited %v), want a deadline after waiting", err, waited)
	}

	// Once released, the lock is taken at once.
	unlock()
	unlock, err = lockFile(t.Context(), path, func() { t.Error("waited for a released lock") })
	if err != nil {
		t.Fatal(err)
	}
	unlock()
}
