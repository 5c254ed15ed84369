package deploy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/store"
)

// Start plans and runs a deploy, or promotes a canary when req.Promote is
// set. It returns when the deploy is done, failed (and rolled back), or
// waiting as a canary. progress, if not nil, hears of each step.
func (d *Deployer) Start(ctx context.Context, req Request, progress func(Progress)) (*Deploy, error) {
	app, err := d.validate(&req)
	if err != nil {
		return nil, err
	}
	if err := d.claim(app.Name); err != nil {
		return nil, err
	}
	claimed := true
	defer func() {
		if claimed {
			d.unclaim(app.Name)
		}
	}()
	rec, err := d.record(ctx, app.Name)
	if err != nil {
		return nil, err
	}
	var dep *Deploy
	if req.Promote {
		if dep, err = d.openCanary(ctx, rec, app.Name); err != nil {
			return nil, err
		}
		dep.Steps = append(dep.Steps, promoteSteps(dep, app)...)
		if len(dep.MigrationDirs) > 0 {
			dep.Steps = append(dep.Steps, step(StepCatchup, "", nil), step(StepContract, "", nil))
		}
		dep.State = Running
		d.event(app.Name, "deploy", req.Actor, "promote canary %s to all traffic", dep.To.Label)
	} else {
		if rec.Deploy != "" {
			if open, err := d.Get(ctx, rec.Deploy); err == nil && open.State == CanaryWait {
				return nil, Errorf(ErrConflict, "a canary of %s (%s) is open; promote it with --promote or undo it with 'handoff rollback %s'", app.Name, open.To.Label, app.Name)
			}
		}
		if open := d.unfinished(ctx, rec); open != nil {
			// A deploy that stopped short (its store write failed): the
			// same command takes it up where it stopped; another waits.
			if label, ok := labelOfRequest(req); !ok || label != open.To.Label {
				return nil, Errorf(ErrConflict, "deploy %s of %s (to %s) stopped at step %s and is not finished: deploy %s again to go on, or roll back with 'handoff rollback %s'",
					open.ID, app.Name, open.To.Label, labelOfStep(open.next()), open.To.Label, app.Name)
			}
			d.resumeStalled(open)
			d.event(app.Name, "deploy", req.Actor, "deploy %s resumed at step %s", open.ID, labelOfStep(open.next()))
			claimed = false
			return d.runClaimed(app, open, rec, progress)
		}
		to, err := d.release(ctx, rec, app, req)
		if err != nil {
			return nil, err
		}
		if dep, err = d.planPipeline(ctx, rec, app, req, to); err != nil {
			return nil, err
		}
		d.event(app.Name, "deploy", req.Actor, "deploy %s started: %s → %s (%s)", dep.ID, labelOf(dep.From), dep.To.Label, dep.Strategy)
	}
	claimed = false // runClaimed releases the claim
	return d.runClaimed(app, dep, rec, progress)
}

// openCanary finds the canary deploy waiting for a promote or rollback.
func (d *Deployer) openCanary(ctx context.Context, rec *Record, app string) (*Deploy, error) {
	if rec.Deploy != "" {
		if dep, err := d.Get(ctx, rec.Deploy); err == nil && dep.State == CanaryWait {
			return dep, nil
		}
	}
	return nil, Errorf(ErrConflict, "app %s has no canary to promote", app)
}

// RollbackOptions say how a rollback goes.
type RollbackOptions struct {
	Actor string
	// Strategy is how the previous release goes back; empty means as the
	// app deploys (rolling when it has several bricks).
	Strategy Strategy
	// Force rolls back past a release whose release command ran: the app's
	// own migrations usually only go forward.
	Force bool
}

