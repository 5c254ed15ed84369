package evolve

import (
	"context"
	"sync"
	"time"
)

// throttle decides how big the next batch is, how many workers run at
// once and how long each rests after a batch. Its rate can change while
// the run goes on (`handoff evolve set`).
type throttle struct {
	s     Settings
	pacer *pacer // the adaptive throttle's state; nil for fixed and off

	mu    sync.Mutex
	rate  float64
	fixed int       // a batch size set by an operator; 0 adapts
	next  time.Time // when the rate budget allows the next batch
	// Worker slots: a worker holds one for the length of a batch; after
	// it, the slot is free again once the batch's rest is over. Only the
	// first active() slots are handed out, so a worker the throttle does
	// not want waits, whichever part of the range it has.
	busy   []bool
	freeAt []time.Time
	wake   chan struct{} // closed when a slot may have become free
	// What the canary needs to tell a probe taken with no batch about:
	// the batches in flight, how many have started, when the last one
	// ended; and a hold that keeps new ones from starting while it
	// measures the unloaded latency.
	inflight  int
	starts    uint64
	lastEnd   time.Time
	holdUntil time.Time
}

func newThrottle(s Settings) *throttle {
	n := s.maxWorkers()
	t := &throttle{s: s, rate: s.Rate, busy: make([]bool, n), freeAt: make([]time.Time, n), wake: make(chan struct{})}
	if s.Throttle == ThrottleAdaptive || s.Throttle == "" {
		t.pacer = newPacer(n, s.MaxLag, time.Now())
	}
	return t
}

func (t *throttle) setRate(r float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.rate = r
}

func (t *throttle) setBatch(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.fixed = n
}

// active is how many workers may run batches now.
func (t *throttle) active() int {
	if t.pacer == nil {
		return len(t.busy)
	}
	_, w := t.pacer.state()
	return min(w, len(t.busy))
}

// acquire waits for a worker slot that is not resting and returns it.
func (t *throttle) acquire(ctx context.Context) (int, error) {
	for {
		t.mu.Lock()
		now, wait := time.Now(), time.Duration(-1)
		n := t.active()
		if now.Before(t.holdUntil) {
			n, wait = 0, t.holdUntil.Sub(now) // the canary measures: nothing starts
		}
		for i := range n {
			switch {
			case t.busy[i]:
			case !t.freeAt[i].After(now):
				t.busy[i] = true
				t.inflight++
				t.starts++
				t.mu.Unlock()
				return i, nil
			case wait < 0 || t.freeAt[i].Sub(now) < wait:
				wait = t.freeAt[i].Sub(now)
			}
		}
		wake := t.wake
		t.mu.Unlock()
		if wait < 0 || wait > controlEvery {
			wait = controlEvery // the number of workers may change meanwhile
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return 0, ctx.Err()
		case <-wake:
		case <-timer.C:
		}
		timer.Stop()
	}
}

// release gives slot back after a batch that took elapsed and changed
// rows (elapsed 0: no batch was done), resting it for the duty cycle and
// until the rate budget allows more.
func (t *throttle) release(slot int, elapsed time.Duration, rows int64) {
	wait := time.Duration(0)
	switch {
	case elapsed <= 0:
	case t.pacer != nil:
		wait = t.pacer.rest(elapsed)
	case t.s.Throttle == ThrottleFixed && t.s.Duty > 0 && t.s.Duty < 100:
		wait = elapsed * time.Duration(100-t.s.Duty) / time.Duration(t.s.Duty)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if t.rate > 0 && rows > 0 {
		if t.next.Before(now.Add(-time.Second)) {
			t.next = now // no credit for time spent paused or slow
		}
		t.next = t.next.Add(time.Duration(float64(rows) / t.rate * float64(time.Second)))
		wait = max(wait, t.next.Sub(now))
	}
	t.busy[slot], t.freeAt[slot] = false, now.Add(wait)
	t.inflight--
	t.lastEnd = now
	t.wakeLocked()
}

func (t *throttle) wakeLocked() {
	close(t.wake)
	t.wake = make(chan struct{})
}

// batchState is what the canary reads around a probe.
type batchState struct {
	inflight int
	starts   uint64
	lastEnd  time.Time
}

func (t *throttle) batches() batchState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return batchState{t.inflight, t.starts, t.lastEnd}
}

// quiet reports whether no batch ran from before through after a probe
// that started at start: none in flight at either end, none started
// between, and the last one ended at least settle before the probe (its
// WAL flushed by then: the live commits after it flush it).
func quiet(before, after batchState, start time.Time, settle time.Duration) bool {
	return before.inflight == 0 && after.inflight == 0 && before.starts == after.starts && start.Sub(before.lastEnd) >= settle
}

// hold keeps new batches from starting until the given time (zero: lets
// them start again now); batches in flight go on.
func (t *throttle) hold(until time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.holdUntil = until
	t.wakeLocked()
}

// observe tells the adaptive throttle about a batch of size keys.
func (t *throttle) observe(size int, elapsed time.Duration) {
	if t.pacer != nil {
		t.pacer.observe(time.Now(), t.active(), size, elapsed)
	}
}

// size returns the size for the next batch of a worker whose last size
// was last and whose last batch took elapsed (0 for the first batch).
// It moves toward the target batch time at most by a factor of two per
// batch, so one slow batch (a checkpoint, a vacuum) does not collapse it.
func (t *throttle) size(last int, elapsed time.Duration) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.fixed > 0 {
		return t.fixed
	}
	n := t.s.Batch // without a target time, a size shrunk by conflicts returns to the set one
	if target := t.s.BatchTime; target > 0 {
		if t.pacer != nil {
			target *= time.Duration(t.pacer.batchScale(time.Now()))
		}
		n = last
		if elapsed > 0 {
			f := float64(target) / float64(elapsed)
			n = int(float64(last) * min(max(f, 0.5), 2))
		}
	}
	n = min(max(n, t.s.MinBatch, 1), max(t.s.MaxBatch, t.s.MinBatch, 1))
	if t.rate > 0 {
		// Keep each batch to a fifth of a second's budget, so the rate is
		// met smoothly rather than in bursts.
		n = min(n, max(int(t.rate/5)/len(t.busy), 1))
	}
	return n
}

// shrink halves a batch after a conflict: a smaller batch holds fewer
// row locks for less time and is likelier to get through.
func (t *throttle) shrink(n int) int { return max(n/2, t.s.MinBatch, 1) }
