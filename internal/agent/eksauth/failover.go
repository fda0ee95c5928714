package eksauth

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults of Failover.
const (
	DefaultTryTimeout = 5 * time.Second
	DefaultHoldDown   = 5 * time.Second
)

// Failover spreads AssumeRoleForPodIdentity over several servers that share
// one store (replicas). Calls take the servers in turn (round robin), so
// every agent spreads its load over all of them however few agents there
// are. On a connection error, a timeout, a 5xx or throttling a call moves on
// to the next server, so one dead replica costs a request nothing but the
// time of its failed try. A server that failed so (throttling aside) is held
// down — tried only after every other — for HoldDown, doubled for each
// further consecutive failure up to 16×; once the hold ends it takes its
// turn again, so load returns to a replica that comes back. A definitive
// answer (any 4xx but 429) is returned as it is: every replica would give
// the same.
type Failover struct {
	Clients []*Client
	// TryTimeout bounds the call to one server; DefaultTryTimeout if zero.
	TryTimeout time.Duration
	// HoldDown is how long a failed server is tried last; DefaultHoldDown if
	// zero.
	HoldDown time.Duration
	Now      func() time.Time

	next      atomic.Uint32  // the server the next call starts at
	downUntil []atomic.Int64 // per client, UnixNano
	failures  []atomic.Int32 // per client, consecutive
}

// NewFailover returns a Failover over one client per endpoint, each a copy
// of proto with its Endpoint set.
func NewFailover(proto Client, endpoints ...string) *Failover {
	f := &Failover{}
	for _, e := range endpoints {
		c := proto
		c.Endpoint = e
		f.Clients = append(f.Clients, &c)
	}
	f.downUntil = make([]atomic.Int64, len(f.Clients))
	f.failures = make([]atomic.Int32, len(f.Clients))
	if len(endpoints) > 1 {
		// Agents started together do not all begin on the first server.
		f.next.Store(uint32(rand.IntN(len(endpoints))))
	}
	return f
}

// SplitEndpoints splits flag values that may each hold comma-separated URLs,
// dropping empty items.
func SplitEndpoints(values ...string) []string {
	var out []string
	for _, v := range values {
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, e)
			}
		}
	}
	return out
}

func (f *Failover) now() time.Time {
	if f.Now != nil {
		return f.Now()
	}
	return time.Now()
}

// order is the order to try the servers in: the next in turn, then the
// rest in their given order; held-down servers last.
func (f *Failover) order() []int {
	n := len(f.Clients)
	if len(f.downUntil) != n {
		panic("eksauth: Failover not made by NewFailover")
	}
	now := f.now().UnixNano()
	start := int((f.next.Add(1) - 1) % uint32(n))
	up := make([]int, 0, n)
	var down []int
	for k := range n {
		i := (start + k) % n
		if f.downUntil[i].Load() > now {
			down = append(down, i)
		} else {
			up = append(up, i)
		}
	}
	return append(up, down...)
}

// Healthy reports, per client, whether it is not held down.
func (f *Failover) Healthy() []bool {
	now := f.now().UnixNano()
	out := make([]bool, len(f.Clients))
	for i := range f.Clients {
		out[i] = f.downUntil[i].Load() <= now
	}
	return out
}

// AssumeRoleForPodIdentity tries the servers in turn; see Failover.
func (f *Failover) AssumeRoleForPodIdentity(ctx context.Context, cluster, token string) (*Response, error) {
	if len(f.Clients) == 0 {
		return nil, errors.New("eksauth: no servers")
	}
	tryTimeout := f.TryTimeout
	if tryTimeout <= 0 {
		tryTimeout = DefaultTryTimeout
	}
	hold := f.HoldDown
	if hold <= 0 {
		hold = DefaultHoldDown
	}
	var errs []error
	for _, i := range f.order() {
		if ctx.Err() != nil {
			break
		}
		c := f.Clients[i]
		tctx, cancel := context.WithTimeout(ctx, tryTimeout)
		resp, err := c.AssumeRoleForPodIdentity(tctx, cluster, token)
		cancel()
		if err == nil {
			f.up(i)
			return resp, nil
		}
		var apiErr *Error
		if errors.As(err, &apiErr) && !apiErr.Temporary() {
			// The server's final word; it is up, too.
			f.up(i)
			return nil, err
		}
		if ctx.Err() != nil {
			// The caller gave up; not the server's fault.
			errs = append(errs, fmt.Errorf("%s: %w", c.Endpoint, err))
			break
		}
		if apiErr == nil || apiErr.StatusCode != http.StatusTooManyRequests {
			n := min(f.failures[i].Add(1), 5)
			f.downUntil[i].Store(f.now().Add(hold << (n - 1)).UnixNano())
		}
		errs = append(errs, fmt.Errorf("%s: %w", c.Endpoint, err))
	}
	if len(errs) == 0 {
		return nil, ctx.Err()
	}
	if len(errs) == 1 {
		return nil, errs[0]
	}
	// Keep the last server's error reachable for errors.As (temporary, code).
	return nil, &allFailed{errs: errs}
}

func (f *Failover) up(i int) {
	f.downUntil[i].Store(0)
	f.failures[i].Store(0)
}

// allFailed is every server's failure; Unwrap yields the last one first so
// errors.As finds its *Error.
type allFailed struct{ errs []error }

func (e *allFailed) Error() string {
	s := make([]string, len(e.errs))
	for i, err := range e.errs {
		s[i] = err.Error()
	}
	return "eksauth: every server failed: " + strings.Join(s, "; ")
}

func (e *allFailed) Unwrap() []error {
	out := make([]error, len(e.errs))
	for i, err := range e.errs {
		out[len(e.errs)-1-i] = err
	}
	return out
}
