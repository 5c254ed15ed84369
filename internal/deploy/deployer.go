package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/evolve"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/store"
	"github.com/handoff-dev/handoff/internal/supervisor"
	"github.com/handoff-dev/handoff/internal/tcpproxy"
	"github.com/prometheus/client_golang/prometheus"
)

// Store kinds used by deploys.
const (
	kindApp    = "app"
	kindDeploy = "deploy"
)

// Request asks for a deploy; it is also the control API's request body.
type Request struct {
	App      string   `json:"app"`
	Targets  []string `json:"targets,omitempty"`
	Release  string   `json:"release,omitempty"` // a release directory (supervised apps)
	Label    string   `json:"label,omitempty"`
	Strategy Strategy `json:"strategy,omitempty"`
	Percent  int      `json:"percent,omitempty"`
	Promote  bool     `json:"promote,omitempty"`
	Actor    string   `json:"actor,omitempty"`
}

// Deployer runs deploys. One deploy per app runs at a time.
type Deployer struct {
	store store.Store
	gw    *gateway.Gateway
	tcp   *tcpproxy.Proxy        // routes tcp apps (tcp.go)
	sup   *supervisor.Supervisor // runs the instances of apps with a command
	apps  config.Apps
	db    config.Database // the application's database, for the release pipeline
	log   *slog.Logger
	// predecessor, when this process took over from another (an upgrade),
	// is closed once that process has exited.
	predecessor <-chan struct{}

	mu          sync.Mutex
	ctx         context.Context // the server's lifetime: deploys outlive their callers
	cancel      context.CancelFunc
	halted      bool
	active      map[string]bool   // apps with a deploy step running now
	stalled     map[string]string // deploys stopped by a failed store write: why
	live        map[string]string // a running step's detail, by deploy (lock waits)
	lockRetries *prometheus.CounterVec
	drains      map[string]drainer
	runs        sync.WaitGroup // one per claim
	finished    *prometheus.CounterVec
	// liveSignal makes the gateway's latency signal for a backfill; nil
	// without a gateway that measures it.
	liveSignal func() evolve.LiveSignal
	// migrating serializes migration steps: deploys of two apps that share
	// the database must not run the same backfill or contract at once.
	migrating sync.Mutex
	// fleetBlockers, set by a node of a fleet, names what other nodes run
	// that a contract must wait for (fleet.go).
	fleetBlockers func(ctx context.Context, migrations []string) []string
}

// Options are what a Deployer works with.
type Options struct {
	Store      store.Store
	Gateway    *gateway.Gateway
	TCP        *tcpproxy.Proxy
	Supervisor *supervisor.Supervisor
	Apps       config.Apps
	Database   config.Database
	Logger     *slog.Logger
	// Predecessor is closed when the handoff process this one took over
	// from has exited; nil when there was none.
	Predecessor <-chan struct{}
	// Registerer receives the deploy metrics; nil keeps them private.
	Registerer prometheus.Registerer
	// LiveSignal, when set, gives each backfill of a deploy the live
	// requests' latency at the gateway, for its adaptive throttle; called
	// as the backfill begins (its baseline is the time before).
	LiveSignal func() evolve.LiveSignal
}

// New returns a Deployer. Deploys run under ctx, not under the request that
// started them: a client that disconnects does not stop a deploy.
func New(ctx context.Context, o Options) *Deployer {
	d := &Deployer{
		store: o.Store, gw: o.Gateway, tcp: o.TCP, sup: o.Supervisor, apps: o.Apps, db: o.Database, log: o.Logger,
		predecessor: o.Predecessor, active: map[string]bool{}, drains: map[string]drainer{}, stalled: map[string]string{}, live: map[string]string{},
	}
	d.liveSignal = o.LiveSignal
	d.ctx, d.cancel = context.WithCancel(ctx)
	d.finished = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "handoff_deploys_total",
		Help: "Deploys that ended, by app and how: done, failed (rolled back or stopped), rolledback (a canary undone).",
	}, []string{"app", "state"})
	d.lockRetries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "handoff_migration_lock_retries_total",
		Help: "DDL statements of a deploy's migrations that gave up waiting for their lock (lock_timeout) and were retried, by app.",
	}, []string{"app"})
	if o.Registerer != nil {
		o.Registerer.MustRegister(d.finished, d.lockRetries)
	}
	return d
}

