package store

import (
	"errors"
	"strings"
	"sync"
)

// ChangeKind says what a Change is about.
type ChangeKind string

// The kinds of change a store announces, and what their keys are.
const (
	// ChangeRole: a role was created, updated (trust policy, description,
	// tags, maximum session duration) or deleted, or one of its inline or
	// attached policies was put, deleted, attached or detached. Key: the
	// role name.
	ChangeRole ChangeKind = "role"
	// ChangeOIDCProvider: an OIDC provider was created, updated or deleted.
	// Key: its ARN.
	ChangeOIDCProvider ChangeKind = "oidc"
	// ChangeCluster: a cluster was registered, updated (its JWKS included)
	// or deleted. Deleting a cluster deletes its associations with it and
	// announces only the cluster. Key: the cluster name.
	ChangeCluster ChangeKind = "cluster"
	// ChangeAssociation: a Pod Identity association was created, updated
	// or deleted. Key: AssociationKey of its cluster, namespace and service
	// account.
	ChangeAssociation ChangeKind = "association"
	// ChangeAll: anything may have changed (a restore, or notifications
	// that may have been missed while the listener was disconnected).
	// Subscribers forget everything they cache. Key: the reason.
	ChangeAll ChangeKind = "all"
)

// Reasons given as the Key of ChangeAll.
const (
	ReasonRestore       = "restore"        // a backup was restored
	ReasonListenLost    = "listen-lost"    // the LISTEN connection dropped
	ReasonListenDown    = "listen-down"    // still reconnecting: sent periodically meanwhile
	ReasonListenStarted = "listen-started" // LISTEN is (again) in place
)

// Change is one committed change, as Notifier subscribers receive it.
type Change struct {
	Kind ChangeKind
	Key  string
}

// String is the wire form, "<kind>:<key>" (the PostgreSQL NOTIFY payload).
func (c Change) String() string { return string(c.Kind) + ":" + c.Key }

// ParseChange reads the wire form. Anything it does not recognise becomes
// ChangeAll, so a newer replica's notification still invalidates safely.
func ParseChange(s string) Change {
	kind, key, ok := strings.Cut(s, ":")
	switch k := ChangeKind(kind); k {
	case ChangeRole, ChangeOIDCProvider, ChangeCluster, ChangeAssociation, ChangeAll:
		if ok {
			return Change{Kind: k, Key: key}
		}
	}
	return Change{Kind: ChangeAll, Key: "unknown change " + s}
}

// AssociationKey is the Key of a ChangeAssociation. Cluster names,
// namespaces and service-account names never contain '/'.
func AssociationKey(cluster, namespace, serviceAccount string) string {
	return cluster + "/" + namespace + "/" + serviceAccount
}

// Notifier is implemented by stores that announce committed changes to
// associations, roles, OIDC providers and clusters, so that servers can
// drop what they cache as soon as it changes instead of when it expires.
//
// SQLite announces in-process (one process owns the file): subscribers hear
// of a change once it is committed, before the writing call returns.
// PostgreSQL does that too for the process's own writes, and also sends each
// change with pg_notify in the writing transaction (delivered only on
// commit) to every process that subscribed, over a LISTEN connection of its
// own that it reopens when it drops. While it is down, and once it is back,
// subscribers receive ChangeAll, since changes may have been missed.
//
// Subscribers are called one change at a time from the goroutine that
// committed it or from the listener's; they must be quick and must not call
// the store.
type Notifier interface {
	// Subscribe calls fn for every change from now on, until the returned
	// function is called.
	Subscribe(fn func(Change)) (unsubscribe func())
}

var _ Notifier = (*SQLite)(nil)

// hub passes changes to a process's subscribers.
type hub struct {
	mu   sync.Mutex
	seq  int
	subs map[int]func(Change)
}

func (h *hub) subscribe(fn func(Change)) func() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[int]func(Change){}
	}
	h.seq++
	id := h.seq
	h.subs[id] = fn
	return func() {
		h.mu.Lock()
		delete(h.subs, id)
		h.mu.Unlock()
	}
}

func (h *hub) publish(changes ...Change) {
	if len(changes) == 0 {
		return
	}
	h.mu.Lock()
	fns := make([]func(Change), 0, len(h.subs))
	for _, fn := range h.subs {
		fns = append(fns, fn)
	}
	h.mu.Unlock()
	for _, c := range changes {
		for _, fn := range fns {
			fn(c)
		}
	}
}

// Subscribe implements Notifier for the process's own writes; Postgres
// adds the other processes' through LISTEN.
func (s *sqlDB) Subscribe(fn func(Change)) func() {
	return s.subs.subscribe(fn)
}

// changed records, inside a write transaction, that it changes kind/key.
// The write helper announces the changes: with pg_notify in the transaction
// on PostgreSQL, and to the process's subscribers once it has committed.
func changed(tx querier, kind ChangeKind, key string) error {
	x, ok := tx.(dq)
	if !ok || x.changes == nil {
		return errors.New("store: change recorded outside a write transaction")
	}
	c := Change{Kind: kind, Key: key}
	for _, have := range *x.changes {
		if have == c {
			return nil
		}
	}
	*x.changes = append(*x.changes, c)
	return nil
}
