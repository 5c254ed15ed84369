package evolve

import (
	"fmt"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
)

// LiveSignal is the latency of the application's live requests as handoff's
// gateway measures them; `handoff serve` provides it to the backfills it
// runs. The adaptive throttle backs off while now exceeds baseline by more
// than it allows.
type LiveSignal interface {
	// P99 returns the p99 of the requests answered in the last few seconds
	// and the p99 before the backfill began; ok is false while either has
	// too few requests to say.
	P99() (now, baseline time.Duration, ok bool)
}

// The adaptive throttle's decisions. It looks at what it has seen every
// decideEvery: when something suffers it halves what it does (a worker
// less, or half the share of time in batches); when nothing does it adds a
// little (additive increase, multiplicative decrease: it finds the most
// live work tolerates and stays just under it, as TCP does with a link).
const (
	decideEvery = 500 * time.Millisecond
	// minDuty is the least share of wall time in batches: the fixed
	// throttle's default. The backfill always ends, however busy the
	// database, and never slower than it did before the adaptive throttle:
	// a host saturated by others keeps every signal up whatever the
	// backfill does, and a floor near zero would starve it for nothing
	// (an e2e pipeline under a load average of 30 did not finish 300,000
	// rows in two minutes at a 3 % floor).
	minDuty = DefaultFixedDuty / 100.0
	// dutyStep is the additive increase per calm decision.
	dutyStep = 0.1
	// calmToAddWorker is how many calm decisions at full duty it takes to
	// run one more worker.
	calmToAddWorker = 2
	// p99High: back off while the live p99 is above this multiple of its
	// baseline (the goal is 1.5×; acting at 1.35× leaves room for the
	// decision's own delay); p99Low: below it the pace may rise; in
	// between it holds. Without the band a p99 just under the limit
	// raised the pace into the next backoff, again and again.
	p99High, p99Low = 1.35, 1.15
	// liveSettle is how long the gateway's p99 takes to show a change of
	// pace: its window (server.liveRecent, 3 s). A reading is acted on
	// only once that long has passed since the last change; acting on
	// every decision (500 ms) halved the duty six times on the same slow
	// requests, down to the floor, where it stayed (bench/evolve, serve).
	liveSettle = 3 * time.Second
	// slowLimit: back off while batches take this multiple of what the
	// same batch size took with nothing else running. Live work that
	// shares the cores slows a batch by itself (two cores, eight busy
	// clients: about 2–4×) without a live query suffering much; at 3× the
	// backfill is the one being crowded out, and so is the live work.
	slowLimit = 3.0
	// lockWaitLimit: back off when a live session has waited this long for
	// a lock a batch holds.
	lockWaitLimit = 50 * time.Millisecond
	// unloadedMin and unloadedKeep: a shape's unloaded time is the median
	// of its last unloadedKeep unloaded batches, once there are unloadedMin.
	unloadedMin, unloadedKeep = 5, 32
	// signalFresh: a signal older than this is not acted on.
	signalFresh = 2 * time.Second
)

// signals are the latest readings of the world outside the run, as the
// control monitor took them.
type signals struct {
	sessions   dialect.Sessions
	sessionsAt time.Time
	lag        time.Duration
	lagAt      time.Time
	p99, p99At time.Duration // the live p99 now and before the run
	liveAt     time.Time
}

// costKey is a batch's shape: how many workers ran beside it and its size
// to a power of two. A batch's time per key is compared with the unloaded
// time of the same shape only: two workers share the disk and the WAL, and
// a small batch pays its commit over fewer rows.
type costKey struct{ workers, sizeLog int }

// pacer is the adaptive throttle's state. Every method takes the time, so
// that a test can drive its decisions with a fake clock.
type pacer struct {
	maxWorkers int
	maxLag     time.Duration

	mu      sync.Mutex
	duty    float64 // share of wall time each worker spends in batches
	workers int     // how many run at once
	calm    int     // calm decisions in a row
	decided time.Time
	sig     signals
	// unloaded holds the last times per key of each batch shape seen while
	// no other session was running a statement; their median is the
	// shape's unloaded time (a minimum would make every batch look slow
	// on a host whose other processes come and go).
	unloaded map[costKey][]time.Duration
	slow     []float64 // this window's batches: time per key over unloaded
	reason   string    // why it last backed off or holds; "" when it last went up
	changed  time.Time // when duty or workers last changed
	canary   canaryState
}

