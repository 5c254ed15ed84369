package gateway

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"
)

// pauseRetryAfter is what a request refused by a pause is told: pauses are short.
const pauseRetryAfter = 5 * time.Second

// pausedMode holds new requests until a resume, each for at most max.
type pausedMode struct {
	max time.Duration
}

func (pausedMode) String() string { return "paused" }

// admit holds r. If the pause ends in time, r starts over through the
// current snapshot (whose mode may by then be anything) and admit returns
// false because the request has been handled. Past max, or past the bound on
// what may be held, the request gets 503 with Retry-After — never a hang.
func (m pausedMode) admit(g *Gateway, w http.ResponseWriter, r *http.Request, a *appRoute) bool {
	start := time.Now()
	size := requestSize(r)
	if !g.reserveHold(size) {
		g.refuse(w, r, a, http.StatusServiceUnavailable, "paused",
			"This site is pausing for a short upgrade and is holding as many requests as it can. Please try again in a few seconds.",
			pauseRetryAfter, start)
		return false
	}
	released := a.hold.wait(r.Context(), m.max)
	g.heldRequests.Add(-1)
	g.heldBytes.Add(-size)
	switch {
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
	mu      sync.Mutex
	paused  bool
	waiting []*waiter // in arrival order
	count   int       // waiters not yet released or gone
}

type waiter struct {
	ch       chan struct{}
	released bool
	gone     bool // timed out or the client left; release skips it
}

func newHoldQueue() *holdQueue { return &holdQueue{} }

func (q *holdQueue) setPaused(on bool) {
	q.mu.Lock()
	q.paused = on
	q.mu.Unlock()
}

// wait holds the caller until release, max, or ctx; it reports whether the
// request was released. A request that arrives after the resume (it read
// the snapshot just before) is released at once.
func (q *holdQueue) wait(ctx context.Context, max time.Duration) bool {
	q.mu.Lock()
	if !q.paused {
		q.mu.Unlock()
		return true
	}
	w := &waiter{ch: make(chan struct{})}
	q.waiting = append(q.waiting, w)
	q.count++
	q.mu.Unlock()
	timer := time.NewTimer(max)
	defer timer.Stop()
	select {
	case <-w.ch:
		return true
	case <-timer.C:
	case <-ctx.Done():
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if w.released {
		return true // released while timing out: go on
	}
	w.gone = true
	q.count--
	if len(q.waiting) > 2*q.count+64 {
		q.waiting = slices.DeleteFunc(q.waiting, func(w *waiter) bool { return w.gone })
	}
	return false
}

// release lets every held request go on, in arrival order.
func (q *holdQueue) release() {
	q.mu.Lock()
	waiting := q.waiting
	q.waiting, q.paused, q.count = nil, false, 0
	for _, w := range waiting {
		w.released = !w.gone
	}
	q.mu.Unlock()
	for _, w := range waiting {
		if w.released {
			close(w.ch)
		}
	}
}

// held reports how many requests are waiting.
func (q *holdQueue) held() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count
}
