package loadgen

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Runner is one run of load. Its methods are safe for concurrent use.
type Runner struct {
	cfg     Config
	start   time.Time
	workers []*worker
	wg      sync.WaitGroup

	stop     chan struct{} // closed to stop starting new work
	stopOnce sync.Once
	done     chan struct{} // closed when every worker has finished
	end      time.Time     // written before done is closed
	timer    *time.Timer   // Duration
	ctxStop  func() bool   // unregisters the ctx watch

	issued   atomic.Int64 // requests begun, against MaxRequests
	requests atomic.Int64 // live progress only; the Result comes from stats
	failures atomic.Int64

	resultOnce sync.Once
	result     Result
}

// Progress is a live view of a run.
type Progress struct {
	Requests, Failures int64
	Elapsed            time.Duration
}

// Start validates cfg, starts its clients and returns at once. The run ends
// when Duration has passed, MaxRequests have begun, ctx ends or Stop is
// called, whichever is first.
func Start(ctx context.Context, cfg Config) (*Runner, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Runner{cfg: cfg, stop: make(chan struct{}), done: make(chan struct{})}
	upload := newUpload(cfg.UploadSize)
	for _, k := range kinds {
		for range cfg.clients(k) {
			r.workers = append(r.workers, &worker{r: r, kind: k, client: r.newClient(k, upload), stats: newStats()})
		}
	}
	r.start = time.Now()
	r.wg.Add(len(r.workers))
	for _, w := range r.workers {
		go w.run()
	}
	go func() {
		r.wg.Wait()
		r.end = time.Now()
		close(r.done)
	}()
	if cfg.Duration > 0 {
		r.timer = time.AfterFunc(cfg.Duration, r.halt)
	}
	r.ctxStop = context.AfterFunc(ctx, r.halt)
	return r, nil
}

// Run starts a load and waits for its end (Duration, MaxRequests or ctx).
func Run(ctx context.Context, cfg Config) (Result, error) {
	r, err := Start(ctx, cfg)
	if err != nil {
		return Result{}, err
	}
	<-r.Done()
	return r.Stop(), nil
}

// Done is closed when the run has ended by itself (Duration, MaxRequests,
// ctx) or after Stop, once every in-flight request has finished.
func (r *Runner) Done() <-chan struct{} { return r.done }

// Progress returns the counts so far.
func (r *Runner) Progress() Progress {
	return Progress{Requests: r.requests.Load(), Failures: r.failures.Load(), Elapsed: time.Since(r.start)}
}

// Stop ends the run and returns its result. No new request starts; those
// in flight finish (each bounded by its timeout), so that stopping the load
// does not itself fail a request. Calling Stop again returns the same result.
func (r *Runner) Stop() Result {
	r.halt()
	<-r.done
	r.resultOnce.Do(func() {
		if r.timer != nil {
			r.timer.Stop()
		}
		r.ctxStop()
		r.result = tally(r.workers, r.end.Sub(r.start))
	})
	return r.result
}

func (r *Runner) halt() { r.stopOnce.Do(func() { close(r.stop) }) }

// upload is the body every uploader sends, and the echo to expect.
type upload struct {
	body, echo []byte
}

// newUpload makes a random body of n bytes; random, so that a proxy that
// mixed up two requests' bytes could not go unnoticed.
func newUpload(n int) upload {
	body := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{})
	_, _ = rng.Read(body) // never fails
	return upload{body, fmt.Appendf(nil, "%d %x\n", n, sha256.Sum256(body))}
}

