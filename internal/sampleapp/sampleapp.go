// Package sampleapp is the backend that handoff's demo and tests put behind
// the gateway: one small HTTP app with an endpoint for every kind of traffic
// a zero-downtime claim must survive (keep-alive, slow answers, uploads,
// server-sent events, WebSockets, HTML for the banner), and a job worker for
// worker apps. The handoff binary serves it itself (`handoff sampleapp`), so
// tests get real backend processes without building anything else.
//
// Every response carries X-Release and X-Instance, so that a test can tell
// which release and which instance served each request.
package sampleapp

import (
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// Options describe one instance of the sample app.
type Options struct {
	// Release is shown on the page and sent as X-Release.
	Release string
	// Instance is sent as X-Instance; empty means the address the request
	// came in on, which is the instance's listen address.
	Instance string
	// Unhealthy makes /healthz answer 503.
	Unhealthy bool
	// DB, when set, keeps /items in that database (postgres://… or a SQLite
	// file) instead of in memory; Schema is the release's view of it (1 or 2).
	DB     string
	Schema int
	// Bad plays a release that is broken only under real traffic, while
	// its health check passes: "login" redirects every other page to
	// /login (a release that logged everyone out), "5xx" answers 500 on
	// every other page.
	Bad string
}

// Handler returns the sample app's handler. Its endpoints:
//
//	GET  /                  HTML page showing the release (for banner injection)
//	GET  /gzip              the same page, always gzip-encoded
//	GET  /healthz           200 "ok", or 503 when Unhealthy
//	GET  /fast              a 100-byte body
//	GET  /bytes?n=65536     n bytes
//	GET  /slow?ms=2000      waits, then answers; nothing is sent before
//	*    /status/{code}     answers with that status code
//	PUT|POST /upload        "<length> <sha256 hex>\n" of the request body
//	GET  /sse?n=10&ms=100   n server-sent events, ms apart, each flushed
//	GET  /ws                WebSocket echo
//	GET  /json              release, instance and time as JSON
//	GET|POST /items         a small in-memory JSON collection (writes for read-only tests)
//
// WebSockets stay open until the client closes them; Serve closes them with
// 1001 (going away) when it shuts down.
func Handler(opts Options) http.Handler { return newApp(opts) }

// app is the handler and the state that Serve needs to shut it down.
type app struct {
	opts      Options
	mux       *http.ServeMux
	release   []string // shared, never modified: saves an allocation per response
	fastBytes []byte
	items     items
	db        *store // nil: items live in memory

	badTurn  atomic.Int64  // with Options.Bad: every other answer is the bad one
	stop     chan struct{} // closed when the server shuts down
	stopOnce sync.Once
	sockets  sync.WaitGroup // open WebSocket handlers
}

func newApp(opts Options) *app {
	a := &app{
		opts:      opts,
		mux:       http.NewServeMux(),
		release:   []string{opts.Release},
		fastBytes: fastBody(opts.Release),
		stop:      make(chan struct{}),
	}
	a.routes()
	return a
}

func (a *app) routes() {
	m := a.mux
	m.HandleFunc("GET /{$}", a.page)
	m.HandleFunc("GET /gzip", a.gzipPage)
	m.HandleFunc("GET /healthz", a.healthz)
	m.HandleFunc("GET /fast", a.fast)
	m.HandleFunc("GET /bytes", a.sized)
	m.HandleFunc("GET /slow", a.slow)
	m.HandleFunc("/status/{code}", a.status)
	m.HandleFunc("PUT /upload", a.upload)
	m.HandleFunc("POST /upload", a.upload)
	m.HandleFunc("GET /sse", a.sse)
	m.HandleFunc("GET /ws", a.echoSocket)
	m.HandleFunc("GET /json", a.info)
	m.HandleFunc("GET /items", a.listItems)
	m.HandleFunc("POST /items", a.addItem)
}

// ServeHTTP stamps every response, 404s included, with the release and
// instance before routing.
func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["X-Release"] = a.release
	h["X-Instance"] = []string{a.instance(r)}
	if a.opts.Bad != "" && r.URL.Path != "/healthz" && a.badTurn.Add(1)%2 == 0 {
		switch a.opts.Bad {
		case "login":
			http.Redirect(w, r, "/login", http.StatusFound)
			return
		case "5xx":
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
	}
	a.mux.ServeHTTP(w, r)
}

func (a *app) instance(r *http.Request) string {
	if a.opts.Instance != "" {
		return a.opts.Instance
	}
	if addr, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		return addr.String()
	}
	return ""
}

// shutdown tells long-lived handlers (WebSockets) that the server is going.
func (a *app) shutdown() { a.stopOnce.Do(func() { close(a.stop) }) }
