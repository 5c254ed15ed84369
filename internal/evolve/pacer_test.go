package evolve

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
)

// fakeClock drives the pacer's decisions: each tick is one decision window.
type fakeClock struct{ t time.Time }

func (c *fakeClock) tick() time.Time { c.t = c.t.Add(decideEvery); return c.t }

func newTestPacer(workers int) (*pacer, *fakeClock) {
	c := &fakeClock{t: time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)}
	return newPacer(workers, 10*time.Second, c.t), c
}

func wantState(t *testing.T, p *pacer, duty float64, workers int, when string) {
	t.Helper()
	d, w := p.state()
	if w != workers || d < duty-1e-9 || d > duty+1e-9 {
		t.Fatalf("%s: duty %.3f with %d workers, want %.3f with %d", when, d, w, duty, workers)
	}
}

// calmBatches observes n windows of batches on an idle database.
func calmBatches(p *pacer, c *fakeClock, n int) {
	for range n {
		now := c.tick()
		p.sessions(now, dialect.Sessions{})
		p.observe(now, 1, 1000, 40*time.Millisecond)
	}
}

// TestPacerFullSpeedWhileNothingSuffers: it starts at full duty with one
// worker and adds the second after two calm windows, and stays there.
func TestPacerFullSpeedWhileNothingSuffers(t *testing.T) {
	p, c := newTestPacer(2)
	wantState(t, p, 1, 1, "at start")
	calmBatches(p, c, 1)
	wantState(t, p, 1, 1, "after one calm window")
	calmBatches(p, c, 1)
	wantState(t, p, 1, 2, "after two calm windows")
	calmBatches(p, c, 20)
	wantState(t, p, 1, 2, "after twenty more")
	if r := p.rest(40 * time.Millisecond); r != 0 {
		t.Fatalf("rest at full duty: %v", r)
	}
	if _, why := p.why(); strings.Contains(why, "backing off") {
		t.Fatalf("calm pacer says %q", why)
	}
}

// TestPacerLockWaits: a live session waiting 80 ms for a batch's lock
// takes a worker away, then halves the duty each window down to the
// floor; a wait shorter than the limit, or a reading gone stale, does not
// count. Once the waits stop, the duty climbs back additively.
func TestPacerLockWaits(t *testing.T) {
	p, c := newTestPacer(2)
	calmBatches(p, c, 2)
	wantState(t, p, 1, 2, "before")
	blocked := dialect.Sessions{Active: 4, Blocked: 1, LongestWait: 80 * time.Millisecond}
	p.sessions(c.tick(), blocked)
	wantState(t, p, 1, 1, "first window with a lock wait")
	if key, why := p.why(); !strings.Contains(why, "backing off: lock waits: 1 sessions wait for a batch, the longest 80ms") || key != "1 lock waits" {
		t.Fatalf("why %q (key %q)", why, key)
	}
	for _, want := range []float64{0.5, minDuty, minDuty} {
		p.sessions(c.tick(), blocked)
		wantState(t, p, want, 1, "lock waits go on")
	}
	if r := p.rest(30 * time.Millisecond); r != 90*time.Millisecond {
		t.Fatalf("rest after a 30 ms batch at duty %.2f: %v, want 90ms", minDuty, r)
	}

	// A wait under the limit is what any row lock costs: not suffering.
	p.sessions(c.tick(), dialect.Sessions{Active: 4, Blocked: 2, LongestWait: 20 * time.Millisecond})
	wantState(t, p, minDuty+dutyStep, 1, "short waits")
	// A reading older than signalFresh is not acted on.
	p.sessions(c.t, blocked)
	c.t = c.t.Add(signalFresh)
	p.observe(c.tick(), 1, 100, 10*time.Millisecond)
	wantState(t, p, minDuty+2*dutyStep, 1, "stale lock-wait reading")
	for range 20 {
		p.sessions(c.tick(), dialect.Sessions{Active: 4})
	}
	wantState(t, p, 1, 2, "after the waits stopped")
}

// TestPacerLiveP99: under handoff serve, a live p99 above 1.35× its
// baseline backs off; the next reading is acted on only once the
// gateway's window (liveSettle) has passed since; between 1.15× and 1.35×
// the pace holds, below it rises.
func TestPacerLiveP99(t *testing.T) {
	p, c := newTestPacer(2)
	calmBatches(p, c, 2)
	wantState(t, p, 1, 2, "calm")
	c.t = c.t.Add(liveSettle) // the second worker shows in the live p99
	p.live(c.t, 12*time.Millisecond, 10*time.Millisecond)
	calmBatches(p, c, 1)
	wantState(t, p, 1, 2, "p99 at 1.2×")
	if _, why := p.why(); !strings.Contains(why, "holding: live p99: 12ms, 1.20×") {
		t.Fatalf("why %q", why)
	}
	p.live(c.t, 14*time.Millisecond, 10*time.Millisecond)
	calmBatches(p, c, 1)
	wantState(t, p, 1, 1, "p99 at 1.4×")
	if _, why := p.why(); !strings.Contains(why, "live p99: 14ms, 1.40× its 10ms before the backfill") {
		t.Fatalf("why %q", why)
	}
	changed := c.t
	// Readings within the window after the change still show the pace
	// before it: not acted on, either way.
	for c.t.Sub(changed) < liveSettle {
		p.live(c.t, 14*time.Millisecond, 10*time.Millisecond)
		calmBatches(p, c, 1)
		wantState(t, p, 1, 1, "p99 at 1.4× within liveSettle of the change")
	}
	if _, why := p.why(); !strings.Contains(why, "holding: waiting for the live p99") {
		t.Fatalf("why %q", why)
	}
	p.live(c.t, 14*time.Millisecond, 10*time.Millisecond)
	calmBatches(p, c, 1)
	wantState(t, p, 0.5, 1, "p99 still at 1.4× a window after the change")
	c.t = c.t.Add(liveSettle)
	p.live(c.t, 11*time.Millisecond, 10*time.Millisecond)
	calmBatches(p, c, 1)
	wantState(t, p, 0.6, 1, "p99 at 1.1×, settled")
}

