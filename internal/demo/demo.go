// Package demo is `handoff demo`: the whole story of a release under load,
// on an embedded sample app, with no setup. In a temporary directory it
// lays out two releases of the sample app (the handoff binary serves it)
// with a SQLite database of 200,000 rows, starts a real handoff server that
// runs them, drives real load through the gateway that never retries, and
// then does what an operator would: a release whose migration has all
// three phases, rolled out brick by brick, a canary rolled back, a
// read-only window and a pause.
// At the end it sums up what the users saw.
package demo

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/loadgen"
)

// Options configure a demo run.
type Options struct {
	// Say receives the narration, a line at a time.
	Say func(line string)
	// Progress receives the release's progress (a backfill's bar).
	Progress func(deploy.Progress)
	// Keep leaves the server running after the story until ctx ends.
	Keep bool
	// Rows is how many rows the sample database starts with (200,000).
	Rows int
}

// Summary is what the users saw; `handoff demo --json` prints it.
type Summary struct {
	Requests       int64              `json:"requests"`
	Failed         int64              `json:"failed"`
	MaxLatencyMS   float64            `json:"max_latency_ms"`
	P99MS          float64            `json:"p99_ms"`
	RowsBackfilled int64              `json:"rows_backfilled"`
	Phases         map[string]float64 `json:"phases"`
	Releases       map[string]int64   `json:"releases"`
	Refused        map[string]int64   `json:"refused"`
	Gateway        string             `json:"gateway"`
	Dashboard      string             `json:"dashboard,omitempty"`
}

// demo is one run's state.
type demo struct {
	opts     Options
	start    time.Time
	dir      string
	exe      string
	client   *control.Client
	gateway  string
	admin    string
	token    string
	phases   map[string]float64
	backfill int64
	load     *loadgen.Runner
}

func (d *demo) say(format string, args ...any) {
	d.opts.Say(fmt.Sprintf("[%5.1fs] %s", time.Since(d.start).Seconds(), fmt.Sprintf(format, args...)))
}

// timed runs one part of the story and records how long it took.
func (d *demo) timed(name string, run func() error) error {
	began := time.Now()
	err := run()
	d.phases[name] = round(time.Since(began).Seconds())
	if err != nil {
		return fmt.Errorf("demo %s: %w", name, err)
	}
	return nil
}

// Run tells the story and returns the summary.
func Run(ctx context.Context, opts Options) (*Summary, error) {
	if opts.Rows == 0 {
		opts.Rows = 200000
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("demo: find the handoff binary: %w", err)
	}
	d := &demo{opts: opts, start: time.Now(), exe: exe, phases: map[string]float64{}}
	if d.dir, err = os.MkdirTemp("", "handoff-demo-"); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(d.dir)
	if err := d.setup(); err != nil {
		return nil, err
	}
	srvCtx, stopServer := context.WithCancel(context.Background())
	done, err := d.startServer(srvCtx)
	if err != nil {
		stopServer()
		return nil, err
	}
	defer func() { stopServer(); <-done }()
	if err := d.story(ctx); err != nil {
		return nil, err
	}
	return d.finish(ctx)
}

// story is the part under load.
func (d *demo) story(ctx context.Context) error {
	if err := d.deployV1(ctx); err != nil {
		return err
	}
	load, err := loadgen.Start(ctx, loadgen.Config{
		Addr: d.gateway, Fast: 24, Writers: 4, Slow: 2, SlowDelay: time.Second, Streams: 1, WebSockets: 1,
		Cookies: true, Rate: 40, Timeout: 30 * time.Second,
	})
	if err != nil {
		return err
	}
	d.load = load
	d.say("load: 32 keep-alive clients — page views, form posts that write to the database, 1 s slow requests, an event stream, a WebSocket; nothing is retried")
	time.Sleep(2 * time.Second)
	for _, part := range []struct {
		name string
		run  func(context.Context) error
	}{
		{"release", d.release},
		{"canary", d.canary},
		{"readonly", d.readOnly},
		{"pause", d.pause},
	} {
		if err := part.run(ctx); err != nil {
			d.load.Stop()
			return err
		}
	}
	time.Sleep(time.Second)
	return nil
}

// finish stops the load and sums up.
func (d *demo) finish(ctx context.Context) (*Summary, error) {
	res := d.load.Stop()
	sum := &Summary{
		Requests: res.Requests, Failed: res.Failures, MaxLatencyMS: ms(res.Latency.Max), P99MS: ms(res.Latency.P99),
		RowsBackfilled: d.backfill, Phases: d.phases, Releases: res.Releases, Refused: res.Refused,
		Gateway: "http://" + d.gateway, Dashboard: "http://" + d.admin + "/",
	}
	d.summarise(sum, res)
	if d.opts.Keep {
		d.say("still serving: the app on http://%s, the dashboard on http://%s/ (token %s); Ctrl-C to stop", d.gateway, d.admin, d.token)
		<-ctx.Done()
	}
	return sum, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
