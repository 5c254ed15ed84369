package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"

	"github.com/handoff-dev/handoff/internal/evolve"
	"github.com/handoff-dev/handoff/internal/migrate"
)

// printer shows a Migrator's events: a progress bar per backfill on a
// terminal, plain lines (at most one progress line a second) otherwise,
// and one JSON object per event with --json.
type printer struct {
	out  io.Writer
	json bool

	mu    sync.Mutex
	bars  *mpb.Progress
	bar   map[string]*mpb.Bar
	shown map[string]*atomic.Pointer[evolve.Event] // read by the bars' decorators without p.mu
	last  map[string]time.Time
}

func newPrinter(out *os.File, asJSON bool) *printer {
	p := &printer{out: out, json: asJSON, bar: map[string]*mpb.Bar{}, shown: map[string]*atomic.Pointer[evolve.Event]{}, last: map[string]time.Time{}}
	if !asJSON && isTerminal(out) {
		p.bars = mpb.New(mpb.WithOutput(out), mpb.WithWidth(40), mpb.WithRefreshRate(200*time.Millisecond))
	}
	return p
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// jsonEvent is an event as --json prints it: the event with its error as text.
type jsonEvent struct {
	migrate.Event
	Error string `json:"error,omitempty"`
}

func (p *printer) event(e migrate.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json {
		je := jsonEvent{Event: e}
		if e.Err != nil {
			je.Error = e.Err.Error()
		} else if e.Backfill != nil && e.Backfill.Err != nil {
			je.Error = e.Backfill.Err.Error()
		}
		b, _ := json.Marshal(je)
		fmt.Fprintf(p.out, "%s\n", b)
		return
	}
	file := filepath.Base(e.File)
	switch e.Kind {
	case migrate.EventPhaseStart:
		p.println("%s: %s (%s:%d)", e.Migration, e.Phase, file, e.Line)
	case migrate.EventPhaseDone:
		p.println("%s: %s done", e.Migration, e.Phase)
	case migrate.EventLockRetry:
		p.println("%s: %s: %s:%d gave up a lock wait (%s), retry %d", e.Migration, e.Phase, file, e.Line, e.Reason, e.Attempt)
	case migrate.EventIndexCleanup:
		p.println("%s: dropped invalid index %s left by a failed concurrent build", e.Migration, e.Index)
	case migrate.EventReplayed:
		p.println("%s: %s: %s:%d ran before the last run stopped (%v): counted applied", e.Migration, e.Phase, file, e.Line, e.Err)
	case migrate.EventBackfill:
		p.backfill(e.Migration, *e.Backfill)
	}
}

// println writes a line above the bars, or plainly.
func (p *printer) println(format string, args ...any) {
	line := fmt.Sprintf(format, args...) + "\n"
	if p.bars != nil {
		p.bars.Write([]byte(line))
		return
	}
	io.WriteString(p.out, line)
}

func (p *printer) backfill(name string, e evolve.Event) {
	if e.Kind == evolve.EventDone && e.Reason == "up to date" {
		p.println("%s: backfill up to date (run %d covered every key)", name, e.Run)
		return
	}
	if p.shown[name] == nil {
		p.shown[name] = &atomic.Pointer[evolve.Event]{}
	}
	p.shown[name].Store(&e)
	switch e.Kind {
	case evolve.EventRetry:
		p.println("%s: batch [%s, %s) conflicted (%s), retry %d", name, e.Lo, e.Hi, e.Reason, e.Attempt)
	case evolve.EventPause, evolve.EventResume:
		p.println("%s: backfill %sd (%s)", name, e.Kind, e.Reason)
	case evolve.EventStopped:
		p.println("%s: backfill stopped (%s) at %.1f%%, %d rows; run it again to resume", name, e.Reason, e.Percent, e.Rows)
	}
	if p.bars != nil {
		p.updateBar(name, e)
		return
	}
	if e.Kind == evolve.EventDone || e.Kind == evolve.EventStart || time.Since(p.last[name]) >= time.Second {
		p.last[name] = time.Now()
		p.println("%s", progressLine(name, e))
	}
}

func progressLine(name string, e evolve.Event) string {
	s := fmt.Sprintf("%s: backfill run %d: %5.1f%%  %d/%d rows  %.0f rows/s  batch %d", name, e.Run, e.Percent, e.Rows, e.Total, e.Rate, e.Batch)
	if e.ETA > 0 {
		s += fmt.Sprintf("  ETA %v", e.ETA)
	}
	if e.Kind == evolve.EventDone {
		s += "  done"
	}
	return s
}

const barTotal = 10000 // hundredths of a percent

func (p *printer) updateBar(name string, e evolve.Event) {
	b := p.bar[name]
	if b == nil {
		shown := p.shown[name]
		b = p.bars.AddBar(barTotal,
			mpb.PrependDecorators(decor.Name(name+" ")),
			mpb.AppendDecorators(decor.Percentage(), decor.Any(func(decor.Statistics) string {
				s := shown.Load()
				return fmt.Sprintf("  %d/%d rows  %.0f rows/s  ETA %v", s.Rows, s.Total, s.Rate, s.ETA)
			})))
		p.bar[name] = b
	}
	switch e.Kind {
	case evolve.EventDone:
		b.SetCurrent(barTotal)
	case evolve.EventStopped:
		b.Abort(false)
	default:
		b.SetCurrent(int64(e.Percent * 100))
	}
}

// close waits for the bars to draw their last state.
func (p *printer) close() {
	p.mu.Lock()
	bars := p.bars
	for _, b := range p.bar {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	p.mu.Unlock()
	if bars != nil {
		bars.Wait()
	}
}