// Rollback undoes an open canary or a deploy that stopped short, or
// deploys the previous release again.
func (d *Deployer) Rollback(ctx context.Context, appName string, o RollbackOptions, progress func(Progress)) (*Deploy, error) {
	actor, strategy := o.Actor, o.Strategy
	app := d.apps.Get(appName)
	if app == nil {
		return nil, &gateway.UnknownAppError{App: appName}
	}
	if err := d.claim(appName); err != nil {
		return nil, err
	}
	rec, err := d.record(ctx, appName)
	if err != nil {
		d.unclaim(appName)
		return nil, err
	}
	if dep, err := d.openCanary(ctx, rec, appName); err == nil {
		dep.Steps = append(dep.Steps, rollbackSteps(dep, app)...)
		dep.State = Running
		d.event(appName, "rollback", actor, "roll back canary %s: all traffic to %s", dep.To.Label, labelOf(dep.From))
		return d.runClaimed(app, dep, rec, progress)
	}
	if open := d.unfinished(ctx, rec); open != nil {
		// A deploy that stopped short (its store write failed): a rollback
		// undoes it, back to what served before it — not to the release
		// before that, its new instances left running.
		d.resumeStalled(open)
		for _, s := range open.Steps {
			if s.State == Running || s.State == Waiting {
				s.State, s.Finished, s.Detail = Failed, now(), "stopped short; rolled back by hand"
			}
		}
		open.RollingBack = true
		open.Steps = append(pendingless(open.Steps), rollbackSteps(open, app)...)
		d.event(appName, "rollback", actor, "roll back unfinished deploy %s: back to %s", open.ID, labelOf(open.From))
		return d.runClaimed(app, open, rec, progress)
	}
	if rec.Previous == nil {
		d.unclaim(appName)
		return nil, Errorf(ErrConflict, "app %s has no previous release to roll back to", appName)
	}
	if err := d.compatible(ctx, app, *rec.Previous); err != nil {
		d.unclaim(appName)
		return nil, err
	}
	if strategy != "" && strategy != All && strategy != Rolling {
		d.unclaim(appName)
		return nil, badRequest("a rollback's strategy is all or rolling, not %q", strategy)
	}
	if ran := d.releaseCommandRan(ctx, app, rec.Current); !ran.IsZero() && !o.Force {
		d.unclaim(appName)
		return nil, Errorf(ErrConflict, "the release command of %s ran at %s: the app's own migrations usually only go forward, so %s may not run on that schema; roll back with --force if it can",
			labelOf(rec.Current), ran.Format(time.RFC3339), rec.Previous.Label)
	}
	dep := d.plan(rec, app, Request{App: appName, Strategy: strategy}, *rec.Previous)
	dep.Rollback = true
	d.event(appName, "rollback", actor, "rollback %s started: %s → %s", dep.ID, labelOf(dep.From), dep.To.Label)
	return d.runClaimed(app, dep, rec, progress)
}

// run claims the app and runs dep from its first unfinished step.
func (d *Deployer) run(app *config.App, dep *Deploy, progress func(Progress)) (*Deploy, error) {
	if err := d.claim(app.Name); err != nil {
		return nil, err
	}
	rec, err := d.record(d.context(), app.Name)
	if err != nil {
		d.unclaim(app.Name)
		return nil, err
	}
	return d.runClaimed(app, dep, rec, progress)
}

// runClaimed runs dep's remaining steps, each persisted before and after it
// acts. The caller holds the app's claim; runClaimed releases it. When a
// step fails, the rest of the plan is replaced by one that puts the old
// release back, and the deploy ends failed with the old release serving.
func (d *Deployer) runClaimed(app *config.App, dep *Deploy, rec *Record, progress func(Progress)) (*Deploy, error) {
	defer d.unclaim(app.Name)
	ctx := d.context()
	tell := func(s *Step, msg string) {
		if progress != nil {
			p := Progress{Time: now(), Deploy: dep.ID, State: dep.State, Message: msg}
			if s != nil {
				p.Step, p.State = s.String(), s.State
			}
			progress(p)
		}
	}
	rec.Deploy = dep.ID
	if err := d.save(ctx, dep, rec); err != nil {
		return nil, d.stall(dep, nil, err)
	}
	for s := dep.next(); s != nil; s = dep.next() {
		waited := s.State == Waiting
		s.State, s.Started = Running, now()
		if !waited {
			if err := d.save(ctx, dep, rec); err != nil {
				return dep, d.stall(dep, s, err)
			}
			tell(s, "started")
		}
		err := d.act(ctx, app, dep, rec, s, progress)
		if err != nil && ctx.Err() != nil {
			// The server is stopping: leave the step running in the store;
			// the next server resumes it.
			return dep, Errorf(ErrInterrupted, "deploy %s interrupted at step %s: this handoff process stopped or handed over (%v); the next one finishes it", dep.ID, s, err)
		}
		var wait *errWaiting
		if errors.As(err, &wait) {
			return dep, d.wait(ctx, app, dep, rec, s, wait, waited, tell)
		}
		if err != nil {
			s.State, s.Finished, s.Detail = Failed, now(), err.Error()
			tell(s, err.Error())
			if dep.RollingBack {
				return dep, d.finish(ctx, app, dep, rec, fmt.Errorf("rolling back failed too: %w", err))
			}
			dep.Error = err.Error()
			if isMigration(s.Name) || s.Name == StepRelease {
				// The schema changes only add, or run once no old code is
				// left: whatever serves now can go on serving. Fix the cause
				// and run the same deploy again: it resumes.
				d.event(app.Name, "deploy", "", "deploy %s: step %s failed: %v; the release pipeline stops here", dep.ID, s, err)
				dep.Steps = pendingless(dep.Steps)
				return dep, d.finish(ctx, app, dep, rec, nil)
			}
			d.event(app.Name, "deploy", "", "deploy %s: step %s failed: %v; rolling back", dep.ID, s, err)
			dep.RollingBack = true
			dep.Steps = append(pendingless(dep.Steps), rollbackSteps(dep, app)...)
			continue
		}
		s.State, s.Finished = Done, now()
		if s.Name == StepCanary {
			// In the same write as the step's end: a deploy stored with
			// its canary done and still running would be finished as done
			// by the next process, its traffic left split.
			dep.State = CanaryWait
		}
		if err := d.save(ctx, dep, rec); err != nil {
			dep.State = Running
			return dep, d.stall(dep, s, err)
		}
		tell(s, s.Detail)
		if s.Name == StepCanary {
			d.event(app.Name, "deploy", "", "canary %s takes %d%% of new clients; promote with 'handoff deploy %s --promote'", dep.To.Label, dep.Percent, app.Name)
			tell(nil, "canary open")
			return dep, nil
		}
	}
	err := d.finish(ctx, app, dep, rec, nil)
	tell(nil, string(dep.State))
	return dep, err
}

