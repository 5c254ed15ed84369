package server

import (
	"context"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/evolve"
	"github.com/handoff-dev/handoff/internal/gateway"
)

// The live signal of a backfill under handoff serve: the latency of the
// requests of the apps that use the database, as this gateway measured
// them (its per-release histograms), now and before the backfill began.
const (
	liveEvery = time.Second
	// liveKeep samples are kept: enough for liveBefore and a margin.
	liveKeep = 90
	// liveRecent is the window of "now": short enough that the throttle
	// sees its own effect within a few decisions, long enough to hold a
	// p99 of a modest traffic.
	liveRecent = 3 * time.Second
	// liveBefore is the baseline's window, just before the backfill.
	liveBefore = time.Minute
	// liveMinRequests: a window with fewer answers has no p99 worth acting
	// on (one slow request of a hundred would be the p99).
	liveMinRequests = 200
)

// liveLatency samples the gateway's counters of the apps that use the
// database once a second and keeps the last liveKeep readings.
type liveLatency struct {
	gw   *gateway.Gateway
	apps []string

	mu      sync.Mutex
	samples []latencySample // oldest first
}

// latencySample is one reading: each app's releases' cumulative counters.
type latencySample struct {
	at     time.Time
	counts map[string]gateway.ReleaseCounts // by app and release
}

// liveSignals starts sampling and returns what makes each backfill's
// signal; the sampling ends with ctx. Without a database or an HTTP app
// that uses it there is nothing to sample, and no signal (nil).
func liveSignals(ctx context.Context, gw *gateway.Gateway, db config.Database, apps config.Apps) func() evolve.LiveSignal {
	l := &liveLatency{gw: gw}
	for _, a := range apps {
		if a.UsesDatabase && a.Kind == config.KindHTTP {
			l.apps = append(l.apps, a.Name)
		}
	}
	if db.URL == "" || len(l.apps) == 0 {
		return nil
	}
	go l.monitorLatency(ctx)
	return func() evolve.LiveSignal { return &backfillLatency{l: l, began: time.Now()} }
}

func (l *liveLatency) monitorLatency(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.sample(time.Now())
		t.Reset(liveEvery)
	}
}

func (l *liveLatency) sample(now time.Time) {
	s := latencySample{at: now, counts: map[string]gateway.ReleaseCounts{}}
	for _, app := range l.apps {
		for _, c := range l.gw.ReleaseStats(app) {
			s.counts[app+"/"+c.Release] = c
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.samples = append(l.samples, s)
	if len(l.samples) > liveKeep {
		l.samples = l.samples[len(l.samples)-liveKeep:]
	}
}

// between sums what every release answered from the first sample at or
// after from to the last at or before to; false without two such samples.
func (l *liveLatency) between(from, to time.Time) (gateway.ReleaseCounts, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	first, last := -1, -1
	for i, s := range l.samples {
		if first < 0 && !s.at.Before(from) {
			first = i
		}
		if !s.at.After(to) {
			last = i
		}
	}
	if first < 0 || last <= first {
		return gateway.ReleaseCounts{}, false
	}
	sum := gateway.ReleaseCounts{Buckets: make([]int64, len(gateway.LatencyBounds())+1)}
	for key, end := range l.samples[last].counts {
		d := end
		if start, ok := l.samples[first].counts[key]; ok {
			d = end.Minus(start) // a release new since from counts from zero
		}
		if d.Requests() < 0 {
			continue // counters that went back: not the same release's
		}
		for i := range d.Classes {
			sum.Classes[i] += d.Classes[i]
		}
		for i := range min(len(d.Buckets), len(sum.Buckets)) {
			sum.Buckets[i] += d.Buckets[i]
		}
	}
	return sum, true
}

// backfillLatency is one backfill's evolve.LiveSignal.
type backfillLatency struct {
	l     *liveLatency
	began time.Time
}

func (b *backfillLatency) P99() (now, baseline time.Duration, ok bool) {
	t := time.Now()
	recent, ok1 := b.l.between(t.Add(-liveRecent-liveEvery/2), t)
	before, ok2 := b.l.between(b.began.Add(-liveBefore), b.began)
	if !ok1 || !ok2 || recent.Requests() < liveMinRequests || before.Requests() < liveMinRequests {
		return 0, 0, false
	}
	return quantile(recent, 0.99), quantile(before, 0.99), true
}

// quantile interpolates within the histogram's bucket: the gateway's
// buckets are wide (2.5 ms to 5 ms), and a throttle acting at 1.25× must
// see a p99 move within one.
func quantile(c gateway.ReleaseCounts, q float64) time.Duration {
	bounds := gateway.LatencyBounds()
	want := q * float64(c.Requests())
	var seen float64
	lower := time.Duration(0)
	for i, n := range c.Buckets {
		if i >= len(bounds) {
			return bounds[len(bounds)-1] // beyond the last bound: its lower bound
		}
		if n > 0 && seen+float64(n) >= want {
			f := (want - seen) / float64(n)
			return lower + time.Duration(f*float64(bounds[i]-lower))
		}
		seen += float64(n)
		lower = bounds[i]
	}
	return lower
}
