// Package gateway is handoff's HTTP data path: route a request to an app by
// Host, apply the app's mode (read-only, maintenance, paused), pick an
// instance, and proxy to it — with retries, drains, sticky pinning and a
// banner. The hot path reads one immutable snapshot; control-plane changes
// build a new snapshot and swap it in.
package gateway

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Gateway.
type Options struct {
	Logger *slog.Logger
	// AccessLog logs one line per request.
	AccessLog bool
	// RetryBuffer is how much of a request body is kept for a retry.
	RetryBuffer int
	// ResponseTimeout bounds the wait for an instance's response head once
	// the request is sent; past it the client gets 504. Zero: no limit.
	ResponseTimeout time.Duration
	// HoldRequests and HoldBytes bound what a pause holds, over all apps.
	HoldRequests int
	HoldBytes    int64
	// Registerer receives the gateway's metrics; nil makes a private registry.
	Registerer prometheus.Registerer
}

// Gateway routes and proxies requests. Its methods are safe for concurrent use.
type Gateway struct {
	opts    Options
	log     *slog.Logger
	snap    atomic.Pointer[snapshot]
	closing atomic.Bool // every response says Connection: close
	metrics *metrics

	heldRequests atomic.Int64
	heldBytes    atomic.Int64

	exhausted exhaustion // checks and dials that failed for want of descriptors

	mu      sync.Mutex // serializes control-plane changes
	order   []string   // app names in config order
	apps    map[string]*appState
	global  Modes
	targets map[string]*Target
	// lineAhead, when set, says when the requests held for an app
	// elsewhere have gone on (see SetLineAhead).
	lineAhead func(app string) <-chan struct{}
}

// appState is the control plane's view of one app.
type appState struct {
	cfg             *config.App
	hosts           []string
	worker          bool
	route           Route
	modes           Modes
	hold            *holdQueue
	holdMax         time.Duration
	maintenancePage []byte
	stats           map[string]*releaseStats // by release, for as long as this process runs
	quiet           *Pause                   // while a quiesce holds new requests (quiesce.go)
}

// New returns a gateway with no apps.
func New(opts Options) *Gateway {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.HoldRequests <= 0 {
		opts.HoldRequests = 10000
	}
	if opts.HoldBytes <= 0 {
		opts.HoldBytes = 64 << 20
	}
	g := &Gateway{
		opts:    opts,
		log:     opts.Logger,
		apps:    map[string]*appState{},
		targets: map[string]*Target{},
	}
	g.metrics = newMetrics(g, opts.Registerer)
	g.snap.Store(g.build())
	return g
}

// Configure sets the apps from the config. Routes and modes of apps that
// stay are kept; apps that are gone are dropped and their targets drained.
func (g *Gateway) Configure(apps config.Apps) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	next := map[string]*appState{}
	var order []string
	for _, app := range apps {
		page, err := maintenancePage(app.Maintenance.Page)
		if err != nil {
			return fmt.Errorf("configure app %s: %w", app.Name, err)
		}
		st := g.apps[app.Name]
		if st == nil {
			st = &appState{hold: newHoldQueue()}
		}
		st.cfg, st.hosts, st.worker = app, app.Hosts, app.Kind == config.KindWorker
		st.holdMax, st.maintenancePage = app.HoldMax.D(), page
		next[app.Name] = st
		order = append(order, app.Name)
	}
	for name, st := range g.apps {
		if next[name] == nil {
			g.retarget(st, Route{})
		}
	}
	g.apps, g.order = next, order
	g.publish()
	return nil
}

func maintenancePage(path string) ([]byte, error) {
	if path == "" {
		return []byte(defaultMaintenancePage), nil
	}
	page, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read maintenance page: %w", err)
	}
	return page, nil
}

// publish swaps in a snapshot of the current control-plane state; g.mu is held.
func (g *Gateway) publish() { g.snap.Store(g.build()) }

func (g *Gateway) app(name string) (*appState, error) {
	st, ok := g.apps[name]
	if !ok {
		return nil, &UnknownAppError{App: name}
	}
	return st, nil
}

// UnknownAppError is returned for an app the config does not name.
type UnknownAppError struct{ App string }

func (e *UnknownAppError) Error() string { return fmt.Sprintf("unknown app %q", e.App) }

// Apps lists the configured app names in order.
func (g *Gateway) Apps() []string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.order)
}

// SetClosing makes every response carry Connection: close, so that clients
// leave this process's connections after their current request: the first
// half of handing the listeners to a new handoff process.
func (g *Gateway) SetClosing(on bool) { g.closing.Store(on) }

// Close stops the gateway's health checks and closes idle connections.
func (g *Gateway) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, t := range g.targets {
		if t.stopCheck != nil {
			t.stopCheck()
		}
		t.closeIdle()
	}
}
