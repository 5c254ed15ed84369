package deploy

import (
	"context"
	"strconv"

	"github.com/handoff-dev/handoff/internal/config"
)

// planPipeline plans a deploy with its release pipeline: the migrations the
// release carries run around the rollout. Deploying the current release
// again finishes its pipeline (after a failed migration step was fixed).
func (d *Deployer) planPipeline(ctx context.Context, rec *Record, app *config.App, req Request, to Release) (*Deploy, error) {
	if err := d.compatible(ctx, app, to); err != nil {
		return nil, err
	}
	if rec.Current != nil && rec.Current.Label == to.Label {
		dep := d.plan(rec, app, req, to)
		dep.From, dep.Strategy = rec.Previous, All
		steps, err := d.withPipeline(ctx, dep, nil, true)
		if err != nil {
			return nil, err
		}
		if len(steps) == 0 {
			rec.Seq--
			return nil, Errorf(ErrConflict, "release %s is already current and its migrations are done; give a new release another --label", to.Label)
		}
		dep.Steps = steps
		return dep, nil
	}
	dep := d.plan(rec, app, req, to)
	// A canary judged by its analysis promotes itself: the pipeline's
	// catch-up and contract follow it, as after any rollout.
	steps, err := d.withPipeline(ctx, dep, dep.Steps, dep.Strategy != Canary || len(app.Canary.Steps) > 0)
	if err != nil {
		rec.Seq--
		return nil, err
	}
	if d.releaseCommandDue(ctx, app, to) {
		steps = append([]*Step{step(StepRelease, to.Label, nil)}, steps...)
	}
	dep.Steps = steps
	return dep, nil
}

// plan lays out the steps of a new deploy of app from its current release to to.
func (d *Deployer) plan(rec *Record, app *config.App, req Request, to Release) *Deploy {
	rec.Seq++
	dep := &Deploy{
		ID: app.Name + "-" + strconv.Itoa(rec.Seq), App: app.Name, Strategy: req.Strategy, Percent: req.Percent,
		From: rec.Current, Prior: rec.Previous, To: to, State: Running, Started: now(),
	}
	switch {
	case !app.Supervised():
		dep.Steps = targetPlan(dep, app)
	case app.Kind == config.KindWorker:
		dep.Strategy = All
		dep.Steps = workerPlan(dep)
	default:
		dep.Steps = releasePlan(dep, app)
	}
	return dep
}

func step(name StepName, release string, indexes []int) *Step {
	return &Step{Name: name, Release: release, Indexes: indexes, State: Pending}
}

// targetPlan: external instances have no bricks: check, then one switch
// (or a canary), then drain.
func targetPlan(dep *Deploy, app *config.App) []*Step {
	if dep.Strategy == "" || dep.Strategy == Rolling {
		dep.Strategy = All
	}
	steps := []*Step{step(StepCheck, dep.To.Label, nil)}
	if dep.Strategy == Canary && dep.From != nil {
		return append(steps, canarySteps(dep, app)...)
	}
	return append(steps, step(StepSwitch, "", nil), step(StepDrain, "", nil))
}

