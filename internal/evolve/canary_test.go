package evolve

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
)

// probes records n probes of took at the clock's time (no decision is
// due between them) and then one window later, when the pacer decides.
func probes(p *pacer, c *fakeClock, n int, took time.Duration) {
	for range n - 1 {
		p.probe(c.t, took, false)
	}
	p.probe(c.tick(), took, false)
}

// TestPacerCanary: with live sessions at work, a canary 1.5× its
// unloaded latency backs off; the next decision waits for a full window
// of probes taken at the new pace; 1.3× holds the pace (the band), 1.05×
// lets it rise. With no other session running a statement the canary
// times only the backfill's own WAL and is not acted on.
func TestPacerCanary(t *testing.T) {
	p, c := newTestPacer(1)
	busy := dialect.Sessions{Active: 4}
	p.sessions(c.t, busy)
	base := make([]time.Duration, canaryBaseN)
	for i := range base {
		base[i] = 2 * time.Millisecond
	}
	p.baseline(c.t, base)
	p.sessions(c.t, busy)
	probes(p, c, canaryMinWindow, 3*time.Millisecond)
	wantState(t, p, 0.5, 1, "canary at 1.5×")
	if _, why := p.why(); !strings.Contains(why, "backing off: canary: 3ms, 1.50× its 2ms unloaded") {
		t.Fatalf("why %q", why)
	}
	// The window started afresh: too few probes at the new pace.
	p.sessions(c.t, busy)
	probes(p, c, canaryMinWindow-1, 3*time.Millisecond)
	wantState(t, p, 0.5, 1, "a window short of probes")
	if _, why := p.why(); !strings.Contains(why, "holding: waiting for the canary") {
		t.Fatalf("why %q", why)
	}
	p.sessions(c.t, busy)
	probes(p, c, 1, 3*time.Millisecond) // now a full window, still 1.5×
	wantState(t, p, 0.25, 1, "canary still at 1.5×")
	p.sessions(c.t, busy)
	probes(p, c, canaryMinWindow, 2600*time.Microsecond)
	wantState(t, p, 0.25, 1, "canary at 1.3× (in the band)")
	p.sessions(c.t, busy)
	probes(p, c, canaryMaxWindow, 2100*time.Microsecond) // the window's older probes make way
	wantState(t, p, 0.35, 1, "canary at 1.05×")

	// Nobody else at work: the same slow canary is not acted on.
	p.sessions(c.t, dialect.Sessions{})
	probes(p, c, canaryMinWindow, 6*time.Millisecond)
	wantState(t, p, 0.45, 1, "slow canary on an idle database")

	// Under handoff serve the gateway measures the live requests
	// themselves: a calm live p99 outweighs a slow canary.
	c.t = c.t.Add(liveSettle)
	p.sessions(c.t, busy)
	p.live(c.t, 10*time.Millisecond, 10*time.Millisecond)
	probes(p, c, canaryMinWindow, 6*time.Millisecond)
	wantState(t, p, 0.55, 1, "slow canary, calm live p99")
}

// TestThrottleHold: while the canary holds batches back none starts, and
// letting them go wakes a waiting worker at once; the throttle counts the
// batches in flight, started, and when the last one ended, which tell the
// canary's unloaded probes.
func TestThrottleHold(t *testing.T) {
	th := newThrottle(DefaultSettings())
	ctx := context.Background()
	th.hold(time.Now().Add(time.Hour))
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if _, err := th.acquire(short); err == nil {
		t.Fatal("a batch started during a hold")
	}
	got := make(chan int)
	go func() {
		s, err := th.acquire(ctx)
		if err != nil {
			t.Error(err)
		}
		got <- s
	}()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	th.hold(time.Time{})
	slot := <-got
	if waited := time.Since(start); waited > 200*time.Millisecond {
		t.Fatalf("the worker started %v after the hold ended", waited)
	}
	during := th.batches()
	if during.inflight != 1 || during.starts != 1 {
		t.Fatalf("in flight %d, started %d; want 1, 1", during.inflight, during.starts)
	}
	th.release(slot, 10*time.Millisecond, 5)
	after := th.batches()
	if after.inflight != 0 || after.lastEnd.IsZero() {
		t.Fatalf("after release: in flight %d, last end %v", after.inflight, after.lastEnd)
	}
	// A probe is unloaded only with no batch in flight at either end,
	// none started between, and the last one over canarySettle before.
	at := after.lastEnd.Add(canarySettle)
	if !quiet(after, after, at, canarySettle) {
		t.Error("a probe canarySettle after the last batch, none since: not quiet")
	}
	if quiet(after, after, at.Add(-time.Millisecond), canarySettle) {
		t.Error("a probe right after a batch: quiet")
	}
	if quiet(during, after, at, canarySettle) || quiet(after, during, at, canarySettle) {
		t.Error("a probe with a batch in flight: quiet")
	}
	next := after
	next.starts++
	if quiet(after, next, at, canarySettle) {
		t.Error("a probe while a batch started and ended: quiet")
	}
}

