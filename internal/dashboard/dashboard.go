// Package dashboard is handoff's web UI on the admin listener: a
// server-rendered page of every app (mode, instances, the deploy in
// progress), the migrations and the event log, kept live by server-sent
// events, with switches for the gateway's modes. The switches call the
// control API under /api/ like the CLI does; Auth lets them in with the
// dashboard's session cookie. No build step: templates, CSS and a little
// JavaScript are embedded in the binary.
package dashboard

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
)

// Options tune a Dashboard; the zero value is the default.
type Options struct {
	Logger *slog.Logger
	// Poll is how often an event stream asks the API what changed (500ms).
	Poll time.Duration
	// KeepAlive is the longest silence on an event stream before a comment
	// line keeps proxies from closing it (15s).
	KeepAlive time.Duration
	// MaxStreams bounds the open event streams; more get 503 (32).
	MaxStreams int
	// WriteTimeout bounds each write to an event stream, so that a client
	// that stopped reading is dropped (10s).
	WriteTimeout time.Duration
}

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Poll <= 0 {
		o.Poll = 500 * time.Millisecond
	}
	if o.KeepAlive <= 0 {
		o.KeepAlive = 15 * time.Second
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = 32
	}
	if o.WriteTimeout <= 0 {
		o.WriteTimeout = 10 * time.Second
	}
	return o
}

// Dashboard serves the dashboard's paths: / (the page), /login, /logout,
// /events (the page's event stream) and /static/. It reads everything
// through api; the switches on the page use /api/, which the caller serves
// behind Auth.Require.
type Dashboard struct {
	api     control.API
	auth    *Auth
	opts    Options
	mux     *http.ServeMux
	streams chan struct{} // one token per open event stream

	closeOnce sync.Once
	closing   chan struct{}
}

// New returns the dashboard of api, guarded by auth.
func New(api control.API, auth *Auth, opts Options) *Dashboard {
	opts = opts.withDefaults()
	d := &Dashboard{api: api, auth: auth, opts: opts, mux: http.NewServeMux(),
		streams: make(chan struct{}, opts.MaxStreams), closing: make(chan struct{})}
	d.mux.HandleFunc("GET /{$}", d.page)
	d.mux.HandleFunc("GET /login", d.loginForm)
	d.mux.HandleFunc("POST /login", d.login)
	d.mux.HandleFunc("POST /logout", d.logout)
	d.mux.HandleFunc("GET /events", d.events)
	d.mux.HandleFunc("GET /static/{name}", serveAsset)
	d.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "404 not found: the dashboard is at /", http.StatusNotFound)
	})
	return d
}

// ServeHTTP serves the dashboard's paths with headers that keep its pages
// out of frames, caches and other origins' scripts.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	d.mux.ServeHTTP(w, r)
}

// Close ends the open event streams (their browsers reconnect, to this
// process's successor after an upgrade). Register it with the admin
// server's RegisterOnShutdown: Shutdown waits for no stream otherwise.
func (d *Dashboard) Close() {
	d.closeOnce.Do(func() { close(d.closing) })
}

// jsonError answers as the control API does: {"error": "..."}.
func jsonError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(control.Error{Error: msg})
}
