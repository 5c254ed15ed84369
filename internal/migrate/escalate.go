package migrate

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
)

// A DDL statement that needs an exclusive lock waits for every transaction
// that holds the table when it asks, and gives up after the lock timeout
// so that live queries never queue behind it for longer. Against a stream
// of requests whose transactions each last longer than the lock timeout,
// some transaction always holds the table: the statement loses every
// retry and starves. Escalation ends the stream for a moment at its
// source, the gateway: new requests are held (delayed, not refused), the
// ones in flight finish, and the statement's next attempt finds the table
// free. See docs/migrations.md, "DDL that never starves".

const (
	// escalateAfter is how many lock conflicts in a row a statement loses
	// before it escalates. With the default lock timeout (100 ms) and the
	// retry backoff (from about 50 ms, doubling) that is about a second of
	// losing: a lock held by one long query is usually gone by then, and
	// the users are not held for a conflict that ends by itself.
	escalateAfter = 5
	// escalateTimes bounds the escalations of one statement. An escalation
	// that does not win the lock was up against what holding requests
	// cannot end (a long transaction of another client, requests that
	// outlast the wait); each costs the users a delay, so after a few the
	// statement goes on retrying as it would without.
	escalateTimes = 3
	// defaultEscalateHold is Options.EscalateHold's default.
	defaultEscalateHold = 500 * time.Millisecond
)

// escalation decides when a statement that keeps losing its lock asks for
// live traffic to be held.
type escalation struct {
	lost int // conflicts lost since the start or the last escalation
	used int // escalations so far
}

// lose records a failed attempt of class c and reports whether the next
// attempt should run under a hold.
func (e *escalation) lose(c dialect.Class) bool {
	switch c {
	case dialect.LockTimeout, dialect.Deadlock, dialect.Busy:
	default:
		return false // not a lock lost to another session
	}
	e.lost++
	if e.lost < escalateAfter || e.used >= escalateTimes {
		return false
	}
	e.lost = 0
	e.used++
	return true
}

// underHold runs f while the gateway holds new requests and none is in
// flight, then ends the hold, and says how it went in an EventEscalate.
// When the requests in flight did not finish within the hold's bound, f
// runs anyway, as the next ordinary attempt.
func (m *Migrator) underHold(ctx context.Context, mig *Migration, s *Section, line, attempt int, f func() (Statement, error)) (Statement, error) {
	start := time.Now()
	release, herr := m.opts.Escalate(ctx, m.opts.EscalateHold)
	if herr != nil {
		m.emit(Event{Kind: EventEscalate, Migration: mig.Name, Phase: s.Phase, File: mig.Path, Line: line,
			Attempt: attempt, Reason: EscalateBusy, Held: time.Since(start), Err: herr})
		return f()
	}
	st, err := f()
	release()
	held := time.Since(start)
	ev := Event{Kind: EventEscalate, Migration: mig.Name, Phase: s.Phase, File: mig.Path, Line: st.Line,
		Attempt: attempt, Reason: EscalateTook, Held: held}
	if err != nil {
		ev.Reason, ev.Err = EscalateLost, err
	}
	m.emit(ev)
	return st, err
}

// The reasons of an EventEscalate.
const (
	// EscalateTook: new requests were held, those in flight finished, and
	// the statement took its lock and ran.
	EscalateTook = "took the lock"
	// EscalateLost: the requests were held and none was in flight, but
	// the statement still lost its lock (to a session that is not one of
	// the held apps' requests); it goes on retrying.
	EscalateLost = "lost the lock again"
	// EscalateBusy: requests were still in flight when the hold's wait ran
	// out; the hold ended and the statement goes on retrying.
	EscalateBusy = "requests still in flight"
)

// EscalationMessage says in a line what an EventEscalate reports, for the
// deploy's progress and event log.
func EscalationMessage(e Event) string {
	held, file := e.Held.Round(time.Millisecond), filepath.Base(e.File)
	switch e.Reason {
	case EscalateTook:
		return fmt.Sprintf("%s:%d kept losing its lock to live traffic: new requests were held for %s while it took the lock", file, e.Line, held)
	case EscalateLost:
		return fmt.Sprintf("%s:%d kept losing its lock to live traffic: new requests were held for %s, but it lost the lock again (%v); retrying", file, e.Line, held, e.Err)
	}
	return fmt.Sprintf("%s:%d kept losing its lock to live traffic: new requests were held for %s, but requests in flight did not finish in time (%v); retrying", file, e.Line, held, e.Err)
}