// TestCanaryRestBaseline: the unloaded probes of the window itself are
// the baseline once there are canaryMinRest of them, so that the host's
// load rising for everyone does not read as the backfill's doing; fewer,
// and the longer-kept baseline stands.
func TestCanaryRestBaseline(t *testing.T) {
	p, c := newTestPacer(1)
	busy := dialect.Sessions{Active: 4}
	p.baseline(c.t, []time.Duration{2 * time.Millisecond, 2 * time.Millisecond, 2 * time.Millisecond})
	p.mu.Lock()
	p.duty = 0.5
	p.mu.Unlock()
	// The host got slower: rests at 6 ms, batches' probes at 7 ms.
	p.sessions(c.t, busy)
	for range canaryMinRest {
		p.probe(c.t, 6*time.Millisecond, true)
	}
	for range canaryMinWindow - canaryMinRest - 1 {
		p.probe(c.t, 7*time.Millisecond, false)
	}
	p.probe(c.tick(), 7*time.Millisecond, false)
	wantState(t, p, 0.6, 1, "probes 1.17× the rests of the same window")
	// Too few rests in the window: against the kept baseline (its last
	// 32 unloaded probes, most of them now the 6 ms ones) 7 ms is 1.17×
	// as well; against 2 ms it would have backed off.
	p.sessions(c.t, busy)
	for range canaryMinRest - 1 {
		p.probe(c.t, 6*time.Millisecond, true)
	}
	for range canaryMinWindow - canaryMinRest {
		p.probe(c.t, 7*time.Millisecond, false)
	}
	p.probe(c.tick(), 7*time.Millisecond, false)
	wantState(t, p, 0.7, 1, "few rests, the kept baseline moved with them")
	p.sessions(c.t, busy)
	for range canaryMinWindow - 1 {
		p.probe(c.t, 12*time.Millisecond, false)
	}
	p.probe(c.tick(), 12*time.Millisecond, false)
	wantState(t, p, 0.35, 1, "no rests, 2× the kept baseline")
}

// TestCanaryRebase: the unloaded latency is measured before the first
// batch whatever the database, then again every canaryRebase only while
// the canary is in use: live work seen, and no gateway p99.
func TestCanaryRebase(t *testing.T) {
	p, c := newTestPacer(1)
	if !p.needBase(c.t) {
		t.Fatal("no first measurement due")
	}
	p.baseline(c.t, []time.Duration{time.Millisecond, time.Millisecond, time.Millisecond})
	later := c.t.Add(canaryRebase)
	p.sessions(later.Add(-time.Millisecond), dialect.Sessions{Active: 3})
	if p.needBase(later.Add(-2 * time.Millisecond)) {
		t.Fatal("a measurement due before canaryRebase")
	}
	if !p.needBase(later) {
		t.Fatal("no measurement due after canaryRebase with live work")
	}
	p.sessions(later, dialect.Sessions{})
	if p.needBase(later) {
		t.Fatal("a measurement due on an idle database")
	}
	p.sessions(later, dialect.Sessions{Active: 3})
	p.live(later, 10*time.Millisecond, 10*time.Millisecond)
	if p.needBase(later) {
		t.Fatal("a measurement due under a gateway's p99")
	}
}

// TestPacerCanaryStopped: a canary that stops (a failed probe) is not
// waited for: the pace goes on by the other signals instead of holding
// "waiting for the canary" to the end of the run.
func TestPacerCanaryStopped(t *testing.T) {
	p, c := newTestPacer(1)
	busy := dialect.Sessions{Active: 4}
	p.sessions(c.t, busy)
	base := make([]time.Duration, canaryBaseN)
	for i := range base {
		base[i] = 2 * time.Millisecond
	}
	p.baseline(c.t, base)
	p.sessions(c.t, busy)
	probes(p, c, canaryMinWindow, 3*time.Millisecond)
	wantState(t, p, 0.5, 1, "canary at 1.5×")
	p.sessions(c.t, busy)
	probes(p, c, 1, 3*time.Millisecond)
	if _, why := p.why(); !strings.Contains(why, "waiting for the canary") {
		t.Fatalf("why %q", why)
	}
	p.canaryStopped()
	if p.canaryOn() {
		t.Fatal("a stopped canary is still on")
	}
	for range 3 {
		p.sessions(c.t, busy)
		probes(p, c, 1, 3*time.Millisecond) // the last probe's decision tick, without a canary
	}
	if _, why := p.why(); strings.Contains(why, "canary") {
		t.Fatalf("the pace still waits for a stopped canary: %q", why)
	}
}
