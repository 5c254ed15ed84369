// Package supervisor runs an app's instances and workers as processes:
// it starts one instance of a release on a port it chose, restarts a crashed
// one in the same slot with exponential backoff and reports a crash loop,
// stops and drains, and — after handoff itself was restarted, killed or
// upgraded — adopts the processes a previous handoff process started.
//
// Every process is started in its own process group (so that handoff's
// death or a Ctrl-C on its terminal does not take it along), writes to a log
// file it holds open itself (so logging survives handoff), and carries
// HANDOFF_NODE and HANDOFF_INSTANCE in its environment (so that a restarted
// handoff finds it in /proc even if it never learnt its PID). Every
// instance's record is written to the store before its process is started
// or signalled, so that a handoff killed at any step leaves nothing running
// that a restarted one does not know about, and nothing is started twice.
//
// Lifecycle: Open (adopts what is there), then Start, Stop, Drain, Kill and
// Wait as deploys need them, then one of two ends. Detach leaves every
// process running for the next Open: `handoff upgrade` (the old process
// detaches; the new one's Open waits for that, through a lock in LogDir),
// and a `handoff serve` that should come back to a running app. StopAll
// drains the workers and stops the rest: a `handoff serve` that takes the
// app down with it. Note that a service manager may kill the instances
// itself: systemd's default KillMode=control-group kills every process of
// the unit's cgroup when handoff stops, process group or not; to let
// instances outlive a `systemctl restart handoff`, the unit needs
// KillMode=process.
//
// Linux only: it reads /proc and uses pidfd_open(2).
package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/store"
)

// The store kind of instance records, and the event kinds the supervisor
// appends to the event log.
const (
	KindInstance   = "instance"
	EventInstance  = "instance"  // started, exited, restarted, adopted, stopped, drained, killed
	EventCrashLoop = "crashloop" // an instance entered or left a crash loop
)

// Errors a caller decides on.
var (
	// ErrNotFound: no instance with that ID is supervised (an instance
	// that was stopped or drained is gone once it has exited).
	ErrNotFound = errors.New("no such instance")
	// ErrExists: Start was given the ID of an instance that is being
	// stopped or drained, or that runs another spec.
	ErrExists = errors.New("instance exists")
	// ErrDetached: the Supervisor was detached; a new one supervises.
	ErrDetached = errors.New("supervisor detached")
)

