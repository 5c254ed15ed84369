package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/supervisor"
)

// act performs one step.
func (d *Deployer) act(ctx context.Context, app *config.App, dep *Deploy, rec *Record, s *Step, report func(Progress)) error {
	// A new instance that crashed since the deploy began stops it: roll
	// back. Not once the plan rolls back already (a canary rolled back by
	// hand: its crashing instances are what is being undone).
	if !dep.RollingBack && !hasStep(dep, StepRevert) && app.Supervised() && s.Name != StepStart && s.Name != StepRelease && !isMigration(s.Name) {
		if err := d.crashed(app, dep.To.Label, nil, dep.Started); err != nil {
			return err
		}
	}
	switch s.Name {
	case StepRelease:
		return d.runReleaseCommand(ctx, app, dep, s, report)
	case StepStart:
		return d.startInstances(ctx, app, dep.release(s.Release), s)
	case StepCheck:
		if !app.Supervised() {
			return waitHealthy(ctx, app, dep.To.Targets)
		}
		return d.checkInstances(ctx, app, s.Release, s.Indexes, dep.Started)
	case StepAnalysis:
		return d.analyze(ctx, app, dep, rec, s, report)
	case StepCanary:
		return d.apply(ctx, app.Name, rec, d.canaryRoute(app, dep, dep.Percent))
	case StepSwitch:
		d.promote(rec, dep)
		if app.Kind == config.KindWorker {
			return d.store.Put(ctx, kindApp, app.Name, rec)
		}
		return d.apply(ctx, app.Name, rec, gateway.Route{Pools: nonEmpty(gateway.Pool{Release: dep.To.Label, Targets: d.members(app, dep.To, nil), Weight: 100})})
	case StepShift:
		d.promote(rec, dep)
		moved := func(i int) bool { return app.BrickOf(i) < s.Brick }
		next := d.members(app, dep.To, moved)
		if dep.From == nil { // a first deploy, brick by brick: nothing to shift from
			return d.apply(ctx, app.Name, rec, gateway.Route{Pools: nonEmpty(gateway.Pool{Release: dep.To.Label, Targets: next, Weight: len(next)})})
		}
		old := d.members(app, *dep.From, func(i int) bool { return !moved(i) })
		return d.apply(ctx, app.Name, rec, gateway.Route{Pools: nonEmpty(
			gateway.Pool{Release: dep.From.Label, Targets: old, Weight: len(old)},
			gateway.Pool{Release: dep.To.Label, Targets: next, Weight: len(next)},
		)})
	case StepRevert:
		rec.Current, rec.Previous = dep.From, dep.Prior
		if app.Kind == config.KindWorker {
			return d.store.Put(ctx, kindApp, app.Name, rec)
		}
		if dep.From == nil { // a first deploy: back to no route at all
			return d.apply(ctx, app.Name, rec, gateway.Route{})
		}
		return d.apply(ctx, app.Name, rec, gateway.Route{Pools: nonEmpty(gateway.Pool{Release: dep.From.Label, Targets: d.members(app, *dep.From, nil), Weight: 100})})
	case StepDrain:
		return d.drain(ctx, app, s)
	case StepStop:
		return d.stopInstances(ctx, app, s)
	case StepExpand, StepBackfill, StepCatchup:
		return d.runMigrations(ctx, dep, s, report)
	case StepContract:
		return d.contract(ctx, dep, s, report)
	}
	return fmt.Errorf("unknown step %q", s.Name)
}

// release returns the deploy's release of that label.
func (dep *Deploy) release(label string) Release {
	if dep.From != nil && dep.From.Label == label {
		return *dep.From
	}
	return dep.To
}

// promote makes the deploy's new release the app's current one.
func (d *Deployer) promote(rec *Record, dep *Deploy) {
	if rec.Current == nil || rec.Current.Label != dep.To.Label {
		rec.Previous, rec.Current = rec.Current, &dep.To
	}
}

