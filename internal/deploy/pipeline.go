package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/dialect"
	"github.com/handoff-dev/handoff/internal/evolve"
	"github.com/handoff-dev/handoff/internal/migrate"
	"github.com/handoff-dev/handoff/internal/supervisor"
)

// The steps of the release pipeline around a rollout: the schema grows
// before the new code runs (expand, backfill), rows the old code wrote
// meanwhile are caught up after, and what only the old code needed is
// removed once no old code runs anywhere (contract).
const (
	StepExpand   StepName = "expand"
	StepBackfill StepName = "backfill"
	StepCatchup  StepName = "catchup"
	StepContract StepName = "contract"
)

// Waiting is the state of a deploy whose contract waits for instances and
// workers of older releases to be gone; it goes on by itself.
const Waiting State = "waiting"

// BackfillProgress is a backfill's progress, carried by Progress.
type BackfillProgress struct {
	Migration  string  `json:"migration"`
	Run        int     `json:"run"`
	Batch      int     `json:"batch"`
	Rows       int64   `json:"rows"`
	Total      int64   `json:"total"`
	Percent    float64 `json:"percent"`
	RowsPerSec float64 `json:"rows_per_sec"`
	ETASeconds float64 `json:"eta_seconds"`
}

// migrationDirs are where a release's migrations are: its own migrations/
// directory when it carries one, else the config's database.migrations.
func (d *Deployer) migrationDirs(rel Release) []string {
	if d.db.URL == "" {
		return nil
	}
	if rel.Dir != "" {
		if own := filepath.Join(rel.Dir, "migrations"); isDir(own) {
			return []string{own}
		}
	}
	if isDir(d.db.Migrations) {
		return []string{d.db.Migrations}
	}
	return nil
}

func isDir(path string) bool {
	fi, err := os.Stat(path)
	return path != "" && err == nil && fi.IsDir()
}

// carried names the migrations in dirs: what a release includes. Bad files
// are an error naming file and line, before anything changes.
func carried(dirs []string) ([]string, error) {
	if len(dirs) == 0 {
		return nil, nil
	}
	ms, err := migrate.Load(dirs...)
	if err != nil {
		return nil, badRequest("%v", err)
	}
	names := []string{}
	for _, m := range ms {
		names = append(names, m.Name)
	}
	return names, nil
}

// migrator opens the database with a deploy's migrations.
func (d *Deployer) migrator(ctx context.Context, dep *Deploy, progress func(migrate.Event)) (*migrate.Migrator, error) {
	o := migrate.ConfigOptions(d.db)
	o.Dirs, o.Release, o.Progress, o.AppliedBy = dep.MigrationDirs, dep.To.Dir, progress, "handoff deploy "+dep.ID
	o.Escalate, o.EscalateHold = d.escalate(), d.db.Escalate.D()
	if d.liveSignal != nil {
		o.Live = d.liveSignal()
	}
	return migrate.Open(ctx, d.db.URL, o)
}

// escalate lets a DDL statement that keeps losing its lock to live traffic
// take it: the gateway holds new requests to the HTTP apps that use the
// database for a moment, at most database.escalate (docs/migrations.md).
// Nil when that is off, or when no such app takes traffic.
func (d *Deployer) escalate() func(context.Context, time.Duration) (func(), error) {
	var apps []string
	for _, a := range d.apps {
		if a.Kind == config.KindHTTP && a.UsesDatabase {
			apps = append(apps, a.Name)
		}
	}
	if d.db.Escalate.D() <= 0 || d.gw == nil || len(apps) == 0 {
		return nil
	}
	return func(ctx context.Context, hold time.Duration) (func(), error) {
		return d.gw.QuiesceApps(ctx, apps, hold)
	}
}

// withPipeline wraps a rollout plan in the migration steps, when the
// release carries migrations with a phase still to run: expand and backfill
// before it, and (with tail; a canary adds them at its promotion) the
// catch-up and the contract after it.
func (d *Deployer) withPipeline(ctx context.Context, dep *Deploy, rollout []*Step, tail bool) ([]*Step, error) {
	dirs := d.migrationDirs(dep.To)
	if len(dirs) == 0 {
		return rollout, nil
	}
	dep.MigrationDirs = dirs
	m, err := d.migrator(ctx, dep, nil)
	if err != nil {
		return nil, fmt.Errorf("open the database for the release's migrations: %w", err)
	}
	defer m.Close()
	st, err := m.Status(ctx)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(st, func(s migrate.MigrationStatus) bool { return len(s.Pending) > 0 }) {
		return rollout, nil
	}
	steps := []*Step{step(StepExpand, "", nil), step(StepBackfill, "", nil)}
	steps = append(steps, rollout...)
	if tail {
		steps = append(steps, step(StepCatchup, "", nil), step(StepContract, "", nil))
	}
	return steps, nil
}

