// Package agent is podid's node agent: the container-credentials endpoint
// that SDKs in pods call (AWS_CONTAINER_CREDENTIALS_FULL_URI), backed by a
// per-node cache of the credentials EKS Auth hands out for each pod token.
//
// A pod's SDK sends its projected service-account token; the agent trades it
// once with the server (AssumeRoleForPodIdentity), then answers every SDK on
// the node that holds the same token from memory, refreshes in the background
// before the credentials age out, and keeps answering from the cache while
// the server is away, but never past the credentials' expiry.
package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/podid/podid/internal/agent/eksauth"
)

// Upstream is the EKS Auth API.
type Upstream interface {
	AssumeRoleForPodIdentity(ctx context.Context, cluster, token string) (*eksauth.Response, error)
}

// Defaults; see Config.
const (
	DefaultMaxEntries      = 20000
	DefaultRefreshTTL      = 3 * time.Hour
	DefaultExpiryMargin    = 15 * time.Minute
	DefaultStaleWait       = 500 * time.Millisecond
	DefaultAttemptTimeout  = 5 * time.Second
	DefaultFetchTimeout    = 15 * time.Second
	DefaultMaxAttempts     = 3
	DefaultRetryBase       = 200 * time.Millisecond
	DefaultMaxConcurrent   = 16
	DefaultMaxPending      = 1024
	DefaultMaxRefreshDelay = 5 * time.Minute
)

