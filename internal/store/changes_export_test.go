package store

import "time"

// ListenerPID returns the backend PID of p's LISTEN connection, 0 while it
// is down, for the tests.
func ListenerPID(p *Postgres) uint32 { return p.listen.pid.Load() }

// SetListenTiming shortens p's listener timing; call it before Subscribe.
func SetListenTiming(p *Postgres, idleCheck, flushEvery time.Duration) {
	p.listen.idleCheck, p.listen.flushEvery = idleCheck, flushEvery
}

// FailBeforeCommit makes s's write transactions fail, after their last
// statement (pg_notify included), with what fn returns when it is not nil.
func FailBeforeCommit(s Store, fn func() error) {
	e, err := engine(s)
	if err != nil {
		panic(err)
	}
	e.beforeCommit = fn
}
