package gateway

import (
	"sort"
	"sync/atomic"
	"time"
)

// latencyBounds are the upper bounds of releaseStats' latency buckets; the
// last bucket takes everything slower.
const numBounds = 14

var latencyBounds = [numBounds]time.Duration{
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond, 10 * time.Millisecond, 25 * time.Millisecond,
	50 * time.Millisecond, 100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second, 30 * time.Second,
}

// releaseStats is what the gateway saw of one release's answers, kept
// while the release serves: the status classes, the requests that failed
// on its instances (answered 502 or 504 by the gateway), and a latency
// histogram. The gateway knows which release answered every request, so
// two releases side by side (a canary, a rolling deploy) can be compared
// by their own numbers: seed 003's "is error X due to the users, or the
// code?". Adding is a few atomic increments; nothing is locked.
type releaseStats struct {
	classes [6]atomic.Int64 // by status/100; 0 for odd codes
	failed  atomic.Int64
	buckets [numBounds + 1]atomic.Int64
	sumNs   atomic.Int64
}

// fail counts a request the release's instances failed (the gateway
// answered status itself).
func (s *releaseStats) fail(status int, d time.Duration) {
	s.failed.Add(1)
	s.observe(status, d)
}

func (s *releaseStats) observe(status int, d time.Duration) {
	s.classes[class(status)].Add(1)
	s.sumNs.Add(int64(d))
	i := sort.Search(len(latencyBounds), func(i int) bool { return d <= latencyBounds[i] })
	s.buckets[i].Add(1)
}

// ReleaseCounts are a release's counters at one moment; the difference of
// two readings is what happened between them.
type ReleaseCounts struct {
	Release string `json:"release"`
	// Classes counts answers by status class: index 1 for 1xx … 5 for 5xx.
	Classes [6]int64 `json:"classes"`
	// Failed counts requests the gateway answered 502/504 after the
	// release's instances failed them (also counted in Classes[5]).
	Failed int64 `json:"failed"`
	// Buckets count requests by latency, up to each of LatencyBounds and
	// beyond the last.
	Buckets []int64       `json:"buckets"`
	Sum     time.Duration `json:"sum_ns"`
}

// LatencyBounds are the bucket bounds of ReleaseCounts.Buckets.
func LatencyBounds() []time.Duration { return latencyBounds[:] }

func (s *releaseStats) read(release string) ReleaseCounts {
	c := ReleaseCounts{Release: release, Failed: s.failed.Load(), Buckets: make([]int64, len(s.buckets)), Sum: time.Duration(s.sumNs.Load())}
	for i := range s.classes {
		c.Classes[i] = s.classes[i].Load()
	}
	for i := range s.buckets {
		c.Buckets[i] = s.buckets[i].Load()
	}
	return c
}

// Requests is the number of answers counted.
func (c ReleaseCounts) Requests() int64 {
	var n int64
	for _, v := range c.Classes {
		n += v
	}
	return n
}

// Minus is what happened between an earlier reading and this one.
func (c ReleaseCounts) Minus(earlier ReleaseCounts) ReleaseCounts {
	out := ReleaseCounts{Release: c.Release, Failed: c.Failed - earlier.Failed, Sum: c.Sum - earlier.Sum, Buckets: make([]int64, len(c.Buckets))}
	for i := range c.Classes {
		out.Classes[i] = c.Classes[i] - earlier.Classes[i]
	}
	for i := range c.Buckets {
		out.Buckets[i] = c.Buckets[i]
		if i < len(earlier.Buckets) {
			out.Buckets[i] -= earlier.Buckets[i]
		}
	}
	return out
}

// Share is the fraction of answers in status class k (3 for redirects, 5
// for server errors), 0 without answers.
func (c ReleaseCounts) Share(k int) float64 {
	if n := c.Requests(); n > 0 {
		return float64(c.Classes[k]) / float64(n)
	}
	return 0
}

// Quantile is the latency under which a fraction q of the answers came,
// to the bucket's upper bound (the last bucket reports its lower bound).
func (c ReleaseCounts) Quantile(q float64) time.Duration {
	n := c.Requests()
	if n == 0 {
		return 0
	}
	want := int64(q*float64(n) + 0.5)
	var seen int64
	for i, b := range c.Buckets {
		if seen += b; seen >= want && seen > 0 {
			if i < len(latencyBounds) {
				return latencyBounds[i]
			}
			break
		}
	}
	return latencyBounds[len(latencyBounds)-1]
}

// ReleaseStats returns the counters of each release of app that served
// through this gateway process, in no particular order.
func (g *Gateway) ReleaseStats(app string) []ReleaseCounts {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := g.apps[app]
	if st == nil {
		return nil
	}
	out := make([]ReleaseCounts, 0, len(st.stats))
	for rel, s := range st.stats {
		out = append(out, s.read(rel))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Release < out[j].Release })
	return out
}

// statsOf returns the stats of an app's release, made on first use; g.mu
// is held.
func (st *appState) statsOf(release string) *releaseStats {
	if st.stats == nil {
		st.stats = map[string]*releaseStats{}
	}
	s := st.stats[release]
	if s == nil {
		s = &releaseStats{}
		st.stats[release] = s
	}
	return s
}
