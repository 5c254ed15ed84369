// Package migrate applies migration files to an application's live
// database in phases: expand (additive DDL, safe for the running release),
// backfill (a batched data change run by package evolve) and contract
// (removing what only the old release needed). DDL runs under a short lock
// timeout and is retried, statements that cannot run in a transaction run
// outside one, a history table records each phase, and a lint flags
// statements that would block live traffic. See docs/migrations.md.
package migrate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
	"github.com/handoff-dev/handoff/internal/evolve"
)

// Options configure a Migrator. Zero values take the defaults.
type Options struct {
	// Dirs are the migration directories, merged by file name.
	Dirs []string
	// LockTimeout bounds every lock wait of a DDL statement (default 100 ms).
	LockTimeout time.Duration
	// DDLRetryFor is how long a statement is retried on lock conflicts
	// before the phase fails (default 10 minutes).
	DDLRetryFor time.Duration
	// Backfill is the base of every backfill's settings, before the
	// marker's options (default evolve.DefaultSettings with LockTimeout).
	Backfill *evolve.Settings
	// Override is applied after the marker's options: the operator's word
	// on the command line wins over the file's.
	Override func(*evolve.Settings)
	// Live is the live requests' latency at the gateway, for the adaptive
	// throttle of the backfills (under handoff serve); nil elsewhere.
	Live evolve.LiveSignal
	// Release is the working directory of command backfills.
	Release string
	// Allow waives lint findings: a rule name, FILE:LINE, or FILE:LINE:RULE.
	Allow []string
	// Progress receives events; it may be nil. Calls are serialized.
	Progress func(Event)
	// AppliedBy is recorded in the history (default user@host).
	AppliedBy string
	// Escalate, when set, is called when a DDL statement keeps losing its
	// lock to other sessions (escalate.go): it holds new live requests for
	// at most hold and returns once none is in flight, or fails; the
	// statement's next attempt runs before release is called.
	Escalate func(ctx context.Context, hold time.Duration) (release func(), err error)
	// EscalateHold bounds each escalation's hold (default 500 ms).
	EscalateHold time.Duration
}

// Migrator applies one set of migrations to one database.
type Migrator struct {
	d      dialect.Dialect
	ms     []*Migration
	hist   history
	opts   Options
	emitMu sync.Mutex // serializes calls of opts.Progress
}

// ErrBackfillUnfinished is returned by Contract for a migration whose
// backfill has not completed a full pass.
var ErrBackfillUnfinished = errors.New("backfill unfinished")