// Halt interrupts the deploys that run, at their current step (which stays
// running in the store, for whoever resumes it), waits for them to stop,
// and refuses new ones: the first half of handing over to a new handoff.
func (d *Deployer) Halt() {
	d.mu.Lock()
	d.halted = true
	d.cancel()
	d.mu.Unlock()
	d.runs.Wait()
}

// Restart undoes Halt, with the given supervisor (a new one, after a hand-
// over that failed), and resumes the deploys that were interrupted.
func (d *Deployer) Restart(ctx context.Context, sup *supervisor.Supervisor) {
	d.mu.Lock()
	d.halted, d.sup = false, sup
	d.ctx, d.cancel = context.WithCancel(ctx)
	d.mu.Unlock()
	d.Resume(d.context())
}

func (d *Deployer) context() context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ctx
}

// Error kinds a caller (the control API) maps to answers.
var (
	ErrBadRequest = errors.New("bad request")
	ErrConflict   = errors.New("conflict")
	ErrNotFound   = errors.New("not found")
	// ErrUnavailable: handoff is handing over to a new process; try again.
	ErrUnavailable = errors.New("unavailable")
	// ErrFailed marks a deploy that ran and failed; the old release serves.
	ErrFailed = errors.New("deploy failed")
	// ErrInterrupted: this process stopped (or handed over to a new one in
	// an upgrade) in the middle of the deploy; the next process finishes it.
	ErrInterrupted = errors.New("interrupted")
)

// FailedError is a deploy that ran and failed, and what serves instead.
type FailedError struct {
	Deploy  string
	Serving string
	Err     error
}

func (e *FailedError) Error() string {
	return fmt.Sprintf("deploy %s failed; %s still serves: %v", e.Deploy, e.Serving, e.Err)
}

func (e *FailedError) Unwrap() []error { return []error{ErrFailed, e.Err} }

// kindError is an error of one of the kinds above, whose message is only
// its own text: "no canary to promote", not "bad request: no canary …".
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }

// Errorf returns an error of kind (ErrBadRequest, ErrConflict, ErrNotFound).
func Errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

func badRequest(format string, args ...any) error { return Errorf(ErrBadRequest, format, args...) }

// Restore loads each app's record and applies its route to the gateway; an
// app never deployed starts with the targets its config lists.
func (d *Deployer) Restore(ctx context.Context) error {
	for _, app := range d.apps {
		rec, err := d.record(ctx, app.Name)
		if err != nil {
			return err
		}
		if rec.Current == nil && len(app.Targets) > 0 {
			rel := Release{Label: "initial", Targets: app.Targets}
			rec.Current = &rel
			rec.Route = gateway.Route{Pools: []gateway.Pool{{Release: rel.Label, Targets: rel.Targets, Weight: 100}}}
			if err := d.store.Put(ctx, kindApp, app.Name, rec); err != nil {
				return err
			}
		}
		if _, err := d.setRoute(app.Name, rec.Route); err != nil {
			return fmt.Errorf("restore route of %s: %w", app.Name, err)
		}
	}
	return nil
}

// Resume carries on every deploy that was running when the server stopped,
// and the deploys whose contract waits.
func (d *Deployer) Resume(ctx context.Context) {
	go d.monitorWaiting(ctx)
	for _, app := range d.apps {
		rec, err := d.record(ctx, app.Name)
		if err != nil || rec.Deploy == "" {
			continue
		}
		dep, err := d.Get(ctx, rec.Deploy)
		if err != nil || dep.State != Running {
			continue
		}
		d.log.Info("resuming deploy", "app", app.Name, "deploy", dep.ID, "step", dep.next())
		go func() {
			if _, err := d.run(app, dep, nil); err != nil {
				d.log.Warn("resumed deploy failed", "app", app.Name, "deploy", dep.ID, "error", err)
			}
		}()
	}
}

func (d *Deployer) record(ctx context.Context, app string) (*Record, error) {
	rec := &Record{}
	if _, err := d.store.Get(ctx, kindApp, app, rec); err != nil {
		return nil, fmt.Errorf("load app %s: %w", app, err)
	}
	return rec, nil
}