// wait parks a deploy whose contract must wait: the claim is released (other
// deploys may run), and monitorWaiting takes it up again.
func (d *Deployer) wait(ctx context.Context, app *config.App, dep *Deploy, rec *Record, s *Step, why *errWaiting, again bool, tell func(*Step, string)) error {
	changed := s.Detail != why.Error()
	s.State, s.Detail = Waiting, why.Error()
	dep.State = Waiting
	if rec.Waiting != "" && rec.Waiting != dep.ID {
		d.supersede(ctx, rec.Waiting, dep.ID)
	}
	rec.Deploy, rec.Waiting = "", dep.ID
	if err := d.save(ctx, dep, rec); err != nil {
		return err
	}
	if changed || !again {
		d.event(app.Name, "deploy", "", "deploy %s: %s; the contract runs by itself once nothing it waits for is left", dep.ID, why.Error())
		tell(s, why.Error())
	}
	return nil
}

// supersede ends a waiting deploy that a newer deploy's contract replaces.
func (d *Deployer) supersede(ctx context.Context, id, by string) {
	old, err := d.Get(ctx, id)
	if err != nil || old.State != Waiting {
		return
	}
	old.State, old.Finished = Done, now()
	for _, s := range old.Steps {
		if s.State == Waiting {
			s.State, s.Detail = Done, "left to "+by
		}
	}
	if err := d.store.Put(ctx, kindDeploy, old.ID, old); err != nil {
		d.log.Warn("supersede waiting deploy", "deploy", id, "error", err)
	}
}

func isMigration(name StepName) bool {
	switch name {
	case StepExpand, StepBackfill, StepCatchup, StepContract:
		return true
	}
	return false
}

// pendingless drops the steps a failure made moot.
func pendingless(steps []*Step) []*Step {
	out := steps[:0:0]
	for _, s := range steps {
		if s.State != Pending {
			out = append(out, s)
		}
	}
	return out
}

// finish records how a deploy ended. A deploy whose step failed ends
// Failed (its rollback done, unless rollbackErr says otherwise).
func (d *Deployer) finish(ctx context.Context, app *config.App, dep *Deploy, rec *Record, rollbackErr error) error {
	dep.Finished = now()
	switch {
	case dep.Error != "":
		dep.State = Failed
	case hasStep(dep, StepRevert):
		dep.State = RolledBack
	default:
		dep.State = Done
	}
	if rollbackErr != nil {
		dep.Error += "; " + rollbackErr.Error()
	}
	rec.Deploy = ""
	if rec.Waiting == dep.ID {
		rec.Waiting = ""
	}
	if err := d.save(ctx, dep, rec); err != nil {
		return err
	}
	d.finished.WithLabelValues(app.Name, string(dep.State)).Inc()
	if dep.State == Failed {
		d.event(app.Name, "deploy", "", "deploy %s failed, %s serves %s: %s", dep.ID, labelOf(rec.Current), app.Name, dep.Error)
		return &FailedError{Deploy: dep.ID, Serving: labelOf(rec.Current), Err: errors.New(dep.Error)}
	}
	d.event(app.Name, "deploy", "", "deploy %s %s: %s serves %s", dep.ID, dep.State, labelOf(rec.Current), app.Name)
	d.cleanup(ctx, app, rec)
	return nil
}

func hasStep(dep *Deploy, name StepName) bool {
	for _, s := range dep.Steps {
		if s.Name == name {
			return true
		}
	}
	return false
}

// save writes the deploy and the app's record together: a restart never
// finds one ahead of the other.
func (d *Deployer) save(ctx context.Context, dep *Deploy, rec *Record) error {
	return d.store.PutAll(ctx, store.Put{Kind: kindDeploy, Key: dep.ID, Value: dep}, store.Put{Kind: kindApp, Key: dep.App, Value: rec})
}

func labelOf(r *Release) string {
	if r == nil {
		return "(nothing)"
	}
	return r.Label
}

func labelOfStep(s *Step) string {
	if s == nil {
		return "(none left)"
	}
	return s.String()
}