// Open loads the migrations of opts.Dirs and opens the database at url
// (postgres://…, sqlite://path or a file path). Bad migration files are an
// error naming each file and line; nothing is written.
func Open(ctx context.Context, url string, opts Options) (*Migrator, error) {
	opts = opts.withDefaults()
	ms, err := Load(opts.Dirs...)
	if err != nil {
		return nil, err
	}
	d, err := dialect.Open(ctx, url, opts.LockTimeout)
	if err != nil {
		return nil, err
	}
	m := &Migrator{d: d, ms: ms, hist: history{d}, opts: opts}
	if err := m.hist.ensure(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return m, nil
}

func (o Options) withDefaults() Options {
	if o.LockTimeout <= 0 {
		o.LockTimeout = 100 * time.Millisecond
	}
	if o.DDLRetryFor <= 0 {
		o.DDLRetryFor = 10 * time.Minute
	}
	if o.Backfill == nil {
		s := evolve.DefaultSettings()
		s.LockTimeout = 0
		o.Backfill = &s
	}
	if o.Backfill.LockTimeout <= 0 {
		s := *o.Backfill // the caller's copy stays as it was
		s.LockTimeout = o.LockTimeout
		o.Backfill = &s
	}
	if o.AppliedBy == "" {
		o.AppliedBy = whoami()
	}
	if o.EscalateHold <= 0 {
		o.EscalateHold = defaultEscalateHold
	}
	return o
}

// Close closes the database.
func (m *Migrator) Close() error { return m.d.Close() }

// Dialect is the database the migrator works on, for evolve's control calls.
func (m *Migrator) Dialect() dialect.Dialect { return m.d }

// Migrations are the loaded migrations, in order.
func (m *Migrator) Migrations() []*Migration { return m.ms }

// Up runs expand, backfill and contract of every pending migration.
func (m *Migrator) Up(ctx context.Context) error {
	for _, f := range []func(context.Context) error{m.Expand, m.Backfill, m.Contract} {
		if err := f(ctx); err != nil {
			return err
		}
	}
	return nil
}

// Expand runs the expand phase of every migration whose expand has not
// run, in order. It first checks every pending statement's syntax and the
// lint, and refuses to change anything if either finds a problem.
func (m *Migrator) Expand(ctx context.Context) error {
	return m.exclusive(ctx, func() error { return m.expand(ctx) })
}

func (m *Migrator) expand(ctx context.Context) error {
	hist, err := m.preflight(ctx)
	if err != nil {
		return err
	}
	for _, mig := range m.ms {
		if err := m.phase(ctx, mig, Expand, hist); err != nil {
			return err
		}
	}
	return nil
}

// forward loads the verified history for a phase that goes forward, and
// refuses while a migration's rollback has begun and not finished (a
// finished one forgets the migration's history): its expand is half
// undone, and a phase that took it for done would run on what is left —
// finishing the rollback comes first.
func (m *Migrator) forward(ctx context.Context) (map[string]map[Phase]*applied, error) {
	hist, err := m.verified(ctx)
	if err != nil {
		return nil, err
	}
	for _, mig := range m.ms {
		if a := hist[mig.Name][Rollback]; a != nil {
			return nil, &FileError{File: mig.Path, Msg: fmt.Sprintf("its rollback began and did not finish (stopped after statement %d): its expand is half undone; run 'handoff migrate rollback %s' to finish it", a.Step, mig.Name)}
		}
	}
	return hist, nil
}

// Backfill runs the backfill of every expanded, not yet contracted
// migration: an unfinished one resumes; a finished one covers only the
// keys added since (rows an old release wrote meanwhile), which is cheap.
func (m *Migrator) Backfill(ctx context.Context) error {
	hist, err := m.forward(ctx)
	if err != nil {
		return err
	}
	for _, mig := range m.ms {
		if !mig.Has(Backfill) || !expanded(hist, mig) || done(hist, mig, Contract) {
			continue
		}
		if err := m.backfill(ctx, mig, false); err != nil {
			return err
		}
	}
	return nil
}

// Contract runs the contract phase of every expanded migration in order.
// It refuses (ErrBackfillUnfinished) while a migration's backfill has not
// finished a full pass, and first covers keys added since that pass.
func (m *Migrator) Contract(ctx context.Context) error {
	return m.exclusive(ctx, func() error { return m.contract(ctx) })
}

func (m *Migrator) contract(ctx context.Context) error {
	hist, err := m.preflight(ctx)
	if err != nil {
		return err
	}
	for _, mig := range m.ms {
		if !expanded(hist, mig) || !mig.Has(Contract) || done(hist, mig, Contract) {
			continue
		}
		if mig.Has(Backfill) {
			ok, err := evolve.Finished(ctx, m.d, mig.Name)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("contract %s: %w; run 'handoff migrate backfill' first", mig.Name, ErrBackfillUnfinished)
			}
			// The catch-up walks every key, not only those above the last
			// pass: a row an open transaction inserted below the walk, and
			// committed after it went by, is still to do, and the contract
			// may drop what it was to be filled from.
			if err := m.backfill(ctx, mig, true); err != nil {
				return err
			}
			if err := m.verify(ctx, mig); err != nil {
				return err
			}
		}
		if err := m.phase(ctx, mig, Contract, hist); err != nil {
			return err
		}
	}
	return nil
}

// BackfillFinished reports whether the named migration's backfill has
// completed a full pass; a migration without a backfill phase is finished.
func (m *Migrator) BackfillFinished(ctx context.Context, name string) (bool, error) {
	mig := m.find(name)
	if mig == nil {
		return false, fmt.Errorf("backfill status: no migration %s", name)
	}
	if !mig.Has(Backfill) {
		return true, nil
	}
	return evolve.Finished(ctx, m.d, name)
}

// Rollback undoes the expand of the named migration (or, for "", of the
// latest one expanded and not contracted) by running its rollback phase,
// then forgets its history and its backfill's checkpoint, so that it is
// pending again.
func (m *Migrator) Rollback(ctx context.Context, name string) error {
	return m.exclusive(ctx, func() error { return m.rollback(ctx, name) })
}

func (m *Migrator) rollback(ctx context.Context, name string) error {
	hist, err := m.verified(ctx)
	if err != nil {
		return err
	}
	mig, err := m.rollbackTarget(name, hist)
	if err != nil {
		return err
	}
	if !mig.Has(Rollback) {
		return &FileError{File: mig.Path, Msg: "has no -- handoff:rollback phase; write one to undo its expand"}
	}
	if err := m.phase(ctx, mig, Rollback, hist); err != nil {
		return err
	}
	if err := evolve.Forget(ctx, m.d, mig.Name); err != nil {
		return err
	}
	return m.hist.forget(ctx, mig.Name)
}