func newPacer(maxWorkers int, maxLag time.Duration, now time.Time) *pacer {
	// It starts at full duty with one worker: an idle database gets full
	// speed at once, and a busy one is found out within one decision.
	return &pacer{maxWorkers: max(maxWorkers, 1), maxLag: maxLag, duty: 1, workers: 1, decided: now,
		unloaded: map[costKey][]time.Duration{}}
}

// state returns the duty and the number of workers to run now.
func (p *pacer) state() (float64, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.duty, p.workers
}

// idleBatchScale is how much longer a batch may last while no other
// session runs a statement: short batches exist so that live commits do
// not wait long for a batch's row locks and WAL, and with none there, the
// per-batch cost (five round trips, a commit's flush) is better spread
// over more rows. The first live statement seen brings the target back
// within a batch or two (the size halves per batch at most).
const idleBatchScale = 5

// batchScale multiplies the target batch time: idleBatchScale while the
// latest fresh look found no other session running a statement, else 1.
func (p *pacer) batchScale(now time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n, known := p.others(now); known && n == 0 {
		return idleBatchScale
	}
	return 1
}

// rest is how long a worker rests after a batch that took elapsed.
func (p *pacer) rest(elapsed time.Duration) time.Duration {
	d, _ := p.state()
	return time.Duration(float64(elapsed) * (1 - d) / d)
}

func sizeLog(n int) int { return bits.Len(uint(max(n, 1))) }

// observe records a batch of size keys that took elapsed while workers
// ran, and decides when a window has passed.
func (p *pacer) observe(now time.Time, workers, size int, elapsed time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if size > 0 && elapsed > 0 {
		k := costKey{workers, sizeLog(size)}
		per := elapsed / time.Duration(size)
		others, known := p.others(now)
		switch {
		case !known:
		case others == 0:
			u := append(p.unloaded[k], per)
			p.unloaded[k] = u[max(len(u)-unloadedKeep, 0):]
		default:
			// Slow batches matter only with live work beside them: alone
			// on the database, a batch slowed by the host's other
			// processes makes no query wait.
			if u := p.unloaded[k]; len(u) >= unloadedMin {
				p.slow = append(p.slow, float64(per)/float64(medianDuration(u)))
			}
		}
	}
	p.decideLocked(now)
}

// others is how many other sessions the latest fresh look at the
// database found running a statement; known is false without one.
func (p *pacer) others(now time.Time) (n int, known bool) {
	if p.sig.sessionsAt.IsZero() || now.Sub(p.sig.sessionsAt) >= signalFresh {
		return 0, false
	}
	return p.sig.sessions.Active, true
}

// sessions, lag and live record the monitor's readings.
func (p *pacer) sessions(now time.Time, s dialect.Sessions) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sig.sessions, p.sig.sessionsAt = s, now
	p.decideLocked(now)
}

func (p *pacer) lag(now time.Time, lag time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sig.lag, p.sig.lagAt = lag, now
}

func (p *pacer) live(now time.Time, p99, baseline time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sig.p99, p.sig.p99At, p.sig.liveAt = p99, baseline, now
}

// suffering names what suffers now, or "".
func (p *pacer) suffering(now time.Time) string {
	s := p.sig
	fresh := func(at time.Time) bool { return !at.IsZero() && now.Sub(at) < signalFresh }
	switch {
	case fresh(s.sessionsAt) && s.sessions.Blocked > 0 && s.sessions.LongestWait >= lockWaitLimit:
		return fmt.Sprintf("lock waits: %d sessions wait for a batch, the longest %v", s.sessions.Blocked, s.sessions.LongestWait.Round(time.Millisecond))
	case p.liveSettled(now) && float64(s.p99) > p99High*float64(s.p99At):
		return p.liveText()
	case fresh(s.lagAt) && p.maxLag > 0 && s.lag > p.maxLag/2:
		return fmt.Sprintf("replication lag: %v", s.lag.Round(time.Millisecond))
	}
	if r, _, _, ok := p.canaryRatio(); ok && p.useCanary(now) && r > canaryHigh {
		return p.canaryText(r)
	}
	if len(p.slow) > 0 {
		if m := median(p.slow); m >= slowLimit {
			return fmt.Sprintf("slow batches: %.1f× their unloaded time", m)
		}
	}
	return ""
}

// liveFresh reports a fresh live p99 reading (under handoff serve).
func (p *pacer) liveFresh(now time.Time) bool {
	s := p.sig
	return !s.liveAt.IsZero() && now.Sub(s.liveAt) < signalFresh && s.p99At > 0
}

