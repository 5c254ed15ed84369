package evolve

import (
	"context"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
)

// throttle decides how big the next batch is and how long to rest after
// one. Its rate can change while the run goes on (`handoff evolve set`).
type throttle struct {
	s Settings

	mu    sync.Mutex
	rate  float64
	fixed int       // a batch size set by an operator; 0 adapts
	next  time.Time // when the rate budget allows the next batch
}

func newThrottle(s Settings) *throttle { return &throttle{s: s, rate: s.Rate} }

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
	if t.s.BatchTime > 0 {
		n = last
		if elapsed > 0 {
			f := float64(t.s.BatchTime) / float64(elapsed)
			n = int(float64(last) * min(max(f, 0.5), 2))
		}
	}
	n = min(max(n, t.s.MinBatch, 1), max(t.s.MaxBatch, t.s.MinBatch, 1))
	if t.rate > 0 {
		// Keep each batch to a fifth of a second's budget, so the rate is
		// met smoothly rather than in bursts.
		n = min(n, max(int(t.rate/5)/t.s.Workers, 1))
	}
	return n
}

// shrink halves a batch after a conflict: a smaller batch holds fewer
// row locks for less time and is likelier to get through.
func (t *throttle) shrink(n int) int { return max(n/2, t.s.MinBatch, 1) }

// rest waits after a batch that took elapsed and changed rows: for the
// duty cycle, and until the rate budget allows more.
func (t *throttle) rest(ctx context.Context, elapsed time.Duration, rows int64) error {
	wait := time.Duration(0)
	if d := t.s.Duty; d > 0 && d < 100 {
		wait = elapsed * time.Duration(100-d) / time.Duration(d)
	}
	t.mu.Lock()
	if t.rate > 0 {
		now := time.Now()
		if t.next.Before(now.Add(-time.Second)) {
			t.next = now // no credit for time spent paused or slow
		}
		t.next = t.next.Add(time.Duration(float64(rows) / t.rate * float64(time.Second)))
		wait = max(wait, t.next.Sub(now))
	}
	t.mu.Unlock()
	return dialect.Sleep(ctx, wait)
}