// releasePlan: supervised instances, all at once, brick by brick, or as a canary.
func releasePlan(dep *Deploy, app *config.App) []*Step {
	if dep.Strategy == "" {
		dep.Strategy = All
		if app.BrickCount() > 1 {
			dep.Strategy = Rolling
		}
	}
	to := dep.To.Label
	if dep.From == nil { // the first release: nothing to replace
		if dep.Strategy != Rolling {
			dep.Strategy = All // a canary of nothing is the whole release
			return []*Step{step(StepStart, to, nil), step(StepCheck, to, nil), step(StepSwitch, "", nil)}
		}
		// Brick by brick all the same: an app whose instances warm up on
		// the database should not start them all at once.
		var steps []*Step
		for b := range app.BrickCount() {
			idx := app.IndexesOf(b)
			for _, s := range []*Step{step(StepStart, to, idx), step(StepCheck, to, idx), step(StepShift, "", nil)} {
				s.Brick = b + 1
				steps = append(steps, s)
			}
		}
		return steps
	}
	from := dep.From.Label
	switch dep.Strategy {
	case Canary:
		return append([]*Step{step(StepStart, to, nil), step(StepCheck, to, nil)}, canarySteps(dep, app)...)
	case Rolling:
		var steps []*Step
		bricks := app.BrickCount()
		for b := range bricks {
			idx, stopIdx := app.IndexesOf(b), app.IndexesOf(b)
			if b == bricks-1 {
				stopIdx = nil // the last brick also takes any old instance beyond today's count
			}
			brick := []*Step{step(StepStart, to, idx), step(StepCheck, to, idx), step(StepShift, "", nil)}
			if app.Canary.Bricks && b < bricks-1 {
				// Judged while the old release still serves beside it,
				// before the old brick goes.
				brick = append(brick, step(StepAnalysis, "", nil))
			}
			brick = append(brick, step(StepDrain, "", nil), step(StepStop, from, stopIdx))
			for _, s := range brick {
				s.Brick = b + 1
				steps = append(steps, s)
			}
		}
		return steps
	}
	return []*Step{step(StepStart, to, nil), step(StepCheck, to, nil), step(StepSwitch, "", nil), step(StepDrain, "", nil), step(StepStop, from, nil)}
}

// workerPlan: new workers first, then the old ones are asked to finish.
// Workers get no traffic: the switch only makes the new release current.
func workerPlan(dep *Deploy) []*Step {
	to := dep.To.Label
	steps := []*Step{step(StepStart, to, nil), step(StepCheck, to, nil), step(StepSwitch, "", nil)}
	if dep.From != nil {
		steps = append(steps, step(StepStop, dep.From.Label, nil))
	}
	return steps
}

// promoteSteps finish an open canary.
func promoteSteps(dep *Deploy, app *config.App) []*Step {
	steps := []*Step{step(StepSwitch, "", nil), step(StepDrain, "", nil)}
	if app.Supervised() {
		steps = append(steps, step(StepStop, dep.From.Label, nil))
	}
	return steps
}

// rollbackSteps put the old release back: its instances all running again
// (a rolling deploy may have stopped some), all traffic on it, the new
// release drained and stopped.
func rollbackSteps(dep *Deploy, app *config.App) []*Step {
	if dep.From == nil {
		if app.Supervised() {
			// A first deploy brick by brick may have routed traffic to
			// its first bricks: the route empties before they stop.
			return []*Step{step(StepRevert, "", nil), step(StepDrain, "", nil), step(StepStop, dep.To.Label, nil)}
		}
		return nil
	}
	if !app.Supervised() {
		return []*Step{step(StepRevert, "", nil), step(StepDrain, "", nil)}
	}
	if app.Kind == config.KindWorker {
		return []*Step{step(StepRevert, "", nil), step(StepStop, dep.To.Label, nil)}
	}
	from := dep.From.Label
	return []*Step{
		step(StepStart, from, nil), step(StepCheck, from, nil),
		step(StepRevert, "", nil), step(StepDrain, "", nil), step(StepStop, dep.To.Label, nil),
	}
}

// canarySteps: an open canary that waits for --promote, or, when the app
// has an analysis (canary.steps), one analysis step per share of new
// clients and then the promotion, all by itself.
func canarySteps(dep *Deploy, app *config.App) []*Step {
	if len(app.Canary.Steps) == 0 {
		return []*Step{step(StepCanary, "", nil)}
	}
	var steps []*Step
	for _, pct := range app.Canary.Steps {
		s := step(StepAnalysis, "", nil)
		s.Percent = pct
		steps = append(steps, s)
	}
	return append(steps, promoteSteps(dep, app)...)
}