func nonEmpty(pools ...gateway.Pool) []gateway.Pool {
	var out []gateway.Pool
	for _, p := range pools {
		if len(p.Targets) > 0 {
			out = append(out, p)
		}
	}
	return out
}

// apply stores a route, then gives it to the gateway: written before it
// takes effect, so a restart serves what was last promised.
func (d *Deployer) apply(ctx context.Context, app string, rec *Record, route gateway.Route) error {
	rec.Route = route
	if err := d.store.Put(ctx, kindApp, app, rec); err != nil {
		return err
	}
	drain, err := d.setRoute(app, route)
	if err != nil {
		return err
	}
	d.mu.Lock()
	d.drains[app] = drain
	d.mu.Unlock()
	return nil
}

// members lists a release's instance addresses in the slots that in accepts
// (all when nil): its targets for external instances, else its supervised
// instances that are not on their way out.
func (d *Deployer) members(app *config.App, rel Release, in func(int) bool) []string {
	if !app.Supervised() {
		return rel.Targets
	}
	var out []string
	for _, inst := range d.instances(app.Name, rel.Label) {
		if in == nil || in(inst.Index) {
			out = append(out, inst.Addr())
		}
	}
	return out
}

// instances lists an app's live instances of a release, by slot.
func (d *Deployer) instances(app, release string) []supervisor.Instance {
	var out []supervisor.Instance
	for _, inst := range d.sup.List(app) {
		if inst.Release == release && inst.State != supervisor.StateDraining && inst.State != supervisor.StateStopping && inst.State != supervisor.StateExited {
			out = append(out, inst)
		}
	}
	slices.SortFunc(out, func(a, b supervisor.Instance) int { return a.Index - b.Index })
	return out
}

// slots returns the step's instance slots: its own, or all of the app's.
func slots(app *config.App, indexes []int) []int {
	if indexes != nil {
		return indexes
	}
	all := make([]int, app.Instances)
	for i := range all {
		all[i] = i
	}
	return all
}

// startInstances starts the release's instances in the step's slots. An
// instance that already runs this release in a slot (a step resumed after
// a restart) is kept, never started twice.
func (d *Deployer) startInstances(ctx context.Context, app *config.App, rel Release, s *Step) error {
	var started []string
	for _, i := range slots(app, s.Indexes) {
		inst, err := d.sup.Start(ctx, supervisor.Spec{
			App: app.Name, Release: rel.Label, Dir: rel.Dir, Command: app.Command, Env: app.Env, Kind: app.Kind,
			Index: i, Brick: app.BrickOf(i) + 1, Stop: app.Stop, Drain: app.Drain,
		})
		if err != nil {
			return fmt.Errorf("start instance %d of %s: %w", i, rel.Label, err)
		}
		started = append(started, inst.ID)
	}
	s.Detail = "started " + strings.Join(started, ", ")
	return nil
}

// checkInstances waits until the release's instances in the given slots
// pass their health check (workers: stay up a moment), failing at once if
// one of them crashes (after since, the deploy's start).
func (d *Deployer) checkInstances(ctx context.Context, app *config.App, release string, indexes []int, since time.Time) error {
	ctx, cancel := context.WithTimeout(ctx, app.StartTimeout.D())
	defer cancel()
	want := slots(app, indexes)
	healthy := map[int]bool{}
	settle := time.Now().Add(time.Second) // a worker that lives this long has started
	poll := 2 * time.Millisecond
	for {
		if err := d.crashed(app, release, want, since); err != nil {
			return err
		}
		byIndex := map[int]supervisor.Instance{}
		for _, inst := range d.instances(app.Name, release) {
			byIndex[inst.Index] = inst
		}
		var last error
		for _, i := range want {
			inst, ok := byIndex[i]
			switch {
			case healthy[i]:
			case !ok:
				last = fmt.Errorf("instance %d of %s is not running", i, release)
			case app.Kind == config.KindWorker:
				if time.Now().After(settle) && inst.State == supervisor.StateRunning {
					healthy[i] = true
				}
			default:
				if last = check(ctx, app, inst.Addr()); last == nil {
					healthy[i] = true
				}
			}
		}
		if len(healthy) == len(want) {
			return nil
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("%w within start_timeout (%s): %v", gateway.ErrNeverHealthy, app.StartTimeout, last)
			}
			return ctx.Err()
		case <-time.After(poll):
		}
		poll = min(poll*2, 100*time.Millisecond) // a quick app is ready in milliseconds; a slow one in seconds
	}
}

