package evolve

import (
	"context"
	"database/sql/driver"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
)

// The canary is the adaptive throttle's view of live latency without a
// gateway (`handoff migrate backfill`): a tiny committed write, timed,
// every canaryEvery. On the bench's live workload the live p99 is the
// writes' (reads: 3–4 ms, writes: 13–24 ms on a loaded host), and what a
// live write waits for is the WAL: LWLock:WALWrite and IO:WALSync in
// pg_stat_activity, most of the time. A backfill's WAL makes every flush
// longer, and a committed write waits for a flush as a live one does, so
// the canary sees what the live writes see; a read would not. Its
// unloaded latency is that of the probes taken while no batch ran — in
// the rests between batches, spaced as every probe is — and, when there
// were none lately (at full duty), of probes taken while the throttle
// holds new batches back for a moment. A baseline of back-to-back probes
// in a hold every 20 s made the canary read 2–4× at the 25 % floor while
// the live writes' p90 was 1.24× its own: the unloaded probes must be
// taken as the loaded ones are, and at many moments.
const (
	canaryEvery = 20 * time.Millisecond
	// canaryRebase: without an unloaded probe for this long (no rests:
	// full duty), batches are held back for a few probes (about 2 % of
	// the run's time at full duty, nothing below it).
	canaryRebase = 5 * time.Second
	// canarySettle: a probe counts as unloaded from this long after the
	// last batch ended.
	canarySettle = 10 * time.Millisecond
	// canaryBaseN probes make one unloaded measurement; canaryKeep of
	// them (the last measurements) make the baseline, once there are
	// canaryBaseMin (a host so slow that a measurement's time is up
	// before canaryBaseN probes still gets a baseline).
	canaryBaseN, canaryKeep, canaryBaseMin = 3, 32, 3
	// canaryHoldMax bounds how long batches are held back for one.
	canaryHoldMax = time.Second
	// canaryMinWindow: a decision on the canary needs this many probes
	// taken since the last change of pace (half a second's worth or
	// more); the window keeps the last canaryMaxWindow.
	canaryMinWindow, canaryMaxWindow = 20, 40
	// canaryMinRest: unloaded probes in the window that make its own
	// baseline.
	canaryMinRest = 10
	// canaryQuantile of the window is compared with the same quantile of
	// the baseline. The goal is the live p99, and on the bench that is
	// about the p95 of the writes (a fifth of the queries); the p90 is
	// the nearest quantile a window of 20 probes still holds two of.
	canaryQuantile = 0.9
	// canaryHigh backs off, canaryLow lets the pace rise; in between the
	// pace holds. The band keeps it from rising into a backoff at every
	// other decision (the goal is a live p99 ≤ 1.5× its baseline).
	canaryHigh, canaryLow = 1.4, 1.2
)

// canaryState is the pacer's record of the probes.
type canaryState struct {
	base   []time.Duration // the last canaryKeep unloaded probes
	baseAt time.Time       // when the last unloaded measurement ended
	window []time.Duration // probes since the last change of pace
	rest   []time.Duration // of those, the unloaded ones
}

// needBase reports whether the unloaded latency is due to be measured:
// before the first batch, then only while the canary is in use (an idle
// database or a gateway's p99 needs no hold).
func (p *pacer) needBase(now time.Time) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.canary.baseAt.IsZero() || now.Sub(p.canary.baseAt) >= canaryRebase && p.useCanary(now)
}

// baseline records one unloaded measurement's probes.
func (p *pacer) baseline(now time.Time, probes []time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	b := append(p.canary.base, probes...)
	p.canary.base, p.canary.baseAt = b[max(len(b)-canaryKeep, 0):], now
}

// probe records a probe taken while batches ran at the pace of the
// moment; unloaded says no batch ran during it (one of the rests).
func (p *pacer) probe(now time.Time, took time.Duration, unloaded bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := &p.canary
	w := append(c.window, took)
	c.window = w[max(len(w)-canaryMaxWindow, 0):]
	if unloaded {
		b := append(c.base, took)
		c.base, c.baseAt = b[max(len(b)-canaryKeep, 0):], now
		r := append(c.rest, took)
		c.rest = r[max(len(r)-canaryMaxWindow, 0):]
	}
	p.decideLocked(now)
}

// canaryRatio is the window's latency over the unloaded one; ok is false
// without a baseline or enough probes since the last change of pace.
func (p *pacer) canaryRatio() (ratio float64, now, base time.Duration, ok bool) {
	c := p.canary
	if len(c.base) < canaryBaseMin || len(c.window) < canaryMinWindow {
		return 0, 0, 0, false
	}
	// The rests of the same window are the baseline when there are
	// enough of them: taken at the same moments as the loaded probes, they
	// move with the host's load as those do (a baseline a second older
	// made the canary read 3–11× while the host's load swung).
	ref := c.base
	if len(c.rest) >= canaryMinRest {
		ref = c.rest
	}
	now, base = quantileDuration(c.window, canaryQuantile), quantileDuration(ref, canaryQuantile)
	return float64(now) / float64(max(base, time.Microsecond)), now, base, true
}