// liveSettled reports a fresh live p99 reading taken once the last
// change of pace could show in it.
func (p *pacer) liveSettled(now time.Time) bool {
	return p.liveFresh(now) && p.sig.liveAt.Sub(p.changed) >= liveSettle
}

// useCanary reports whether the canary speaks for the live work now: it
// has a baseline, no gateway measures the live requests themselves (the
// canary stands in for them), and another session is at work (with none,
// its probes only time the backfill's own WAL).
func (p *pacer) useCanary(now time.Time) bool {
	return p.canaryOn() && !p.liveFresh(now) && p.liveWork(now)
}

// liveWork reports whether the latest fresh look found another session
// running a statement.
func (p *pacer) liveWork(now time.Time) bool {
	n, known := p.others(now)
	return known && n > 0
}

func (p *pacer) liveText() string {
	s := p.sig
	return fmt.Sprintf("live p99: %v, %.2f× its %v before the backfill", s.p99.Round(100*time.Microsecond), float64(s.p99)/float64(s.p99At), s.p99At.Round(100*time.Microsecond))
}

func (p *pacer) canaryText(r float64) string {
	_, now, base, _ := p.canaryRatio()
	return fmt.Sprintf("canary: %v, %.2f× its %v unloaded", now.Round(10*time.Microsecond), r, base.Round(10*time.Microsecond))
}

// steady names why the pace holds rather than rises, or "": a latency
// between the band's ends, or one that has not yet shown the last change.
func (p *pacer) steady(now time.Time) string {
	s := p.sig
	if p.liveFresh(now) {
		if !p.liveSettled(now) {
			return "waiting for the live p99 to show the last change"
		}
		if float64(s.p99) > p99Low*float64(s.p99At) {
			return p.liveText()
		}
	}
	if p.useCanary(now) {
		r, _, _, ok := p.canaryRatio()
		if !ok {
			return "waiting for the canary to show the last change"
		}
		if r > canaryLow {
			return p.canaryText(r)
		}
	}
	return ""
}

func medianDuration(ds []time.Duration) time.Duration { return quantileDuration(ds, 0.5) }

func quantileDuration(ds []time.Duration, q float64) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(int(q*float64(len(s))), len(s)-1)]
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}

// decideLocked moves duty and workers once a window has passed; p.mu is held.
func (p *pacer) decideLocked(now time.Time) {
	if now.Sub(p.decided) < decideEvery {
		return
	}
	p.decided = now
	why := p.suffering(now)
	p.slow = p.slow[:0]
	if why != "" {
		p.calm, p.reason = 0, why
		if p.workers > 1 {
			p.workers--
		} else {
			p.duty = max(p.duty/2, minDuty)
		}
		p.changedLocked(now)
		return
	}
	if hold := p.steady(now); hold != "" {
		p.calm, p.reason = 0, "holding: "+hold
		return
	}
	p.calm++
	p.reason = ""
	if p.duty < 1 {
		p.duty = min(p.duty+dutyStep, 1)
		p.changedLocked(now)
		return
	}
	if p.workers < p.maxWorkers && p.calm >= calmToAddWorker {
		p.workers++
		p.calm = 0
		p.changedLocked(now)
	}
}

// changedLocked starts the evidence of the new pace afresh: the canary's
// window, and the time from which the live p99 can show it.
func (p *pacer) changedLocked(now time.Time) {
	p.changed = now
	p.canary.window, p.canary.rest = p.canary.window[:0], p.canary.rest[:0]
}

// why says what the throttle is doing, for progress and status, and a
// key that changes only when it starts or stops backing off, or for
// another reason, starts or stops holding in a latency's band, or runs
// another number of workers: progress hears of those, not of every step
// of the duty.
func (p *pacer) why() (key, text string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	text = fmt.Sprintf("adaptive: %.0f%% of the time in batches, %d workers", 100*p.duty, p.workers)
	key = fmt.Sprint(p.workers)
	switch {
	case strings.HasPrefix(p.reason, "holding: waiting"):
		// Waiting for a signal to show the last change comes after
		// every change: not news.
		text += " (" + p.reason + ")"
	case strings.HasPrefix(p.reason, "holding: "):
		text += " (" + p.reason + ")"
		key += " holding"
	case p.reason != "":
		text += " (backing off: " + p.reason + ")"
		key += " " + strings.SplitN(p.reason, ":", 2)[0]
	}
	return key, text
}