// runMigrations runs one migration step, one at a time per server.
func (d *Deployer) runMigrations(ctx context.Context, dep *Deploy, s *Step, report func(Progress)) error {
	d.migrating.Lock()
	defer d.migrating.Unlock()
	return d.migrateStep(ctx, dep, s, report)
}

// migrateStep runs one migration step; d.migrating is held.
func (d *Deployer) migrateStep(ctx context.Context, dep *Deploy, s *Step, report func(Progress)) error {
	var last time.Time
	var waits lockWait
	defer d.setLive(dep.ID, "")
	m, err := d.migrator(ctx, dep, func(e migrate.Event) {
		if e.Kind == migrate.EventLockRetry {
			d.lockRetries.WithLabelValues(dep.App).Inc()
			if msg := waits.note(e); msg != "" {
				d.setLive(dep.ID, msg)
				if report != nil {
					report(Progress{Time: now(), Deploy: dep.ID, Step: s.String(), State: Running, Message: msg})
				}
			}
			return
		}
		if e.Kind == migrate.EventEscalate {
			msg := migrate.EscalationMessage(e)
			d.event(dep.App, "migration", "", "deploy %s: %s", dep.ID, msg)
			if report != nil {
				report(Progress{Time: now(), Deploy: dep.ID, Step: s.String(), State: Running, Message: msg})
			}
			return
		}
		if e.Kind != migrate.EventBackfill || e.Backfill == nil || report == nil {
			return
		}
		if b := e.Backfill; b.Kind == evolve.EventBatch && time.Since(last) >= 250*time.Millisecond || b.Kind == evolve.EventDone {
			last = time.Now()
			report(Progress{Time: now(), Deploy: dep.ID, Step: s.String(), State: Running, Message: "backfill",
				Backfill: &BackfillProgress{Migration: e.Migration, Run: b.Run, Batch: b.Batch, Rows: b.Rows, Total: b.Total, Percent: b.Percent, RowsPerSec: b.Rate, ETASeconds: b.ETA.Seconds()}})
		}
	})
	if err != nil {
		return err
	}
	defer m.Close()
	if dialect.IsPostgres(d.db.URL) {
		db := m.Dialect().DB()
		waits.mu.Lock()
		waits.blocker = func() string { return oldestTransaction(db) }
		waits.mu.Unlock()
	}
	before, _ := m.Status(ctx)
	switch s.Name {
	case StepExpand:
		err = m.Expand(ctx)
	case StepBackfill, StepCatchup:
		err = m.Backfill(ctx)
	case StepContract:
		err = m.Contract(ctx)
	}
	after, _ := m.Status(ctx)
	s.Detail = ranPhases(before, after)
	if w := waits.summary(); w != "" {
		s.Detail = strings.TrimPrefix(s.Detail+"; "+w, "; ")
	}
	if err == nil && s.Detail != "" {
		d.event(dep.App, "migration", "", "deploy %s: %s", dep.ID, s.Detail)
	}
	return err
}

// ranPhases says which phases went from pending to done.
func ranPhases(before, after []migrate.MigrationStatus) string {
	var out []string
	for i, a := range after {
		if i >= len(before) {
			break
		}
		for j, p := range a.Phases {
			if j < len(before[i].Phases) && before[i].Phases[j].State != migrate.PhaseDone && p.State == migrate.PhaseDone {
				out = append(out, fmt.Sprintf("%s %s", p.Phase, a.Name))
			}
		}
	}
	if len(out) == 0 {
		return ""
	}
	return "ran " + strings.Join(out, ", ")
}

// errWaiting says a contract must wait; Blockers say for whom.
type errWaiting struct{ blockers []string }

func (e *errWaiting) Error() string {
	return "contract waits for " + strings.Join(e.blockers, ", ")
}

// contract runs the contract step once nothing runs a release without the
// migrations to contract, and the soak time after that has passed.
func (d *Deployer) contract(ctx context.Context, dep *Deploy, s *Step, report func(Progress)) error {
	d.migrating.Lock()
	defer d.migrating.Unlock()
	m, err := d.migrator(ctx, dep, nil)
	if err != nil {
		return err
	}
	st, err := m.Status(ctx)
	m.Close()
	if err != nil {
		return err
	}
	var pending []string
	for _, ms := range st {
		if slices.Contains(ms.Pending, migrate.Contract) {
			pending = append(pending, ms.Name)
		}
	}
	if len(pending) == 0 {
		s.Detail = "nothing to contract"
		return nil
	}
	blockers, err := d.ContractBlockers(ctx, pending)
	if err != nil {
		return err
	}
	if len(blockers) > 0 {
		s.Until = time.Time{}
		return &errWaiting{blockers}
	}
	if soak := d.db.Soak.D(); soak > 0 {
		if s.Until.IsZero() {
			s.Until = now().Add(soak)
		}
		if now().Before(s.Until) {
			return &errWaiting{[]string{"the soak time, until " + s.Until.Local().Format(time.TimeOnly)}}
		}
	}
	return d.migrateStep(ctx, dep, s, report)
}