// Config configures an Agent. Zero durations and counts take the defaults.
type Config struct {
	Cluster  string
	Upstream Upstream
	Logger   *slog.Logger

	// MaxEntries bounds the cache; the least recently used entry goes first.
	MaxEntries int
	// RefreshTTL is how long an answer is served before it must be
	// refreshed (the upstream agent's refreshTtl, 3 h).
	RefreshTTL time.Duration
	// ExpiryMargin: credentials are never handed out when they have less
	// than this left (botocore refreshes 15 min before expiry and fails
	// outright inside 10 min). Short-lived credentials use a quarter of
	// their lifetime instead.
	ExpiryMargin time.Duration
	// StaleWait is how long a request for a stale entry waits for its
	// refresh before it is answered from the cache anyway. SDK timeouts are
	// short (1 s in JS v3, 2 s in botocore).
	StaleWait time.Duration

	// AttemptTimeout bounds one upstream call, FetchTimeout all attempts.
	AttemptTimeout time.Duration
	FetchTimeout   time.Duration
	// MaxAttempts bounds the calls per fetch; only throttling, 5xx and
	// network errors are retried, with exponential backoff and jitter from
	// RetryBase.
	MaxAttempts int
	RetryBase   time.Duration
	// MaxConcurrent bounds the upstream calls in flight; MaxPending the
	// distinct tokens waiting for one (beyond it, requests fail fast).
	MaxConcurrent int
	MaxPending    int

	Metrics *Metrics // nil: NewMetrics(nil)
	Now     func() time.Time
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt(&c.MaxEntries, DefaultMaxEntries)
	def(&c.RefreshTTL, DefaultRefreshTTL)
	def(&c.ExpiryMargin, DefaultExpiryMargin)
	def(&c.StaleWait, DefaultStaleWait)
	def(&c.AttemptTimeout, DefaultAttemptTimeout)
	def(&c.FetchTimeout, DefaultFetchTimeout)
	defInt(&c.MaxAttempts, DefaultMaxAttempts)
	def(&c.RetryBase, DefaultRetryBase)
	defInt(&c.MaxConcurrent, DefaultMaxConcurrent)
	defInt(&c.MaxPending, DefaultMaxPending)
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Agent answers credential requests from its cache and EKS Auth.
type Agent struct {
	cfg   Config
	log   *slog.Logger
	m     *Metrics
	cache *cache

	flightsMu sync.Mutex
	flights   map[tokenKey]*flight
	sem       chan struct{} // upstream call slots

	ctx    context.Context // parent of every fetch; canceled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	hosts atomic.Pointer[hostSet]

	answered chan struct{} // closed once the server has answered anything
	ansOnce  sync.Once
	ready    chan struct{} // closed once the listeners are up
}

// flight is one upstream fetch that every request for the same token shares.
type flight struct {
	done chan struct{}
	e    *entry
	err  error
}

// New returns an agent. It does not listen; see Run and Handler.
func New(cfg Config) (*Agent, error) {
	if cfg.Cluster == "" {
		return nil, errors.New("agent: cluster name is required")
	}
	if cfg.Upstream == nil {
		return nil, errors.New("agent: upstream is required")
	}
	cfg.setDefaults()
	ctx, cancel := context.WithCancel(context.Background())
	a := &Agent{
		cfg:      cfg,
		log:      cfg.Logger.With("cluster-name", cfg.Cluster),
		m:        cfg.Metrics,
		flights:  make(map[tokenKey]*flight),
		sem:      make(chan struct{}, cfg.MaxConcurrent),
		ctx:      ctx,
		cancel:   cancel,
		answered: make(chan struct{}),
		ready:    make(chan struct{}),
	}
	a.cache = newCache(cfg.MaxEntries, func(*entry) { a.m.evictions.Inc() })
	a.m.setCacheSize(a.cache.len)
	return a, nil
}

// Close stops background refreshes and waits for upstream calls to end.
func (a *Agent) Close() {
	a.cancel()
	a.wg.Wait()
}

// CacheLen is the number of cached answers.
func (a *Agent) CacheLen() int { return a.cache.len() }

// lookup returns the JSON answer for token.
func (a *Agent) lookup(ctx context.Context, token, client string) ([]byte, error) {
	k := keyOf(token)
	now := a.cfg.Now().UnixNano()
	if e := a.cache.get(k); e != nil {
		switch {
		case now < e.refreshAt:
			a.m.hits.Inc()
			return e.body, nil
		case now < e.staleAt:
			a.m.hits.Inc()
			a.refreshInBackground(k, token, e, now, client)
			return e.body, nil
		case now < e.usable:
			return a.refreshStale(ctx, k, token, e, now, client)
		}
		// Never hand out credentials this close to expiry.
		a.cache.remove(k, e)
	}
	a.m.misses.Inc()
	f, err := a.start(k, token, client)
	if err != nil {
		return nil, err
	}
	select {
	case <-f.done:
		if f.err != nil {
			return nil, f.err
		}
		return f.e.body, nil
	case <-ctx.Done():
		// The fetch goes on and fills the cache for the SDK's retry.
		return nil, ctx.Err()
	}
}

// refreshInBackground starts a refresh for an entry in its refresh window,
// unless one is running, the entry is backing off after a failure, or every
// upstream slot is busy (the next request will try again): refreshes are
// rate-limited by the requests that need them.
func (a *Agent) refreshInBackground(k tokenKey, token string, e *entry, now int64, client string) {
	if now < e.nextTry.Load() || len(a.sem) == cap(a.sem) {
		return
	}
	_, _ = a.start(k, token, client)
}

// refreshStale handles an entry past its refresh TTL but not its expiry:
// refresh first, but answer from the cache if the server fails or is slow,
// so that an outage does not reach the pods while the credentials last.
func (a *Agent) refreshStale(ctx context.Context, k tokenKey, token string, e *entry, now int64, client string) ([]byte, error) {
	if now < e.nextTry.Load() {
		a.m.staleHits.Inc()
		return e.body, nil
	}
	f, err := a.start(k, token, client)
	if err != nil {
		a.m.staleHits.Inc()
		return e.body, nil
	}
	t := time.NewTimer(a.cfg.StaleWait)
	defer t.Stop()
	select {
	case <-f.done:
		if f.err == nil {
			a.m.misses.Inc()
			return f.e.body, nil
		}
		if !temporary(f.err) {
			return nil, f.err // the server said no: stop serving this token
		}
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	a.m.staleHits.Inc()
	return e.body, nil
}

var errBusy = errors.New("too many credential requests waiting for the server")

// start joins the fetch for k or starts one.
func (a *Agent) start(k tokenKey, token, client string) (*flight, error) {
	a.flightsMu.Lock()
	if f := a.flights[k]; f != nil {
		a.flightsMu.Unlock()
		return f, nil
	}
	if len(a.flights) >= a.cfg.MaxPending {
		a.flightsMu.Unlock()
		return nil, errBusy
	}
	if a.ctx.Err() != nil {
		a.flightsMu.Unlock()
		return nil, a.ctx.Err()
	}
	f := &flight{done: make(chan struct{})}
	a.flights[k] = f
	a.wg.Add(1)
	a.flightsMu.Unlock()
	go a.fetch(k, token, client, f)
	return f, nil
}

func (a *Agent) fetch(k tokenKey, token, client string, f *flight) {
	defer a.wg.Done()
	log := a.log.With("client-addr", client, "token_sha256", k.short())
	ctx, cancel := context.WithTimeout(a.ctx, a.cfg.FetchTimeout)
	defer cancel()

	log.Info("Calling EKS Auth to fetch credentials")
	start := time.Now()
	resp, err := a.call(ctx, token)
	var e *entry
	if err == nil {
		log.Info("Successfully fetched credentials from EKS Auth",
			"fetched_role_arn", resp.AssumedRoleUser.ARN,
			"fetched_role_id", resp.AssumedRoleUser.AssumeRoleID,
			"request_time_ms", time.Since(start).Milliseconds())
		e, err = a.newEntry(k, resp)
	}
	if err == nil {
		a.cache.put(e)
		a.m.refreshes.WithLabelValues("success").Inc()
		log.Info("Storing creds in cache",
			"refreshTtl", time.Duration(e.staleAt-e.fetched),
			"expiration", time.Unix(0, e.expiry).UTC().Format(time.RFC3339))
	} else {
		a.m.refreshes.WithLabelValues("failure").Inc()
		old := a.cache.peek(k)
		switch {
		case temporary(err):
			log.Warn("Could not fetch credentials from EKS Auth", "err", err)
			if old != nil {
				n := old.failures.Add(1)
				old.nextTry.Store(a.cfg.Now().Add(backoff(time.Second, DefaultMaxRefreshDelay, int(n))).UnixNano())
			}
		default:
			log.Info("EKS Auth refused the token", "err", err)
			if old != nil {
				a.cache.remove(k, old)
			}
		}
	}

	a.flightsMu.Lock()
	delete(a.flights, k)
	a.flightsMu.Unlock()
	f.e, f.err = e, err
	close(f.done)
}

// call makes up to MaxAttempts upstream calls, retrying only what may
// succeed later.
func (a *Agent) call(ctx context.Context, token string) (*eksauth.Response, error) {
	for attempt := 1; ; attempt++ {
		select {
		case a.sem <- struct{}{}:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for an upstream slot: %w", ctx.Err())
		}
		actx, cancel := context.WithTimeout(ctx, a.cfg.AttemptTimeout)
		start := time.Now()
		resp, err := a.cfg.Upstream.AssumeRoleForPodIdentity(actx, a.cfg.Cluster, token)
		cancel()
		<-a.sem
		a.m.upstreamLatency.Observe(time.Since(start).Seconds())
		var apiErr *eksauth.Error
		if err == nil || errors.As(err, &apiErr) {
			a.markAnswered()
		}
		if err == nil {
			return resp, nil
		}
		a.m.upstreamErrors.WithLabelValues(errorCode(err)).Inc()
		if !temporary(err) || attempt >= a.cfg.MaxAttempts || ctx.Err() != nil {
			return nil, err
		}
		t := time.NewTimer(backoff(a.cfg.RetryBase, 5*a.cfg.RetryBase*time.Duration(a.cfg.MaxAttempts), attempt))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, err
		}
	}
}

// backoff is base·2^(n-1), capped, with "equal jitter": half fixed, half
// random, so retries from many nodes spread out but never come at once.
func backoff(base, limit time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d/2 + rand.N(d/2+1)
}

func (a *Agent) markAnswered() { a.ansOnce.Do(func() { close(a.answered) }) }

// answer is the container-credentials document.
type answer struct {
	AccessKeyID     string `json:"AccessKeyId"`
	SecretAccessKey string `json:"SecretAccessKey"`
	Token           string `json:"Token"`
	AccountID       string `json:"AccountId"`
	Expiration      string `json:"Expiration"`
}

var errExpiredUpstream = errors.New("EKS Auth returned credentials that are already expired")

// newEntry computes an entry's deadlines and encodes its answer once.
func (a *Agent) newEntry(k tokenKey, resp *eksauth.Response) (*entry, error) {
	now := a.cfg.Now()
	exp := resp.Credentials.Expiration.Time
	life := exp.Sub(now)
	if life <= 0 {
		return nil, errExpiredUpstream
	}
	margin := min(a.cfg.ExpiryMargin, life/4)
	usable := exp.Add(-margin)
	ttl := min(a.cfg.RefreshTTL, usable.Sub(now))
	// Refresh from 75–85 % of the TTL; the jitter spreads out the refreshes
	// of entries fetched together (say, after a restart).
	refresh := time.Duration(float64(ttl) * (0.75 + 0.1*rand.Float64()))
	body, err := json.Marshal(answer{
		AccessKeyID:     resp.Credentials.AccessKeyID,
		SecretAccessKey: resp.Credentials.SecretAccessKey,
		Token:           resp.Credentials.SessionToken,
		AccountID:       accountOf(resp.AssumedRoleUser.ARN),
		Expiration:      exp.UTC().Format(time.RFC3339), // JS v3 wants the Z
	})
	if err != nil {
		return nil, fmt.Errorf("encode credentials: %w", err)
	}
	n := now.UnixNano()
	return &entry{
		key:       k,
		body:      body,
		fetched:   n,
		refreshAt: n + int64(refresh),
		staleAt:   n + int64(ttl),
		usable:    usable.UnixNano(),
		expiry:    exp.UnixNano(),
	}, nil
}

// accountOf reads the account from arn:partition:sts::ACCOUNT:assumed-role/….
func accountOf(arn string) string {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) < 6 {
		return ""
	}
	return parts[4]
}

// temporary reports whether err may go away by itself: anything but a
// definitive answer from the server.
func temporary(err error) bool {
	var apiErr *eksauth.Error
	if errors.As(err, &apiErr) {
		return apiErr.Temporary()
	}
	return !errors.Is(err, errExpiredUpstream)
}

func errorCode(err error) string {
	var apiErr *eksauth.Error
	switch {
	case errors.As(err, &apiErr):
		return apiErr.Code
	case errors.Is(err, context.DeadlineExceeded):
		return "Timeout"
	}
	return "NetworkError"
}
