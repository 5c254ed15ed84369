package gateway

import (
	"context"
	"net/http"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// pauseRetryAfter is what a request refused by a pause is told: pauses are short.
const pauseRetryAfter = 5 * time.Second

// releaseStep bounds how long a released request waits for the one before
// it in the line to be dispatched. Dispatching to a live instance takes well
// under a millisecond (a pooled connection, or a dial on the same host or
// LAN); a request that takes longer — a dial to an instance whose accept
// backlog is full, a client whose body has not come yet — is passed after
// this long, so that it delays those behind it once, by this much, and the
// line goes on in order behind it.
const releaseStep = 100 * time.Millisecond

// pausedMode holds new requests until a resume, each for at most max.
type pausedMode struct {
	max time.Duration
}

func (pausedMode) String() string { return "paused" }

// admit holds r. If the pause ends in time, r starts over through the
// current snapshot (whose mode may by then be anything) and admit returns
// false because the request has been handled. Past max, or past the bound on
// what may be held, the request gets 503 with Retry-After — never a hang.
//
// Released requests go on in arrival order: each starts over only once the
// one before it in the line has been dispatched — its request written to an
// instance, answered by the gateway itself, or held again — or after
// releaseStep (see holdQueue.release).
func (m pausedMode) admit(g *Gateway, w http.ResponseWriter, r *http.Request, a *appRoute) bool {
	start := time.Now()
	size := requestSize(r)
	if !g.reserveHold(size) {
		g.refuse(w, r, a, http.StatusServiceUnavailable, "paused",
			"This site is pausing for a short upgrade and is holding as many requests as it can. Please try again in a few seconds.",
			pauseRetryAfter, start)
		dispatched(r)
		return false
	}
	wt, released := a.hold.wait(r.Context(), m.max)
	g.heldRequests.Add(-1)
	g.heldBytes.Add(-size)
	switch {
	case released && wt != nil:
		serveLined(g, w, r.WithContext(context.WithValue(r.Context(), lineKey{}, wt)))
		wt.dispatch() // if nothing did so on the way: the gateway answered, or the request failed
	case released:
		g.ServeHTTP(w, r)
	case r.Context().Err() == nil:
		g.refuse(w, r, a, http.StatusServiceUnavailable, "paused",
			"This site is pausing for a short upgrade. Please try again in a few seconds.", pauseRetryAfter, start)
	}
	return false
}

// requestSize estimates what holding r costs: its headers and declared body.
func requestSize(r *http.Request) int64 {
	n := int64(len(r.RequestURI) + 64)
	for k, vv := range r.Header {
		for _, v := range vv {
			n += int64(len(k) + len(v) + 4)
		}
	}
	if r.ContentLength > 0 {
		n += r.ContentLength
	}
	return n
}

// reserveHold counts a request as held if the bounds allow it.
func (g *Gateway) reserveHold(size int64) bool {
	if g.heldRequests.Add(1) > int64(g.opts.HoldRequests) || g.heldBytes.Add(size) > g.opts.HoldBytes {
		g.heldRequests.Add(-1)
		g.heldBytes.Add(-size)
		return false
	}
	return true
}

// holdQueue is an app's line of held requests. It outlives snapshots, so
// that a resume reaches requests held under an older one.
type holdQueue struct {
	mu     sync.Mutex
	paused bool
	// on is paused, readable without the lock by the hot path (heldBehind).
	on      atomic.Bool
	waiting []*waiter // in arrival order
	count   int       // waiters not yet released or gone
	tail    *waiter   // the last waiter of the line released last
}

type waiter struct {
	ch       chan struct{}
	released bool
	gone     bool // timed out or the client left; release skips it

	// The line after a release: prev is the released waiter before this
	// one (nil for the first, which waits for ahead instead, if set); turn
	// is closed when this one goes on, sent when its request has been
	// dispatched.
	prev     *waiter
	ahead    <-chan struct{}
	turn     chan struct{}
	sent     chan struct{}
	sentOnce sync.Once
}

// lined counts the requests in flight that carry a waiter under lineKey.
// While there are none, dispatched need not look: a context lookup walks
// the request's chain of contexts, cold memory on a busy gateway, twice
// per request.
var lined atomic.Int64

// serveLined serves a request released from a hold, which carries its
// waiter.
func serveLined(g *Gateway, w http.ResponseWriter, r *http.Request) {
	lined.Add(1)
	defer lined.Add(-1)
	g.ServeHTTP(w, r)
}

// lineKey is the context key under which a released request carries its
// waiter, so that the data path can say when it has been dispatched.
type lineKey struct{}

// dispatched tells the request behind r in a released line that r has been
// dispatched: its head written to an instance, or answered by the gateway.
// It costs a request that was never held one context lookup.
func dispatched(r *http.Request) {
	if lined.Load() == 0 {
		return // no request carries a waiter
	}
	if wt, ok := r.Context().Value(lineKey{}).(*waiter); ok {
		wt.dispatch()
	}
}

func (wt *waiter) dispatch() { wt.sentOnce.Do(func() { close(wt.sent) }) }

// awaitTurn returns once the waiter before this one in the line has been
// dispatched, or has been going for releaseStep without, or ctx is done.
// The bound counts from when the one before went on, so that a line of n
// requests behind stalled ones waits at most n steps in all.
func (wt *waiter) awaitTurn(ctx context.Context) {
	defer close(wt.turn)
	p := wt.prev
	if p == nil {
		wt.awaitAhead(ctx)
		return
	}
	select {
	case <-p.turn:
	case <-ctx.Done():
		return
	}
	select {
	case <-p.sent:
		return
	default:
	}
	t := time.NewTimer(releaseStep)
	defer t.Stop()
	select {
	case <-p.sent:
	case <-t.C:
	case <-ctx.Done():
	}
}

// lineAheadMax bounds how long the head of a line waits for a line ahead
// of it (see Gateway.SetLineAhead).
const lineAheadMax = time.Second

// awaitAhead holds the head of a line until the line ahead of it has gone
// on, lineAheadMax has passed, or ctx is done.
func (wt *waiter) awaitAhead(ctx context.Context) {
	if wt.ahead == nil {
		return
	}
	t := time.NewTimer(lineAheadMax)
	defer t.Stop()
	select {
	case <-wt.ahead:
	case <-t.C:
	case <-ctx.Done():
	}
}

func newHoldQueue() *holdQueue { return &holdQueue{} }

func (q *holdQueue) setPaused(on bool) {
	q.mu.Lock()
	q.paused = on
	q.on.Store(on)
	q.mu.Unlock()
}

// heldBehind sends r back to be held when a pause or a quiesce of its app
// began after r read its snapshot but before r was counted on t: a quiesce
// publishes its hold, then waits for the targets' counts to reach zero, so
// r must not reach the instance behind its back (the DDL statement the
// quiesce is for would queue behind r). The queue's flag is stored before
// the new snapshot and the counts are atomics: either the quiesce sees r
// counted, or r sees the flag here. Only a request none of whose body has
// been read may go back (it starts over, as a released one does).
func (g *Gateway) heldBehind(w http.ResponseWriter, r *http.Request, a *appRoute, t *Target) bool {
	if a.hold == nil || !a.hold.on.Load() {
		return false
	}
	t.inflight.Add(-1)
	// The flag is set before the snapshot is published: wait the moment
	// between the two for the paused snapshot, whose admit holds r.
	for range maxHeldBehindSpins {
		if cur := g.snap.Load().apps[a.name]; cur != nil {
			if _, paused := cur.mode.(pausedMode); paused {
				cur.mode.admit(g, w, r, cur)
				return true
			}
		}
		if !a.hold.on.Load() {
			break // the hold ended before r saw it published: go on
		}
		runtime.Gosched()
	}
	t.inflight.Add(1)
	return false
}

// maxHeldBehindSpins bounds heldBehind's wait for a hold's snapshot.
const maxHeldBehindSpins = 1000

// wait holds the caller until release, max, or ctx; it reports whether the
// request was released, and when it was released from the line, its
// waiter, whose turn it now is. A request that arrives after the resume (it
// read the snapshot just before) is released at once, with no waiter.
func (q *holdQueue) wait(ctx context.Context, max time.Duration) (*waiter, bool) {
	q.mu.Lock()
	if !q.paused {
		q.mu.Unlock()
		return nil, true
	}
	w := &waiter{ch: make(chan struct{}), turn: make(chan struct{}), sent: make(chan struct{})}
	q.waiting = append(q.waiting, w)
	q.count++
	q.mu.Unlock()
	// A request released from an earlier line and held again has taken its
	// place in this one: the line it left may go on.
	if prev, ok := ctx.Value(lineKey{}).(*waiter); ok {
		prev.dispatch()
	}
	timer := time.NewTimer(max)
	defer timer.Stop()
	select {
	case <-w.ch:
		w.awaitTurn(ctx)
		return w, true
	case <-timer.C:
	case <-ctx.Done():
	}
	q.mu.Lock()
	if w.released {
		q.mu.Unlock()
		w.awaitTurn(ctx) // released while timing out: go on
		return w, true
	}
	defer q.mu.Unlock()
	w.gone = true
	q.count--
	if len(q.waiting) > 2*q.count+64 {
		q.waiting = slices.DeleteFunc(q.waiting, func(w *waiter) bool { return w.gone })
	}
	return nil, false
}

// release lets every held request go on, in arrival order: all are woken
// at once, and each goes on when the one before it has been dispatched
// (see awaitTurn). Woken together, their goroutines would otherwise race,
// and their dials with them: a request could overtake many that arrived
// before it, by as long as a dial's retransmission.
//
// ahead, when not nil, is called when there is a line to release; the head
// of the line then waits until the channel it returns is closed, or for
// lineAheadMax.
func (q *holdQueue) release(ahead func() <-chan struct{}) {
	q.mu.Lock()
	waiting := q.waiting
	q.waiting, q.paused, q.count = nil, false, 0
	var prev *waiter
	for _, w := range waiting {
		w.released = !w.gone
		if w.released {
			if prev == nil && ahead != nil {
				w.ahead = ahead()
			}
			w.prev, prev = prev, w
		}
	}
	if prev != nil {
		q.tail = prev
	}
	q.mu.Unlock()
	for _, w := range waiting {
		if w.released {
			close(w.ch)
		}
	}
}

// busy reports whether requests are held, or a released line is still
// being dispatched.
func (q *holdQueue) busy() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.count > 0 {
		return true
	}
	if q.tail == nil {
		return false
	}
	select {
	case <-q.tail.sent:
		q.tail = nil
		return false
	default:
		return true
	}
}

// held reports how many requests are waiting.
func (q *holdQueue) held() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count
}