// canaryOn reports whether the canary is running: it has a baseline.
func (p *pacer) canaryOn() bool { return len(p.canary.base) >= canaryBaseMin }

// canaryStopped forgets the canary once it has stopped (a failed probe,
// the run's end): a pace must never wait for a canary that is gone to
// show its last change.
func (p *pacer) canaryStopped() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.canary = canaryState{}
}

// canaryHoldBound bounds a hold of the batches for the canary, whatever it
// waits for: its connection, the batches in flight, its probes (each
// bounded by canaryHoldMax).
const canaryHoldBound = 10 * canaryHoldMax

// runCanary probes until ctx ends. Its session carries the run's tag, so
// that the pacer does not count it as live work.
func (r *runner) runCanary(ctx context.Context) {
	p := r.thr.pacer
	defer p.canaryStopped()
	defer r.thr.hold(time.Time{}) // walkAll's hold until the first measurement, whatever happens
	cctx, cancel := context.WithTimeout(ctx, canaryHoldMax)
	conn, err := r.d.DB().Conn(cctx)
	cancel()
	if err != nil {
		return // no canary: the other signals remain
	}
	// The connection is not given back to the pool (ErrBadConn from Raw
	// closes it): it carries the tag, a session setting, and a probe cut
	// short by its bound may have left it mid-statement.
	defer conn.Raw(func(any) error { return driver.ErrBadConn })
	if _, err := conn.ExecContext(ctx, `SELECT set_config('application_name', $1, false)`, truncTag(r.tag)); err != nil {
		return
	}
	// Each probe is bounded: a probe that waits on a lock (an operator's
	// open transaction on the job's row), a stalled link or a synchronous
	// standby that is down fails, and the canary stops, instead of holding
	// the batches back.
	probe := func() (time.Duration, bool) {
		pctx, cancel := context.WithTimeout(ctx, canaryHoldMax)
		defer cancel()
		start := time.Now()
		_, err := conn.ExecContext(pctx, q(r.d, `UPDATE handoff_evolve SET heartbeat = ? WHERE name = ? AND owner = ?`), now(), r.job.Name, r.owner)
		return time.Since(start), err == nil
	}
	for ctx.Err() == nil {
		if p.needBase(time.Now()) {
			if !r.measureUnloaded(ctx, probe) {
				return // a probe failed: no canary, rather than batches held back for it
			}
		} else {
			before, start := r.thr.batches(), time.Now()
			took, ok := probe()
			if !ok {
				return
			}
			p.probe(time.Now(), took, quiet(before, r.thr.batches(), start, canarySettle))
		}
		if dialect.Sleep(ctx, canaryEvery) != nil {
			return
		}
	}
}

// measureUnloaded holds new batches back, waits for those in flight (one
// batch's time at most), and probes for at most canaryHoldMax, canaryEvery
// apart as the other probes are. The first probe is not kept: it pays for
// flushing the WAL the batches left behind (they commit without waiting
// for it).
func (r *runner) measureUnloaded(ctx context.Context, probe func() (time.Duration, bool)) bool {
	r.thr.hold(time.Now().Add(canaryHoldBound))
	defer r.thr.hold(time.Time{})
	for r.thr.batches().inflight > 0 {
		if dialect.Sleep(ctx, 2*time.Millisecond) != nil {
			return false
		}
	}
	deadline := time.Now().Add(canaryHoldMax)
	var got []time.Duration
	for i := 0; i <= canaryBaseN && time.Now().Before(deadline); i++ {
		took, ok := probe()
		if !ok {
			return false
		}
		if i > 0 {
			got = append(got, took)
		}
		if i < canaryBaseN && dialect.Sleep(ctx, canaryEvery) != nil {
			return false
		}
	}
	r.thr.pacer.baseline(time.Now(), got)
	return true
}

// truncTag is the tag as Postgres keeps it in application_name
// (NAMEDATALEN-1 bytes), as dialect's BeginTagged sets it.
func truncTag(tag string) string {
	if len(tag) > 63 {
		return tag[:63]
	}
	return tag
}

// canaryWatcher reports whether the dialect has sessions to watch and so
// a canary: Postgres. SQLite has one writer at a time; a probe would
// queue with the batches for the same lock.
func canaryWatcher(d dialect.Dialect) bool {
	_, ok := d.(dialect.SessionWatcher)
	return ok
}
