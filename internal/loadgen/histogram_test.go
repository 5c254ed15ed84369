package loadgen

import (
	"math"
	"testing"
	"time"
)

func TestBucketsCoverEveryValueInOrder(t *testing.T) {
	prev := -1
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 257, 1000, 1 << 20, 1<<41 - 1, 1 << 50} {
		b := bucketOf(v)
		if b < prev || b >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d after %d", v, b, prev)
		}
		low, width := bucketRange(b)
		if v < 1<<41 && (v < low || v >= low+width) {
			t.Fatalf("value %d outside its bucket [%d, %d)", v, low, low+width)
		}
		prev = b
	}
}

func TestQuantilesAreWithinOnePercent(t *testing.T) {
	h := newHistogram()
	for i := 1; i <= 100000; i++ {
		h.record(time.Duration(i) * time.Microsecond)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		want := q * 100000 * float64(time.Microsecond)
		if got := float64(h.quantile(q)); math.Abs(got-want)/want > 0.01 {
			t.Errorf("quantile(%v) = %v, want %v ±1%%", q, time.Duration(got), time.Duration(want))
		}
	}
	l := h.latency()
	if l.Max != 100*time.Millisecond || l.Mean != 50000500*time.Nanosecond {
		t.Errorf("max %v mean %v", l.Max, l.Mean)
	}
	o := newHistogram()
	o.record(time.Second)
	h.merge(o)
	if h.n != 100001 || h.latency().Max != time.Second {
		t.Errorf("after merge: n=%d max=%v", h.n, h.latency().Max)
	}
}
