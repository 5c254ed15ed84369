package server

import (
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/gateway"
)

// counts makes cumulative counters: n answers per latency bucket.
func counts(release string, perBucket map[int]int64) gateway.ReleaseCounts {
	c := gateway.ReleaseCounts{Release: release, Buckets: make([]int64, len(gateway.LatencyBounds())+1)}
	for i, n := range perBucket {
		c.Buckets[i] += n
		c.Classes[2] += n
	}
	return c
}

func add(a, b gateway.ReleaseCounts) gateway.ReleaseCounts {
	out := gateway.ReleaseCounts{Release: a.Release, Buckets: make([]int64, len(a.Buckets))}
	for i := range a.Buckets {
		out.Buckets[i] = a.Buckets[i] + b.Buckets[i]
	}
	for i := range a.Classes {
		out.Classes[i] = a.Classes[i] + b.Classes[i]
	}
	return out
}

// TestQuantileInterpolates: within a wide bucket the p99 moves with the
// answers in it, so that 1.25× can be told from 1×.
func TestQuantileInterpolates(t *testing.T) {
	// 1000 answers: 980 under 1 ms, 20 in (1 ms, 2.5 ms].
	c := counts("v1", map[int]int64{0: 980, 1: 20})
	if got, want := quantile(c, 0.99), 1750*time.Microsecond; got != want {
		t.Fatalf("p99 %v, want %v (half-way through the second bucket)", got, want)
	}
	c = counts("v1", map[int]int64{0: 985, 1: 15})
	if got, want := quantile(c, 0.99), 1500*time.Microsecond; got != want {
		t.Fatalf("p99 %v, want %v", got, want)
	}
}

// TestBackfillLatency: the signal compares the last seconds with the
// minute before the backfill began, across releases (one new since), and
// says nothing while a window holds too few answers.
func TestBackfillLatency(t *testing.T) {
	l := &liveLatency{}
	start := time.Now().Add(-80 * time.Second)
	fast := counts("v1", map[int]int64{0: 990, 1: 10}) // each second
	slow := counts("v2", map[int]int64{0: 900, 2: 100})
	cumV1, cumV2 := counts("v1", nil), counts("v2", nil)
	var began time.Time
	for i := 0; i <= 80; i++ {
		at := start.Add(time.Duration(i) * time.Second)
		s := latencySample{at: at, counts: map[string]gateway.ReleaseCounts{"web/v1": cumV1}}
		if i > 70 { // the backfill began at 70 s; v2 answers slowly since
			s.counts["web/v2"] = cumV2
			cumV2 = add(cumV2, slow)
		}
		if i == 70 {
			began = at
		}
		cumV1 = add(cumV1, fast)
		l.samples = append(l.samples, s)
	}
	b := &backfillLatency{l: l, began: began}
	now, base, ok := b.P99()
	if !ok {
		t.Fatal("no signal with 1000 answers a second")
	}
	if base < time.Millisecond || base > 2500*time.Microsecond {
		t.Errorf("baseline p99 %v, want within (1 ms, 2.5 ms]", base)
	}
	if now <= 2500*time.Microsecond {
		t.Errorf("p99 now %v, want above 2.5 ms (5 %% of the answers took up to 5 ms)", now)
	}

	quiet := &liveLatency{samples: []latencySample{
		{at: began.Add(-2 * time.Second), counts: map[string]gateway.ReleaseCounts{"web/v1": counts("v1", nil)}},
		{at: began.Add(-time.Second), counts: map[string]gateway.ReleaseCounts{"web/v1": counts("v1", map[int]int64{0: 50})}},
	}}
	if _, _, ok := (&backfillLatency{l: quiet, began: began}).P99(); ok {
		t.Error("a signal from 50 answers")
	}
}
