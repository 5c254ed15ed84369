package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
)

// A quiesce is a pause that handoff takes for itself, for a moment, to do
// something the app's own requests stand in the way of: a DDL statement
// that keeps losing its lock to them (docs/migrations.md), a database
// switchover. It holds new requests exactly as a pause does (the same
// line, the same bounds on what may be held, released in arrival order),
// but it is not one of the app's modes: an operator's read-only,
// maintenance, pause or resume neither sees it nor ends it, it is never
// stored, and a crash cannot leave it behind.

// quiesceMargin is how much longer than its quiesce's bound a request may
// be held, so that the bound's own release, not the request's timer, ends
// the hold: a request held by a quiesce is delayed, never refused.
const quiesceMargin = time.Second

// quiescePoll is how often a quiesce looks at the in-flight counts. The
// wait it ends is what the held requests pay, so it is short; a look takes
// the control-plane lock for a few loads per target.
const quiescePoll = 2 * time.Millisecond

// ErrQuiesced is returned for an app that another quiesce holds already.
var ErrQuiesced = errors.New("already held by another quiesce")

// QuiesceError is a quiesce that gave up: requests were still in flight
// when its wait ran out (or its context ended).
type QuiesceError struct {
	Apps     []string
	InFlight int64
	Waited   time.Duration
	Err      error // the context's error, when it ended the wait
}

func (e *QuiesceError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("quiesce %v: requests in flight after %s: %d (%v)", e.Apps, e.Waited.Round(time.Millisecond), e.InFlight, e.Err)
	}
	return fmt.Sprintf("quiesce %v: requests in flight after %s: %d", e.Apps, e.Waited.Round(time.Millisecond), e.InFlight)
}

func (e *QuiesceError) Unwrap() error { return e.Err }

// quiet is one quiesce's hold on its apps.
type quiet struct {
	pause *Pause // what the apps' snapshots show while it holds
	apps  []*appState
	names []string
	once  sync.Once
}

// Quiesce holds new requests to app — to every app that takes HTTP
// traffic when app is "" — and returns once none of its requests is in
// flight on its instances (or on instances still draining), so that the
// caller finds the app's database sessions idle. The hold ends when
// release is called or max after the call, whichever comes first: never
// later, whatever the caller does. Quiesce waits for the requests in
// flight for at most half of max, leaving the rest to the work it makes
// room for; past that, or when ctx ends, it ends the hold and returns a
// *QuiesceError. Tunnels (WebSockets) are not waited for: they may stay
// open for hours.
func (g *Gateway) Quiesce(ctx context.Context, app string, max time.Duration) (release func(), err error) {
	var apps []string
	if app != "" {
		apps = []string{app}
	}
	return g.QuiesceApps(ctx, apps, max)
}

// QuiesceApps is Quiesce of several apps at once: of those named, or of
// every app that takes HTTP traffic when apps is empty.
func (g *Gateway) QuiesceApps(ctx context.Context, apps []string, max time.Duration) (release func(), err error) {
	if max <= 0 {
		return nil, fmt.Errorf("quiesce %v: the hold needs a bound, got %s", apps, max)
	}
	start := time.Now()
	q, err := g.quiesce(apps, max)
	if err != nil {
		return nil, err
	}
	bound := time.AfterFunc(max, func() { g.unquiesce(q) })
	release = func() {
		bound.Stop()
		g.unquiesce(q)
	}
	deadline := start.Add(max / 2)
	tick := time.NewTicker(quiescePoll)
	defer tick.Stop()
	for {
		n := g.inflightOf(q)
		if n == 0 {
			return release, nil
		}
		var cerr error
		select {
		case <-ctx.Done():
			cerr = ctx.Err()
		case <-tick.C:
			if time.Now().Before(deadline) {
				continue
			}
		}
		release()
		return nil, &QuiesceError{Apps: q.names, InFlight: n, Waited: time.Since(start), Err: cerr}
	}
}

// quiesce starts holding the apps' new requests.
func (g *Gateway) quiesce(names []string, max time.Duration) (*quiet, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	q := &quiet{pause: &Pause{Since: time.Now().UTC(), Max: config.Duration(max + quiesceMargin)}}
	if len(names) == 0 {
		names = g.order
	}
	for _, name := range names {
		st, err := g.app(name)
		if err != nil {
			return nil, fmt.Errorf("quiesce: %w", err)
		}
		if st.worker {
			continue
		}
		if st.quiet != nil {
			return nil, fmt.Errorf("quiesce %s: %w", name, ErrQuiesced)
		}
		q.apps, q.names = append(q.apps, st), append(q.names, name)
	}
	for _, st := range q.apps {
		st.quiet = q.pause
		st.hold.setPaused(true)
	}
	g.publish()
	return q, nil
}

// unquiesce ends q's hold: the requests it held go on, in arrival order,
// unless the app is paused by other means.
func (g *Gateway) unquiesce(q *quiet) {
	q.once.Do(func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, st := range q.apps {
			if st.quiet == q.pause {
				st.quiet = nil
			}
			st.hold.setPaused(st.effective(g.global).Pause != nil)
		}
		g.publish() // before releasing, so released requests see the new mode
		for i, st := range q.apps {
			if st.effective(g.global).Pause != nil {
				continue
			}
			var ahead func() <-chan struct{}
			if g.lineAhead != nil {
				name := q.names[i]
				ahead = func() <-chan struct{} { return g.lineAhead(name) }
			}
			st.hold.release(ahead)
		}
	})
}

// effective is the modes in force for the app: its own over the global
// ones, paused while a quiesce holds it.
func (st *appState) effective(global Modes) Modes {
	m := st.modes.over(global)
	if m.Pause == nil && st.quiet != nil {
		m.Pause = st.quiet
	}
	return m
}

// inflightOf counts the requests in flight on the instances of q's apps
// and on instances still draining (whose requests may still hold what the
// caller waits for); tunnels do not count.
func (g *Gateway) inflightOf(q *quiet) int64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := map[*Target]bool{}
	var n int64
	count := func(t *Target) {
		if t == nil || seen[t] {
			return
		}
		seen[t] = true
		t.mu.Lock()
		tunnels := int64(len(t.tunnels))
		t.mu.Unlock()
		n += max(t.inflight.Load()-tunnels, 0)
	}
	for _, st := range q.apps {
		for _, addr := range st.route.Addrs() {
			count(g.targets[addr])
		}
	}
	for _, t := range g.targets {
		if t.draining.Load() {
			count(t)
		}
	}
	return n
}