// newClient builds one client of kind k.
func (r *Runner) newClient(k Kind, up upload) client {
	cfg := &r.cfg
	var j *jar
	if cfg.Cookies {
		j = newJar()
	}
	get := func(path string, timeout time.Duration, check bodyChecker) *httpClient {
		return &httpClient{conn: newHTTPConn(cfg.Addr), jar: j, head: requestHead("GET", path, cfg.Host, cfg.Header, -1),
			timeout: timeout, check: check}
	}
	switch k {
	case KindSlow:
		path := fmt.Sprintf("/slow?ms=%d", cfg.SlowDelay.Milliseconds())
		return get(path, cfg.Timeout+cfg.SlowDelay, &discardBody{make([]byte, 32<<10)})
	case KindUpload:
		return &httpClient{conn: newHTTPConn(cfg.Addr), jar: j, head: requestHead("PUT", "/upload", cfg.Host, cfg.Header, len(up.body)),
			body: up.body, timeout: cfg.Timeout, check: &expectBody{want: up.echo}}
	case KindWrite:
		body := []byte(`{"name":"Item Written Under Load"}`)
		return &httpClient{conn: newHTTPConn(cfg.Addr), jar: j, head: requestHead("POST", "/items", cfg.Host, jsonHeader(cfg.Header), len(body)),
			body: body, timeout: cfg.Timeout, check: &discardBody{make([]byte, 4<<10)}, want: http.StatusCreated}
	case KindStream:
		path := fmt.Sprintf("/sse?n=%d&ms=%d", cfg.StreamEvents, cfg.StreamInterval.Milliseconds())
		timeout := cfg.Timeout + time.Duration(cfg.StreamEvents)*cfg.StreamInterval
		return get(path, timeout, &eventBody{n: cfg.StreamEvents, br: bufio.NewReaderSize(nil, 4<<10)})
	case KindWebSocket:
		return &wsClient{addr: cfg.Addr, host: cfg.Host, path: "/ws", header: cfg.Header, jar: j,
			timeout: cfg.Timeout, msg: make([]byte, cfg.WebSocketSize)}
	}
	return get(cfg.FastPath, cfg.Timeout, &discardBody{make([]byte, 32<<10)})
}

// worker drives one client until the run stops.
type worker struct {
	r      *Runner
	kind   Kind
	client client
	stats  *stats
	pace   *time.Timer
	next   time.Time // when the next request may start, under a rate
}

func (w *worker) run() {
	defer w.r.wg.Done()
	defer w.client.close()
	for w.turn() {
		o := w.client.next()
		w.record(&o)
	}
}

// turn waits for the client's next slot and reports whether it may go on.
func (w *worker) turn() bool {
	if every := w.interval(); every > 0 {
		if !w.wait(every) {
			return false
		}
	}
	select {
	case <-w.r.stop:
		return false
	default:
	}
	limit := w.r.cfg.MaxRequests
	return limit == 0 || w.r.issued.Add(1) <= limit
}

// interval is the pause between one start and the next, 0 for none.
func (w *worker) interval() time.Duration {
	if w.kind == KindWebSocket {
		return w.r.cfg.WebSocketInterval
	}
	if w.r.cfg.Rate > 0 {
		return time.Duration(float64(time.Second) / w.r.cfg.Rate)
	}
	return 0
}

// wait sleeps until the next slot; a client that fell behind starts at once
// rather than catching up in a burst. It returns false if the run stopped.
func (w *worker) wait(every time.Duration) bool {
	now := time.Now()
	if d := w.next.Sub(now); d > 0 {
		if w.pace == nil {
			w.pace = time.NewTimer(d)
		} else {
			w.pace.Reset(d)
		}
		select {
		case <-w.pace.C:
		case <-w.r.stop:
			return false
		}
		now = w.next
	}
	w.next = now.Add(every)
	return true
}

// record counts an outcome and hands it to the Record hook.
func (w *worker) record(o *outcome) {
	end := time.Now()
	w.stats.add(o, end)
	if o.skip {
		return
	}
	w.r.requests.Add(1)
	if o.err != nil {
		w.r.failures.Add(1)
	}
	if hook := w.r.cfg.Record; hook != nil {
		hook(Record{Kind: w.kind, Start: o.start, End: end, Status: o.status, Release: o.release,
			Instance: o.instance, Err: o.err, Reused: o.reused})
	}
}

// jsonHeader adds Content-Type: application/json to the configured headers.
func jsonHeader(h http.Header) http.Header {
	h = h.Clone()
	if h == nil {
		h = http.Header{}
	}
	h.Set("Content-Type", "application/json")
	return h
}
