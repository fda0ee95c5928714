package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// changesChannel is the PostgreSQL NOTIFY channel of committed changes; the
// payload is Change.String().
const changesChannel = "podid_changes"

// Listener timing.
const (
	// listenIdleCheck: after this long without a notification the listener
	// pings its connection, so one that died silently is noticed.
	listenIdleCheck = 30 * time.Second
	// listenFlushEvery: while LISTEN is not in place, subscribers receive
	// ChangeAll this often, so their caches stay at most this stale.
	listenFlushEvery = time.Second
	// Reconnect backoff, doubled from min to max, with jitter.
	listenBackoffMin = 100 * time.Millisecond
	listenBackoffMax = 10 * time.Second
	// listenConnectTimeout bounds a connection attempt when the DSN sets
	// no connect_timeout.
	listenConnectTimeout = 10 * time.Second
)

var _ Notifier = (*Postgres)(nil)

// Subscribe implements Notifier: fn hears of this process's own writes when
// they commit and of other processes' through LISTEN, on a connection
// opened at the first Subscribe.
func (s *Postgres) Subscribe(fn func(Change)) func() {
	unsubscribe := s.sqlDB.Subscribe(fn)
	s.listen.start(&s.subs)
	return unsubscribe
}

// SetLogger sets where the listener logs its connection losses; the default
// is slog.Default(). Call it before Subscribe.
func (s *Postgres) SetLogger(l *slog.Logger) { s.listen.log = l }

// Close stops the listener and closes the database.
func (s *Postgres) Close() error {
	s.listen.stop()
	return s.sqlDB.Close()
}

// listener keeps one connection in LISTEN podid_changes and passes what
// arrives to the hub. When the connection drops it reconnects with backoff;
// meanwhile, and once LISTEN is in place again, the hub receives ChangeAll.
type listener struct {
	cfg *pgx.ConnConfig
	log *slog.Logger

	// Timing; zero means the constants above (tests shorten them).
	idleCheck, flushEvery time.Duration

	once    sync.Once
	stopped bool // guarded by mu
	mu      sync.Mutex
	cancel  context.CancelFunc
	done    chan struct{}

	up  atomic.Bool   // LISTEN is in place
	pid atomic.Uint32 // backend PID of the LISTEN connection, 0 while down
}

func (l *listener) start(h *hub) {
	l.once.Do(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.stopped || l.cfg == nil {
			return
		}
		if l.log == nil {
			l.log = slog.Default()
		}
		if l.idleCheck <= 0 {
			l.idleCheck = listenIdleCheck
		}
		if l.flushEvery <= 0 {
			l.flushEvery = listenFlushEvery
		}
		ctx, cancel := context.WithCancel(context.Background())
		l.cancel, l.done = cancel, make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); l.run(ctx, h) }()
		go func() { defer wg.Done(); l.flushWhileDown(ctx, h) }()
		go func() { wg.Wait(); close(l.done) }()
	})
}

func (l *listener) stop() {
	l.mu.Lock()
	l.stopped = true
	cancel, done := l.cancel, l.done
	l.mu.Unlock()
	if cancel != nil {
		cancel()
		<-done
	}
}

// flushWhileDown sends ChangeAll every flushEvery while LISTEN is not in
// place: changes may be missed then, and caches must not outlive that.
func (l *listener) flushWhileDown(ctx context.Context, h *hub) {
	t := time.NewTicker(l.flushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !l.up.Load() {
				h.publish(Change{Kind: ChangeAll, Key: ReasonListenDown})
			}
		}
	}
}

func (l *listener) run(ctx context.Context, h *hub) {
	backoff := listenBackoffMin
	for {
		conn, err := l.connect(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			wait := backoff/2 + rand.N(backoff/2+1)
			l.log.Warn("store: cannot listen for changes; announcing full invalidations meanwhile",
				"error", err, "every", l.flushEvery, "retry_in", wait.Round(time.Millisecond))
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			backoff = min(2*backoff, listenBackoffMax)
			continue
		}
		backoff = listenBackoffMin
		l.pid.Store(conn.PgConn().PID())
		l.up.Store(true)
		// Changes committed before LISTEN took effect were not heard.
		h.publish(Change{Kind: ChangeAll, Key: ReasonListenStarted})
		err = l.receive(ctx, conn, h)
		l.up.Store(false)
		l.pid.Store(0)
		closeCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn.Close(closeCtx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		l.log.Warn("store: change notifications interrupted; reconnecting", "error", err)
		h.publish(Change{Kind: ChangeAll, Key: ReasonListenLost})
	}
}

// connect opens the listening connection and runs LISTEN on it.
func (l *listener) connect(ctx context.Context) (*pgx.Conn, error) {
	cfg := l.cfg.Copy()
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = listenConnectTimeout
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "podid-listen"
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("store: listen: connect: %w", err)
	}
	lctx, cancel := context.WithTimeout(ctx, listenConnectTimeout)
	defer cancel()
	if _, err := conn.Exec(lctx, "LISTEN "+changesChannel); err != nil {
		conn.Close(context.Background())
		return nil, fmt.Errorf("store: listen: %w", err)
	}
	return conn, nil
}

// receive passes notifications to h until the connection fails or ctx ends.
func (l *listener) receive(ctx context.Context, conn *pgx.Conn, h *hub) error {
	for {
		wctx, cancel := context.WithTimeout(ctx, l.idleCheck)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			h.publish(ParseChange(n.Payload))
			continue
		case ctx.Err() != nil:
			return ctx.Err()
		case pgconn.Timeout(err) || errors.Is(err, context.DeadlineExceeded):
			// Quiet for a while: make sure the connection is still there.
			pctx, cancel := context.WithTimeout(ctx, listenConnectTimeout)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("store: listen: ping: %w", err)
			}
			continue
		}
		return fmt.Errorf("store: listen: %w", err)
	}
}
