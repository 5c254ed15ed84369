package loadgen

import (
	"math/bits"
	"time"
)

// The histogram is log-linear (as HdrHistogram): values below 2^subBits ns
// are exact, larger ones fall in one of 2^subBits buckets per power of two,
// so a percentile is within 1/2^subBits (0.8%) of the truth, in fixed
// memory, with no allocation per value.
const (
	subBits    = 7
	subCount   = 1 << subBits
	maxBits    = 41 // values clamp at 2^41 ns, 36 minutes
	numBuckets = (maxBits - subBits + 1) * subCount
)

// histogram records latencies. It is not safe for concurrent use: each
// worker owns one, and they are merged when the run is over.
type histogram struct {
	counts []uint64
	n      int64
	sum    int64
	max    int64
}

func newHistogram() *histogram { return &histogram{counts: make([]uint64, numBuckets)} }

func bucketOf(v int64) int {
	if v < subCount {
		return int(max(v, 0))
	}
	v = min(v, 1<<maxBits-1)
	shift := bits.Len64(uint64(v)) - 1 - subBits
	return (shift+1)<<subBits + int(v>>shift) - subCount
}

// bucketRange returns the smallest value of bucket i and the bucket's width.
func bucketRange(i int) (low, width int64) {
	if i < subCount {
		return int64(i), 1
	}
	shift := i>>subBits - 1
	return int64(i&(subCount-1)+subCount) << shift, 1 << shift
}

func (h *histogram) record(d time.Duration) {
	v := int64(d)
	h.counts[bucketOf(v)]++
	h.n++
	h.sum += v
	h.max = max(h.max, v)
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the value below which a fraction q of values fall: the
// middle of the bucket holding it, never more than the largest value seen.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.5)
	rank = min(max(rank, 1), uint64(h.n))
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			low, width := bucketRange(i)
			return time.Duration(min(low+width/2, h.max))
		}
	}
	return time.Duration(h.max)
}

// latency summarises the histogram.
func (h *histogram) latency() Latency {
	l := Latency{
		P50:  h.quantile(0.50),
		P90:  h.quantile(0.90),
		P99:  h.quantile(0.99),
		P999: h.quantile(0.999),
		Max:  time.Duration(h.max),
	}
	if h.n > 0 {
		l.Mean = time.Duration(h.sum / h.n)
	}
	return l
}