// crashed reports an instance of the release (in the given slots, or any)
// that crashed after since (the deploy's start: it was restarted since, or
// waits to be) or crashes over and over: a deploy does not go on with it.
// A crash from before the deploy does not count: a rollback goes back to
// instances that have run for days, and one of them restarted once last
// week is as good as the others.
func (d *Deployer) crashed(app *config.App, release string, indexes []int, since time.Time) error {
	for _, inst := range d.sup.List(app.Name) {
		if inst.Release != release || (indexes != nil && !slices.Contains(indexes, inst.Index)) {
			continue
		}
		if inst.Restarts > 0 && inst.Started.After(since) || inst.State == supervisor.StateBackoff || inst.State == supervisor.StateCrashLoop {
			return fmt.Errorf("instance %s crashed (%s); see 'handoff logs %s'", inst.ID, inst.LastExit, app.Name)
		}
	}
	return nil
}

// drain waits for the gateway's drain of the targets the last route change
// replaced.
func (d *Deployer) drain(ctx context.Context, app *config.App, s *Step) error {
	d.mu.Lock()
	drain := d.drains[app.Name]
	delete(d.drains, app.Name)
	d.mu.Unlock()
	if drain == nil {
		// Resumed after a restart: this process never routed to the old
		// targets. A previous handoff process (an upgrade) may still be
		// finishing requests on them: give it until the drain timeout.
		return d.waitPredecessor(ctx, app.DrainTimeout.D())
	}
	rep, err := drain.Wait(ctx)
	if err != nil {
		return err
	}
	if app.Kind == config.KindTCP {
		// The handoff process this one took over from may still carry
		// connections to the replaced targets: they are its to finish.
		if err := d.waitPredecessor(ctx, app.DrainTimeout.D()-rep.Duration); err != nil {
			return err
		}
	}
	s.Detail = fmt.Sprintf("drained %d targets in %s", len(rep.Targets), rep.Duration.Round(time.Millisecond))
	if rep.GoneAway > 0 {
		s.Detail += fmt.Sprintf("; %d WebSockets still open at drain_timeout were asked to reconnect", rep.GoneAway)
	}
	if rep.Cut > 0 {
		s.Detail += fmt.Sprintf("; %d connections still busy at drain_timeout were closed", rep.Cut)
	}
	return nil
}

// stopInstances stops the release's instances in the step's slots: HTTP
// instances (drained already) get their stop signal and are waited for;
// workers get their drain signal and finish their jobs in their own time,
// their release kept on disk until they exit.
func (d *Deployer) stopInstances(ctx context.Context, app *config.App, s *Step) error {
	var mu sync.Mutex
	var errs []error
	var ids []string
	var wg sync.WaitGroup
	for _, inst := range d.sup.List(app.Name) {
		if inst.Release != s.Release || (s.Indexes != nil && !slices.Contains(s.Indexes, inst.Index)) {
			continue
		}
		ids = append(ids, inst.ID)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if app.Kind == config.KindWorker {
				_, err = d.sup.Drain(ctx, inst.ID)
			} else {
				_, err = d.sup.Stop(ctx, inst.ID)
			}
			if err != nil && !errors.Is(err, supervisor.ErrNotFound) {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(ids)
	verb := "stopped"
	if app.Kind == config.KindWorker {
		verb = "asked to finish their jobs and exit:"
	}
	if len(ids) > 0 {
		s.Detail = verb + " " + strings.Join(ids, ", ")
	}
	return errors.Join(errs...)
}