func (m *Migrator) rollbackTarget(name string, hist map[string]map[Phase]*applied) (*Migration, error) {
	for i := len(m.ms) - 1; i >= 0; i-- {
		mig := m.ms[i]
		if name != "" && mig.Name != name {
			continue
		}
		if done(hist, mig, Contract) {
			return nil, fmt.Errorf("roll back %s: its contract phase has run; what it removed is gone", mig.Name)
		}
		if hist[mig.Name][Expand] != nil {
			return mig, nil
		}
		if name != "" {
			return nil, fmt.Errorf("roll back %s: it has not been expanded", name)
		}
	}
	if name != "" {
		return nil, fmt.Errorf("roll back: no migration %s", name)
	}
	return nil, errors.New("roll back: no migration is expanded and not contracted")
}

func (m *Migrator) find(name string) *Migration {
	for _, mig := range m.ms {
		if mig.Name == name {
			return mig
		}
	}
	return nil
}

// expanded reports whether mig's expand has run; a migration without one
// (a standalone backfill) counts as expanded.
func expanded(hist map[string]map[Phase]*applied, mig *Migration) bool {
	return !mig.Has(Expand) || done(hist, mig, Expand)
}

func done(hist map[string]map[Phase]*applied, mig *Migration, p Phase) bool {
	a := hist[mig.Name][p]
	return a != nil && a.State == stateDone
}

// verified loads the history and checks that no applied phase was edited.
func (m *Migrator) verified(ctx context.Context) (map[string]map[Phase]*applied, error) {
	hist, err := m.history(ctx)
	if err != nil {
		return nil, err
	}
	return hist, verify(m.ms, hist)
}

// history loads the history with each backfill's state read from its one
// record, evolve's: done once it has finished a full pass.
func (m *Migrator) history(ctx context.Context) (map[string]map[Phase]*applied, error) {
	hist, err := m.hist.load(ctx)
	if err != nil {
		return nil, err
	}
	finished, err := evolve.FinishedAll(ctx, m.d)
	if err != nil {
		return nil, err
	}
	for name, phases := range hist {
		if a := phases[Backfill]; a != nil {
			a.State, a.FinishedAt = stateRunning, time.Time{}
			if at, ok := finished[name]; ok {
				a.State, a.FinishedAt = stateDone, at
			}
		}
	}
	return hist, nil
}

// phase runs one DDL phase of mig unless the history says it is done.
func (m *Migrator) phase(ctx context.Context, mig *Migration, p Phase, hist map[string]map[Phase]*applied) error {
	s := mig.Sections[p]
	if s == nil || done(hist, mig, p) {
		return nil
	}
	step, resumed := 0, false
	if a := hist[mig.Name][p]; a != nil {
		step, resumed = a.Step, true
	}
	return m.runPhase(ctx, mig, s, step, resumed)
}

// backfill runs the evolve job of mig and records the phase in the
// history; fromStart walks every key (evolve.Job.FromStart).
func (m *Migrator) backfill(ctx context.Context, mig *Migration, fromStart bool) error {
	s := mig.Sections[Backfill]
	if err := m.hist.begin(ctx, m.d.DB(), mig, s, m.opts.AppliedBy); err != nil {
		return fmt.Errorf("record backfill of %s: %w", mig.Name, err)
	}
	job := m.job(mig)
	job.FromStart = fromStart
	_, err := evolve.Run(ctx, m.d, job, func(e evolve.Event) {
		m.emit(Event{Kind: EventBackfill, Migration: mig.Name, Phase: Backfill, File: mig.Path, Line: s.Line, Backfill: &e})
	})
	if err != nil {
		return fmt.Errorf("backfill %s: %w", mig.Name, err)
	}
	return nil // evolve recorded the finish; the history does not say it again
}

// job turns a backfill section into an evolve job.
func (m *Migrator) job(mig *Migration) evolve.Job {
	s := mig.Sections[Backfill]
	b := s.Backfill
	settings := b.Settings(*m.opts.Backfill)
	if m.opts.Override != nil {
		m.opts.Override(&settings)
	}
	j := evolve.Job{Name: mig.Name, Table: b.Table, Key: b.Key, Range: b.Range, Command: b.Command, Dir: m.opts.Release, Settings: settings,
		Live: m.opts.Live}
	for _, st := range s.Statements {
		j.Statements = append(j.Statements, st.Bind(m.d.Param))
	}
	return j
}