// Options configure a Supervisor. LogDir and Node are required; every
// other field has a default.
type Options struct {
	// LogDir holds one directory per app with one log file per instance,
	// and the lock that keeps a second Supervisor of the node out.
	LogDir string
	// Node names this handoff installation (the caller derives it from the
	// state path, say). Every process carries it as HANDOFF_NODE; a
	// restarted handoff adopts the node's processes it knows and kills the
	// ones it does not, and leaves every other node's alone.
	Node   string
	Logger *slog.Logger
	// BackoffMin is the delay before the first restart of a crashed
	// instance; it doubles with each crash up to BackoffMax (100ms, 30s).
	BackoffMin, BackoffMax time.Duration
	// StableAfter is how long a process must stay up for its instance's
	// backoff and crash count to start over (30s).
	StableAfter time.Duration
	// CrashLoop crashes within CrashLoopWindow put an instance in
	// StateCrashLoop (5 in 2m).
	CrashLoop       int
	CrashLoopWindow time.Duration
	// OrphanGrace is how long an orphan (a process of this node that no
	// record knows) has to exit after SIGTERM before SIGKILL (10s).
	OrphanGrace time.Duration
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.BackoffMin, 100*time.Millisecond)
	def(&o.BackoffMax, 30*time.Second)
	def(&o.StableAfter, 30*time.Second)
	def(&o.CrashLoopWindow, 2*time.Minute)
	def(&o.OrphanGrace, 10*time.Second)
	if o.CrashLoop <= 0 {
		o.CrashLoop = 5
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// storeTimeout bounds one write of a record or an event.
const storeTimeout = 10 * time.Second

// Supervisor runs and watches the instances of one node. Its methods are
// safe for concurrent use. Each instance has one goroutine (its monitor)
// that owns its record and is the only one to write it, start its process
// or signal it; the methods ask the monitor and read the copy it publishes.
type Supervisor struct {
	store store.Store
	opts  Options
	env   *osEnv
	log   *slog.Logger
	lock  *os.File

	// ctx ends with Detach: monitors stop, processes stay.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // monitors and pidfd watchers

	mu       sync.Mutex
	slots    map[string]*slot // by instance ID
	ports    map[int]string   // ports held by instances, running or not
	detached bool
}

// slot is one supervised instance as the rest of the Supervisor sees it.
type slot struct {
	cmds chan command
	// gone is closed when the instance has exited after a stop or drain
	// and its record is deleted; final is its last state.
	gone  chan struct{}
	final Instance
	view  Instance // the monitor's last published copy, under Supervisor.mu
}

// Open returns the Supervisor of opts.Node, having adopted what a previous
// handoff process left: it takes the node's lock (waiting, until ctx is
// done, for another Supervisor of the node — the old process during
// `handoff upgrade` — to Detach), reads the node's instance records, finds
// each instance's live process by PID and start time or else by its
// HANDOFF_INSTANCE in /proc, and watches it through a pidfd; it restarts the
// instances whose process is gone, finishes the stops and drains that were
// under way, and kills the node's orphans (SIGTERM, then SIGKILL after
// OrphanGrace). It returns when every instance has a process or is in
// backoff.
func Open(ctx context.Context, st store.Store, opts Options) (*Supervisor, error) {
	return open(ctx, st, opts, stdEnv())
}

func open(ctx context.Context, st store.Store, opts Options, env *osEnv) (*Supervisor, error) {
	opts = opts.withDefaults()
	if opts.Node == "" || opts.LogDir == "" {
		return nil, errors.New("open supervisor: Options.Node and Options.LogDir are required")
	}
	if err := os.MkdirAll(opts.LogDir, 0o750); err != nil {
		return nil, fmt.Errorf("open supervisor: %w", err)
	}
	lock, err := lockDir(ctx, opts.LogDir)
	if err != nil {
		return nil, fmt.Errorf("open supervisor: %w", err)
	}
	s := &Supervisor{
		store: st, opts: opts, env: env, log: opts.Logger.With("node", opts.Node), lock: lock,
		slots: map[string]*slot{}, ports: map[int]string{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.restore(ctx); err != nil {
		return nil, errors.Join(fmt.Errorf("open supervisor: %w", err), s.Detach(context.WithoutCancel(ctx)))
	}
	return s, nil
}

// lockDir takes an exclusive flock on dir/supervisor.lock, retrying until
// ctx is done. The kernel drops the lock when its holder dies, even by
// SIGKILL, so a stale lock cannot outlive a crash.
func lockDir(ctx context.Context, dir string) (*os.File, error) {
	path := filepath.Join(dir, "supervisor.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, errors.Join(fmt.Errorf("lock %s: another handoff process supervises this node: %w", path, ctx.Err()), f.Close())
		case <-t.C:
		}
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, errors.Join(fmt.Errorf("lock %s: %w", path, err), f.Close())
		}
		t.Reset(50 * time.Millisecond)
	}
}

// Detach stops supervising without signalling any process: monitors end,
// nothing is restarted, records stay as they are, and the node's lock is
// released so that another Supervisor can Open and adopt everything. It is
// what `handoff upgrade` does before the new process takes over, and what
// `handoff serve` does on a stop that should leave the app running.
// A child this Supervisor started keeps one goroutine blocked in wait(2),
// which reaps it if it exits while this process lives; the goroutine ends
// with the child. Methods called after Detach return ErrDetached.
func (s *Supervisor) Detach(ctx context.Context) error {
	s.mu.Lock()
	if s.detached {
		s.mu.Unlock()
		return nil
	}
	s.detached = true
	s.mu.Unlock()
	s.cancel()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		// Keep the lock while a monitor still runs: a second Supervisor
		// must not start what it may be starting. It goes once they end,
		// so that this process (an upgrade that gave up) or another can
		// take the instances after all.
		go func() { <-done; s.lock.Close() }()
		return fmt.Errorf("detach supervisor: %w", ctx.Err())
	}
	if err := s.lock.Close(); err != nil {
		return fmt.Errorf("detach supervisor: unlock: %w", err)
	}
	return nil
}

