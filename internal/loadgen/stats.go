package loadgen

import (
	"cmp"
	"slices"
	"time"
)

// outcome is one unit of work as a client saw it.
type outcome struct {
	start             time.Time
	status            int
	release, instance string
	reused            bool
	read, sent        int64
	err               error
	// refused names the mode that refused the request on purpose, if any.
	refused string
	// skip says no request was made (a WebSocket found closed by the server
	// before its round trip); the connection events still count.
	skip bool
	// dialed, dropped and closed are connection events: a connection was
	// opened; the server closed one without notice; or after announcing it.
	dialed, dropped, closed bool
}

// stats is one worker's tally. Only its worker writes it, and only after
// every worker has finished is it read, so it needs no lock.
type stats struct {
	requests, failures, read, sent int64
	connects, forced, graceful     int64
	hist                           *histogram
	releases, instances            map[string]int64
	status                         map[int]int64
	refused                        map[string]int64
	errors                         errorSample
}

func newStats() *stats {
	return &stats{
		hist:      newHistogram(),
		releases:  map[string]int64{},
		instances: map[string]int64{},
		status:    map[int]int64{},
		refused:   map[string]int64{},
		errors:    errorSample{},
	}
}

// add counts one outcome that ended at end.
func (s *stats) add(o *outcome, end time.Time) {
	s.connects += b2i(o.dialed)
	s.forced += b2i(o.dropped)
	s.graceful += b2i(o.closed)
	if o.skip {
		return
	}
	s.requests++
	s.read += o.read
	s.sent += o.sent
	s.hist.record(end.Sub(o.start))
	if o.status > 0 {
		s.status[o.status]++
		s.releases[o.release]++
		s.instances[o.instance]++
	}
	if o.refused != "" {
		s.refused[o.refused]++
	}
	if o.err != nil {
		s.failures++
		s.errors.add(describe(o.err))
	}
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// maxErrorKinds bounds the distinct error texts kept per worker and kind.
const maxErrorKinds = 20

// otherErrors collects failures beyond the first maxErrorKinds texts.
const otherErrors = "(other errors)"

// errorSample counts failures by their description.
type errorSample map[string]int64

func (e errorSample) add(msg string) {
	if _, ok := e[msg]; !ok && len(e) >= maxErrorKinds {
		msg = otherErrors
	}
	e[msg]++
}

func (e errorSample) merge(o errorSample) {
	for msg, n := range o {
		e[msg] += n
	}
}

// sorted lists the errors, most frequent first.
func (e errorSample) sorted() []ErrorCount {
	out := make([]ErrorCount, 0, len(e))
	for msg, n := range e {
		out = append(out, ErrorCount{msg, n})
	}
	slices.SortFunc(out, func(a, b ErrorCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Error, b.Error))
	})
	return out
}

// tally merges workers' stats into a Result.
func tally(workers []*worker, elapsed time.Duration) Result {
	res := Result{
		Elapsed:   elapsed,
		Kinds:     map[Kind]*KindResult{},
		Releases:  map[string]int64{},
		Instances: map[string]int64{},
		Status:    map[int]int64{},
		Refused:   map[string]int64{},
	}
	all := newHistogram()
	allErrs := errorSample{}
	kindHists := map[Kind]*histogram{}
	kindErrs := map[Kind]errorSample{}
	for _, w := range workers {
		kr := res.Kinds[w.kind]
		if kr == nil {
			kr = &KindResult{}
			res.Kinds[w.kind] = kr
			kindHists[w.kind] = newHistogram()
			kindErrs[w.kind] = errorSample{}
		}
		s := w.stats
		kr.Clients++
		kr.Requests += s.requests
		kr.Failures += s.failures
		kr.Bytes += s.read
		kr.BytesSent += s.sent
		kindHists[w.kind].merge(s.hist)
		kindErrs[w.kind].merge(s.errors)
		res.addCounts(s)
		all.merge(s.hist)
		for msg, n := range s.errors {
			allErrs[string(w.kind)+": "+msg] += n
		}
	}
	for k, kr := range res.Kinds {
		kr.Latency = kindHists[k].latency()
		kr.Errors = kindErrs[k].sorted()
	}
	res.Latency = all.latency()
	res.Errors = allErrs.sorted()
	if elapsed > 0 {
		res.RequestsPerSecond = float64(res.Requests) / elapsed.Seconds()
	}
	return res
}

// addCounts adds one worker's totals and maps to res.
func (res *Result) addCounts(s *stats) {
	res.Requests += s.requests
	res.Failures += s.failures
	res.Bytes += s.read
	res.BytesSent += s.sent
	res.Connects += s.connects
	res.ForcedReconnects += s.forced
	res.GracefulReconnects += s.graceful
	for k, n := range s.releases {
		res.Releases[k] += n
	}
	for k, n := range s.refused {
		res.Refused[k] += n
	}
	for k, n := range s.instances {
		res.Instances[k] += n
	}
	for k, n := range s.status {
		res.Status[k] += n
	}
}