// Record returns the stored record of an app.
func (d *Deployer) Record(ctx context.Context, app string) (*Record, error) {
	if d.apps.Get(app) == nil {
		return nil, &gateway.UnknownAppError{App: app}
	}
	return d.record(ctx, app)
}

// Running says whether rec's deploy is under way: recorded as running and
// not stalled (a process that restarted resumes it at start).
func (d *Deployer) Running(ctx context.Context, rec *Record) bool {
	if rec.Deploy == "" {
		return false
	}
	dep, err := d.Get(ctx, rec.Deploy)
	return err == nil && dep.State == Running
}

// Get loads a deploy by ID.
func (d *Deployer) Get(ctx context.Context, id string) (*Deploy, error) {
	dep := &Deploy{}
	ok, err := d.store.Get(ctx, kindDeploy, id, dep)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, Errorf(ErrNotFound, "no deploy %s", id)
	}
	d.liveDetail(dep)
	return d.overlay(dep), nil
}

// validate checks a request against the config before anything changes.
func (d *Deployer) validate(req *Request) (*config.App, error) {
	app := d.apps.Get(req.App)
	if app == nil {
		return nil, &gateway.UnknownAppError{App: req.App}
	}
	if req.Promote {
		return app, nil
	}
	if len(req.Targets) == 0 && req.Release == "" {
		return nil, badRequest("give --target HOST:PORT (external instances) or --release DIR (a release to run)")
	}
	if len(req.Targets) > 0 && req.Release != "" {
		return nil, badRequest("give either --target or --release, not both")
	}
	if len(req.Targets) > 0 && app.Supervised() {
		return nil, badRequest("app %s runs its own instances (command:): deploy it with --release DIR", app.Name)
	}
	if len(req.Targets) > 0 && app.Kind == config.KindWorker {
		return nil, badRequest("app %s is a worker: it has no targets, deploy it with --release", app.Name)
	}
	for _, t := range req.Targets {
		_, port, err := net.SplitHostPort(t)
		if _, perr := strconv.Atoi(port); err != nil || perr != nil {
			return nil, badRequest("target %q: want host:port", t)
		}
	}
	if req.Label != "" && !gateway.ValidRelease(req.Label) {
		return nil, badRequest("release label %q: use letters, digits, '.', '_' and '-'", req.Label)
	}
	switch req.Strategy {
	case "", All, Rolling:
	case Canary:
		switch {
		case len(app.Canary.Steps) > 0 && req.Percent != 0:
			return nil, badRequest("app %s's canary.steps give the shares of its canary (%v): --percent is not needed", app.Name, app.Canary.Steps)
		case len(app.Canary.Steps) == 0 && (req.Percent < 1 || req.Percent > 99):
			return nil, badRequest("a canary needs --percent between 1 and 99, got %d (or canary.steps in the config)", req.Percent)
		}
	default:
		return nil, badRequest("unknown strategy %q (want all, rolling or canary)", req.Strategy)
	}
	if req.Strategy != Canary && req.Percent != 0 {
		return nil, badRequest("--percent goes with --strategy canary")
	}
	return app, nil
}

// claim marks an app as having a deploy step running; it fails if one is.
func (d *Deployer) claim(app string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.halted {
		return Errorf(ErrUnavailable, "handoff is handing over to a new process; try again in a moment")
	}
	if d.active[app] {
		return Errorf(ErrConflict, "a deploy of %s is running; wait for it to finish", app)
	}
	d.active[app] = true
	d.runs.Add(1)
	return nil
}

func (d *Deployer) unclaim(app string) {
	d.mu.Lock()
	delete(d.active, app)
	d.mu.Unlock()
	d.runs.Done()
}

// event appends to the event log; a failure to log does not fail a deploy.
func (d *Deployer) event(app, kind, actor, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if _, err := d.store.Append(context.Background(), store.Event{App: app, Kind: kind, Actor: actor, Message: msg}); err != nil {
		d.log.Warn("append event", "error", err)
	}
	d.log.Info(msg, "app", app, "event", kind)
}

func now() time.Time { return time.Now().UTC() }