// Start starts one instance of spec and returns it running (its process
// started, not necessarily ready: the caller checks health). For an http
// spec it picks a free 127.0.0.1 port, given as PORT. The record is written
// before the process starts and again with its PID; if either write or the
// start fails, nothing is left running and the error is returned. Start is
// idempotent: for an instance that exists with the same spec (one a
// restarted handoff adopted, say) it returns that instance; for one that
// runs another spec, or is stopping, it returns ErrExists. The sequence is
// not abandoned when ctx is cancelled: it is short, and half-done is what
// it must never be.
func (s *Supervisor) Start(ctx context.Context, spec Spec) (Instance, error) {
	spec = spec.withDefaults()
	id := spec.ID()
	// The record outlives this process and its working directory.
	if dir, err := filepath.Abs(spec.Dir); err == nil && spec.Dir != "" {
		spec.Dir = dir
	}
	if err := spec.validate(); err != nil {
		return Instance{}, fmt.Errorf("start %s: %w", id, err)
	}
	s.mu.Lock()
	if s.detached {
		s.mu.Unlock()
		return Instance{}, fmt.Errorf("start %s: %w", id, ErrDetached)
	}
	if sl := s.slots[id]; sl != nil {
		view := sl.view.clone()
		s.mu.Unlock()
		if sameSpec(view.Spec, spec) && !view.State.ending() {
			return view, nil
		}
		return view, fmt.Errorf("start %s: %w (%s)", id, ErrExists, view.State)
	}
	port := 0
	if spec.Kind != config.KindWorker { // http and tcp instances listen on PORT
		var err error
		if port, err = s.freePort(); err != nil {
			s.mu.Unlock()
			return Instance{}, fmt.Errorf("start %s: %w", id, err)
		}
	}
	now := time.Now().UTC()
	inst := Instance{
		Spec: spec, ID: id, Node: s.opts.Node, Port: port, State: StateStarting, Since: now, Created: now,
		Log: filepath.Join(s.opts.LogDir, safeName(spec.App), id+".log"),
	}
	sl := s.addSlot(inst)
	s.wg.Add(1)
	s.mu.Unlock()

	m := s.newMonitor(sl, inst)
	first := make(chan error, 1)
	go m.run(s.ctx, func() bool {
		err := m.start(context.WithoutCancel(ctx))
		first <- err
		return err == nil
	})
	if err := <-first; err != nil {
		return Instance{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return sl.view.clone(), nil
}

// addSlot registers an instance; s.mu is held.
func (s *Supervisor) addSlot(inst Instance) *slot {
	sl := &slot{cmds: make(chan command), gone: make(chan struct{}), view: inst}
	s.slots[inst.ID] = sl
	if inst.Port != 0 {
		s.ports[inst.Port] = inst.ID
	}
	return sl
}

// removeSlot forgets an instance that is gone and wakes its waiters.
func (s *Supervisor) removeSlot(sl *slot, final Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.slots, final.ID)
	if s.ports[final.Port] == final.ID {
		delete(s.ports, final.Port)
	}
	sl.view, sl.final = final, final
	close(sl.gone)
}

// freePort asks the kernel for a free port and skips the ports of this
// node's instances, which a crashed instance in backoff holds without a
// listener. Another program may still take the port before the instance
// binds it; the instance then crashes and shows as such. s.mu is held.
func (s *Supervisor) freePort() (int, error) {
	for range 20 {
		ln, err := s.env.listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("pick a port: %w", err)
		}
		_, p, _ := strings.Cut(ln.Addr().String(), ":")
		if err := ln.Close(); err != nil {
			return 0, fmt.Errorf("pick a port: %w", err)
		}
		port, err := strconv.Atoi(p)
		if err != nil {
			return 0, fmt.Errorf("pick a port: %w", err)
		}
		if _, held := s.ports[port]; !held {
			return port, nil
		}
	}
	return 0, errors.New("pick a port: the kernel keeps offering ports that instances hold")
}

// Get returns the instance with that ID.
func (s *Supervisor) Get(id string) (Instance, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sl := s.slots[id]
	if sl == nil {
		return Instance{}, fmt.Errorf("get %s: %w", id, ErrNotFound)
	}
	return sl.view.clone(), nil
}

// List returns the instances of app (of every app when app is ""), by ID.
func (s *Supervisor) List(app string) []Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Instance
	for _, sl := range s.slots {
		if app == "" || sl.view.App == app {
			out = append(out, sl.view.clone())
		}
	}
	slices.SortFunc(out, func(a, b Instance) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// InUse returns the release directories that an instance runs from or will
// be restarted in — including a draining worker's. A release directory in
// it must not be deleted.
func (s *Supervisor) InUse() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	dirs := map[string]bool{}
	for _, sl := range s.slots {
		dirs[sl.view.Dir] = true
	}
	return dirs
}

// Logs returns the log files of app's instances, past and present, by name:
// what `handoff logs APP` follows. A file keeps growing across restarts of
// its instance.
func (s *Supervisor) Logs(app string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(s.opts.LogDir, safeName(app), "*.log"))
	if err != nil {
		return nil, fmt.Errorf("list logs of %s: %w", app, err)
	}
	return files, nil
}

// key is the store key of an instance: several nodes may share a store.
func (s *Supervisor) key(id string) string { return s.opts.Node + "/" + id }

// event appends to the event log and logs the same line.
func (s *Supervisor) event(inst Instance, kind, format string, args ...any) {
	msg := inst.ID + ": " + fmt.Sprintf(format, args...)
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if _, err := s.store.Append(ctx, store.Event{App: inst.App, Kind: kind, Actor: "supervisor", Message: msg}); err != nil {
		s.log.Warn("append event", "error", err)
	}
	level := slog.LevelInfo
	if kind == EventCrashLoop {
		level = slog.LevelError
	}
	s.log.Log(ctx, level, msg, "app", inst.App, "instance", inst.ID, "event", kind)
}

// LogFile is the path of a log of the app's that is not an instance's (a
// release command's), beside its instances' logs: `handoff logs` shows it.
func (s *Supervisor) LogFile(app, name string) string {
	return filepath.Join(s.opts.LogDir, safeName(app), safeName(name)+".log")
}