// TestPacerSlowBatches: batches are compared with the time the same shape
// of batch took while no other session ran: three times as slow or more
// backs off; 2.5× does not. A shape never seen unloaded says nothing.
func TestPacerSlowBatches(t *testing.T) {
	p, c := newTestPacer(1)
	calmBatches(p, c, unloadedMin-1) // not yet enough to know the unloaded time
	busy := dialect.Sessions{Active: 6}
	now := c.tick()
	p.sessions(now.Add(-time.Millisecond), busy)
	p.observe(now, 1, 1000, 200*time.Millisecond)
	wantState(t, p, 1, 1, "5× slower, the unloaded time unknown")
	calmBatches(p, c, 1) // learns 40 µs per key for 1000-key batches with one worker
	step := func(size int, took time.Duration) {
		now := c.tick()
		p.sessions(now.Add(-time.Millisecond), busy)
		p.observe(now, 1, size, took)
	}
	step(1000, 100*time.Millisecond)
	wantState(t, p, 1, 1, "2.5× slower")
	step(40, 100*time.Millisecond) // another shape: nothing learned for it
	wantState(t, p, 1, 1, "unknown shape")
	step(1000, 140*time.Millisecond)
	wantState(t, p, 0.5, 1, "3.5× slower")
	if _, why := p.why(); !strings.Contains(why, "slow batches: 3.5× their unloaded time") {
		t.Fatalf("why %q", why)
	}
}

// TestPacerReplicationLag: a replica lagging more than half of max_lag
// backs off before the lag wait would stop the run.
func TestPacerReplicationLag(t *testing.T) {
	p, c := newTestPacer(1)
	calmBatches(p, c, 1)
	p.lag(c.t, 4*time.Second)
	calmBatches(p, c, 1)
	wantState(t, p, 1, 1, "lag 4 s of 10 s")
	p.lag(c.t, 6*time.Second)
	calmBatches(p, c, 1)
	wantState(t, p, 0.5, 1, "lag 6 s of 10 s")
}

// TestThrottleSlots: the adaptive throttle runs only as many batches at
// once as its pacer wants, whichever worker asks; a released slot rests
// for the duty cycle before it is handed out again.
func TestThrottleSlots(t *testing.T) {
	s := DefaultSettings()
	s.Workers = 2
	th := newThrottle(s)
	ctx := context.Background()
	a, err := th.acquire(ctx)
	if err != nil || a != 0 {
		t.Fatalf("first slot %d %v", a, err)
	}
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := th.acquire(short); err == nil {
		t.Fatal("a second batch ran while the pacer wants one worker")
	}
	th.pacer.mu.Lock()
	th.pacer.workers, th.pacer.duty = 2, 0.5
	th.pacer.mu.Unlock()
	b, err := th.acquire(ctx)
	if err != nil || b != 1 {
		t.Fatalf("second slot with two workers: %d %v", b, err)
	}
	th.release(a, 200*time.Millisecond, 10)
	start := time.Now()
	if got, err := th.acquire(ctx); err != nil || got != 0 {
		t.Fatalf("slot after rest: %d %v", got, err)
	}
	if rested := time.Since(start); rested < 150*time.Millisecond {
		t.Fatalf("slot handed out again after %v, want its 200 ms rest at duty 50%%", rested)
	}

	fixed := newThrottle(DefaultSettings().Fixed(25))
	if fixed.pacer != nil || fixed.active() != 1 {
		t.Fatalf("fixed throttle: pacer %v, %d workers", fixed.pacer, fixed.active())
	}
}

// TestPacerIdleBatches: with no other session running a statement, the
// target batch time is five times longer; the first live statement seen
// brings it back, and a stale look says nothing.
func TestPacerIdleBatches(t *testing.T) {
	p, c := newTestPacer(2)
	if got := p.batchScale(c.t); got != 1 {
		t.Fatalf("scale before any look at the sessions: %d", got)
	}
	p.sessions(c.tick(), dialect.Sessions{})
	if got := p.batchScale(c.t); got != idleBatchScale {
		t.Fatalf("scale on an idle database: %d", got)
	}
	p.sessions(c.tick(), dialect.Sessions{Active: 1})
	if got := p.batchScale(c.t); got != 1 {
		t.Fatalf("scale with a live statement: %d", got)
	}
	p.sessions(c.tick(), dialect.Sessions{})
	if got := p.batchScale(c.t.Add(signalFresh)); got != 1 {
		t.Fatalf("scale from a stale look: %d", got)
	}
}