// ContractBlockers names every instance and worker (of an app that uses the
// database) that runs a release without all of the given migrations — what
// a contract of them must wait for: this node's, and on a node of a fleet
// the other nodes' (a lost node among them, since what it runs is not
// known).
func (d *Deployer) ContractBlockers(ctx context.Context, migrations []string) ([]string, error) {
	includes := func(app, label string) (bool, error) {
		var r ReleaseRecord
		ok, err := d.store.Get(ctx, kindRelease, app+"/"+label, &r)
		if err != nil || !ok {
			return false, err
		}
		for _, m := range migrations {
			if !slices.Contains(r.Migrations, m) {
				return false, nil
			}
		}
		return true, nil
	}
	var blockers []string
	for _, app := range d.apps {
		if !app.UsesDatabase {
			continue
		}
		if !app.Supervised() {
			rec, err := d.record(ctx, app.Name)
			if err != nil || rec.Current == nil {
				continue
			}
			if ok, err := includes(app.Name, rec.Current.Label); err != nil {
				return nil, err
			} else if !ok {
				blockers = append(blockers, fmt.Sprintf("app %s (release %s)", app.Name, rec.Current.Label))
			}
			continue
		}
		for _, inst := range d.sup.List(app.Name) {
			ok, err := includes(app.Name, inst.Release)
			if err != nil {
				return nil, err
			}
			if !ok {
				blockers = append(blockers, describe(inst))
			}
		}
	}
	d.mu.Lock()
	others := d.fleetBlockers
	d.mu.Unlock()
	if others != nil {
		blockers = append(blockers, others(ctx, migrations)...)
	}
	return blockers, nil
}

func describe(inst supervisor.Instance) string {
	if inst.State == supervisor.StateDraining {
		return fmt.Sprintf("%s (release %s, draining since %s)", inst.ID, inst.Release, inst.DrainingSince.Local().Format(time.TimeOnly))
	}
	return fmt.Sprintf("%s (release %s, %s)", inst.ID, inst.Release, inst.State)
}

// monitorWaiting goes on with deploys whose contract waits, as soon as
// what they wait for is gone.
func (d *Deployer) monitorWaiting(ctx context.Context) {
	timer := time.NewTimer(time.Second)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		for _, app := range d.apps {
			rec, err := d.record(ctx, app.Name)
			if err != nil || rec.Waiting == "" {
				continue
			}
			dep, err := d.Get(ctx, rec.Waiting)
			if err != nil || dep.State != Waiting {
				continue
			}
			if err := d.claim(app.Name); err != nil {
				continue // a deploy runs; try again later
			}
			if _, err := d.runClaimed(app, dep, rec, nil); err != nil && !errors.Is(err, ErrFailed) {
				d.log.Warn("waiting deploy", "deploy", dep.ID, "error", err)
			}
		}
		timer.Reset(time.Second)
	}
}

// compatible refuses a release (a rollback, or a deploy of an old one) that
// lacks a migration whose contract has run: the old code would meet a
// schema without what it needs.
func (d *Deployer) compatible(ctx context.Context, app *config.App, prev Release) error {
	if d.db.URL == "" || !app.UsesDatabase {
		return nil
	}
	var r ReleaseRecord
	if _, err := d.store.Get(ctx, kindRelease, app.Name+"/"+prev.Label, &r); err != nil {
		return err
	}
	o := migrate.ConfigOptions(d.db)
	o.Dirs = d.migrationDirs(prev)
	m, err := migrate.Open(ctx, d.db.URL, o)
	if err != nil {
		return fmt.Errorf("check the database before a rollback: %w", err)
	}
	defer m.Close()
	st, err := m.Status(ctx)
	if err != nil {
		return err
	}
	for _, ms := range st {
		for _, p := range ms.Phases {
			if p.Phase == migrate.Contract && p.State == migrate.PhaseDone && !slices.Contains(r.Migrations, ms.Name) {
				return Errorf(ErrConflict, "release %s does not include migration %s, whose contract phase has run: %s would not work with the database as it is now; deploy a release that includes it", prev.Label, ms.Name, prev.Label)
			}
		}
	}
	return nil
}
