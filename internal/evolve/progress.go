package evolve

import (
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
)

// EventKind says what happened in a run.
type EventKind string

// The events a run reports, in the order they usually come.
const (
	EventStart    EventKind = "start"    // the run claimed its range
	EventBatch    EventKind = "batch"    // a batch committed
	EventRetry    EventKind = "retry"    // a batch conflicted and will be tried again
	EventPause    EventKind = "pause"    // paused by request, or waiting for replicas
	EventThrottle EventKind = "throttle" // the adaptive throttle changed pace; Reason says how and why
	EventResume   EventKind = "resume"   // going again
	EventDone     EventKind = "done"     // the whole range is covered
	EventStopped  EventKind = "stopped"  // cancelled or failed; resumable
)

// Event is one progress report. Counts are of this run.
type Event struct {
	Kind EventKind `json:"event"`
	Name string    `json:"name"`
	Run  int       `json:"run"`
	// Rows done in this run (keys, for a command) and the estimated total.
	Rows  int64 `json:"rows"`
	Total int64 `json:"total"`
	// Percent of the run's key range covered.
	Percent float64 `json:"percent"`
	// Rate is rows per second over the last few seconds.
	Rate float64       `json:"rate"`
	ETA  time.Duration `json:"eta_ns"`
	// Batch is the current batch size.
	Batch int `json:"batch"`
	// Lo and Hi bound the batch of a batch or retry event.
	Lo string `json:"lo,omitempty"`
	Hi string `json:"hi,omitempty"`
	// Attempt and Reason describe a retry ("deadlock", "exit 75", ...) or a
	// pause ("requested", "replication lag").
	Attempt int    `json:"attempt,omitempty"`
	Reason  string `json:"reason,omitempty"`
	// Err is why a run stopped.
	Err error `json:"-"`
}

// part is one worker's share of the range; cursor is the next key to do.
type part struct {
	n              int
	lo, hi, cursor key
	rows           int64
}

// done reports whether the part's cursor has reached its end: integers by
// comparison, text and uuid keys by being the very value recorded as the
// end (the database, not Go, orders them; see keys.go).
func (p *part) done() bool {
	if p.hi.kind == dialect.KeyInt {
		return p.cursor.n >= p.hi.n
	}
	return p.cursor.s == p.hi.s
}

// tracker turns batches into events. It serializes calls of the progress
// function so that the caller need not be safe for concurrent use.
type tracker struct {
	mu       sync.Mutex
	emit     func(Event)
	base     Event
	parts    []*part
	start    time.Time
	startPct float64
	samples  []sample
}

type sample struct {
	t    time.Time
	rows int64
}

func newTracker(emit func(Event), name string, run int, total int64, parts []*part) *tracker {
	if emit == nil {
		emit = func(Event) {}
	}
	t := &tracker{emit: emit, base: Event{Name: name, Run: run, Total: total}, parts: parts, start: time.Now()}
	for _, p := range parts {
		t.base.Rows += p.rows
	}
	t.startPct = t.percent()
	t.samples = []sample{{t.start, t.base.Rows}}
	return t
}

// batch records a committed batch of part p.
func (t *tracker) batch(p *part, lo, hi key, rows int64, size int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p.cursor = hi
	p.rows += rows
	t.base.Rows += rows
	t.base.Batch = size
	now := time.Now()
	t.samples = append(t.samples, sample{now, t.base.Rows})
	for len(t.samples) > 2 && now.Sub(t.samples[1].t) > 5*time.Second {
		t.samples = t.samples[1:]
	}
	e := t.snapshot(EventBatch)
	e.Lo, e.Hi = lo.String(), hi.String()
	t.emit(e)
}

// moved records that part p's checkpoint is at cursor with rows done,
// committed by another session (see reloadPart).
func (t *tracker) moved(p *part, cursor key, rows int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.base.Rows += rows - p.rows
	p.cursor, p.rows = cursor, rows
}

// send reports an event that is not a batch.
func (t *tracker) send(e Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.snapshot(e.Kind)
	s.Lo, s.Hi, s.Attempt, s.Reason, s.Err = e.Lo, e.Hi, e.Attempt, e.Reason, e.Err
	if e.Batch != 0 {
		s.Batch = e.Batch
	}
	t.emit(s)
}

// snapshot fills the counters; t.mu is held.
func (t *tracker) snapshot(kind EventKind) Event {
	e := t.base
	e.Kind = kind
	e.Percent = 100 * t.percent()
	first, last := t.samples[0], t.samples[len(t.samples)-1]
	if d := last.t.Sub(first.t).Seconds(); d > 0 {
		e.Rate = float64(last.rows-first.rows) / d
	}
	if done := e.Percent/100 - t.startPct; done > 0 && e.Percent < 100 {
		elapsed := time.Since(t.start)
		e.ETA = time.Duration(float64(elapsed) * (1 - e.Percent/100) / done).Round(time.Second)
	}
	return e
}

// percent is the fraction of the range covered: by keys for integer
// keys, by rows against the estimate for text keys.
func (t *tracker) percent() float64 {
	if len(t.parts) == 0 {
		return 0 // a pass that forgot its range
	}
	var done, width float64
	for _, p := range t.parts {
		f, ok := fraction(p.lo, p.hi, p.cursor)
		if !ok {
			if t.base.Total == 0 {
				return 0
			}
			return min(float64(t.base.Rows)/float64(t.base.Total), 0.999)
		}
		w := float64(p.hi.n - p.lo.n)
		done += f * w
		width += w
	}
	if width == 0 {
		return 1
	}
	return done / width
}

func (t *tracker) rate() float64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.snapshot(EventBatch).Rate
}
