package switchover

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/handoff-dev/handoff/internal/migrate"
)

// Migrate on a copy (seed 001: "snapshot the live volume, put the live
// site in read-only mode, run your migrations on a copy, swap the migrated
// copy in — and if it goes south, revert to the old one"): `handoff db
// switchover NAME --to URL --migrate DIR [--window 10m]`.
//
// The replica is the copy. Under the window's deadline: the gateway's
// read-only mode goes on for every app (writes get 503 + Retry-After, reads
// go on), in-flight requests finish, the endpoint pauses only while the old
// primary is fenced (so that no read transaction is cut), the replica
// catches up and is detached (promoted, or its subscription dropped with
// the sequences copied), the migrations of DIR run on it — all of them,
// contract included: with the site read-only no old code writes, so there
// is nothing for the expand/contract split to protect — then the endpoint
// moves to it and read-only goes off.
//
// The point of no return is the move of the endpoint, not the promotion:
// until the endpoint moves, nothing but the migrations has written to the
// copy and the old primary is untouched, so any failure or the window's
// deadline reverts — the endpoint stays on the old server, the old server
// is unfenced, read-only goes off — and the copy is left as it is (promoted
// and perhaps half-migrated: it must be rebuilt before another try). Every
// step is journaled before it acts; RecoverCopy reverts or finishes after
// a crash by the same rule.

// ReadOnly is the gateway's read-only mode for every app.
type ReadOnly interface {
	// On switches read-only on; it ends by itself after d, a safety net
	// should handoff stay down (Retry-After tells clients the same).
	On(ctx context.Context, d time.Duration) error
	// Off switches it off.
	Off(ctx context.Context) error
}

// Window bounds.
const (
	// DefaultWindow is how long the site may stay read-only for a
	// migrate-on-copy: minutes of DDL on a copy, not hours.
	DefaultWindow = 10 * time.Minute
	// MaxWindow caps --window: longer is a maintenance, better announced.
	MaxWindow = 2 * time.Hour
	// readOnlyMargin is added to the window for the read-only mode's own
	// end, so that the revert (which switches it off) comes first.
	readOnlyMargin = time.Minute
)

// CopyOptions are a migrate-on-copy's settings: a switchover's, plus the
// migrations and the window. Deadline bounds the start (holding in-flight
// requests, fencing); Window bounds everything until the endpoint moves.
type CopyOptions struct {
	Options
	Dir      string        // the migrations to run on the copy
	Window   time.Duration // 0: DefaultWindow
	ReadOnly ReadOnly
	// Migrate is the base of the migrator's options (the config's
	// database section); Dirs and Allow are set by RunCopy.
	Migrate migrate.Options
}

// copyRebuild says, in a reverted migrate-on-copy's error, what must be
// done with the copy.
func copyRebuild(to string) string {
	return fmt.Sprintf("the copy %s is left as it is (detached from the old primary, perhaps half-migrated): rebuild it as a replica before trying again", to)
}

// RunCopy runs a migrate-on-copy of pair's primary onto its replica. It
// returns the final record; an *Error says whether it was refused (nothing
// changed) or reverted.
func RunCopy(ctx context.Context, pair Pair, o CopyOptions) (Record, error) {
	if o.Window == 0 {
		o.Window = DefaultWindow
	}
	if o.Deadline == 0 {
		o.Deadline = DefaultDeadline
	}
	refuse := func(err error) (Record, error) {
		return Record{Name: o.Name}, &Error{Copy: true, Step: Checking, Err: err}
	}
	switch {
	case o.Window < 0 || o.Window > MaxWindow:
		return refuse(fmt.Errorf("--window %v: must be more than 0 and at most %v", o.Window, MaxWindow))
	case o.Deadline < 0 || o.Deadline > MaxDeadline:
		return refuse(fmt.Errorf("deadline %v: must be more than 0 and at most %v", o.Deadline, MaxDeadline))
	case o.ReadOnly == nil:
		return refuse(errors.New("a migrate-on-copy needs the gateway's read-only mode: without it the app's writes would fail on the fenced primary"))
	case o.Reverse:
		return refuse(errors.New("--reverse and --migrate do not go together: the migrated copy's schema differs from the old primary's"))
	case pair.Kind() == "mysql-gtid":
		return refuse(errors.New("--migrate: handoff's migrations run on Postgres (and SQLite), not on MySQL/MariaDB; run yours on the copy by hand, then switch over without --migrate"))
	case o.Journal != nil && (o.From == "" || o.To == ""):
		return refuse(errors.New("the servers' URLs are needed in the record, to recover after a crash"))
	}
	// Bad migration files are refused here, before anything changes.
	ms, err := migrate.Load(o.Dir)
	if err != nil {
		return refuse(fmt.Errorf("--migrate %s: %w", o.Dir, err))
	}
	if len(ms) == 0 {
		return refuse(fmt.Errorf("--migrate %s: no migration files there", o.Dir))
	}
	// Postgres's grammar checks every statement now, before the window;
	// this also pays the parser's start-up (seconds: it is compiled on
	// first use) outside it. The other lint rules are waived (migrate).
	if fs := migrate.Lint(ms, "postgres", lintWaived(false)); len(fs) > 0 {
		errs := make([]error, len(fs))
		for i, f := range fs {
			errs[i] = f
		}
		return refuse(fmt.Errorf("--migrate %s: %w", o.Dir, errors.Join(errs...)))
	}
	if o.Log == nil {
		o.Log = defaultLog()
	}
	from, to := pair.Addrs()
	r := &run{pair: pair, o: o.Options, rec: Record{Name: o.Name, Node: o.Node, Kind: pair.Kind(), From: o.From, To: o.To,
		FromAddr: from, ToAddr: to, Deadline: o.Deadline, Started: time.Now(), Migrate: o.Dir, Window: o.Window}}
	if pp, ok := pair.(*pgPair); ok && pp.logical {
		r.rec.Subscription, r.rec.Slot = pp.sub, pp.slot
	}
	if err := r.check(ctx); err != nil {
		return r.rec, &Error{Copy: true, Step: Checking, Err: err}
	}
	c := &copyRun{run: r, o: o}
	if err := c.record(ctx, ReadOnlyOn); err != nil {
		return r.rec, &Error{Copy: true, Step: Checking, Err: err}
	}
	wctx, cancel := context.WithTimeoutCause(ctx, o.Window, fmt.Errorf("window %v passed", o.Window))
	defer cancel()
	if err := c.window(wctx); err != nil {
		step := r.rec.Step
		if cause := context.Cause(wctx); cause != nil && wctx.Err() != nil && errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w (%w)", cause, err)
		}
		err = fmt.Errorf("%w; %s", err, copyRebuild(to))
		if rerr := c.revert(ctx, err); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return r.rec, &Error{Copy: true, Step: step, RolledBack: true, Err: err}
	}
	fctx, fcancel := context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
	defer fcancel()
	if err := finishCopy(fctx, r.rec, o.Endpoint, o.ReadOnly, c.record); err != nil {
		r.rec.Error = err.Error()
		return r.rec, fmt.Errorf("migrate-on-copy past the move of the endpoint: %w", err)
	}
	return r.rec, nil
}

type copyRun struct {
	*run
	o        CopyOptions
	readOnly bool
}

// window runs the steps before the point of no return under wctx.
func (c *copyRun) window(wctx context.Context) error {
	c.readOnly = true // recorded at read-only: a mode half-switched is switched off too
	if err := c.o.ReadOnly.On(wctx, c.o.Window+readOnlyMargin); err != nil {
		return fmt.Errorf("switch read-only on: %w", err)
	}
	// In-flight requests (writes admitted before read-only) finish, and
	// the endpoint has no transaction open, within the short deadline:
	// then the fence cuts nothing.
	hctx, cancel := context.WithTimeoutCause(wctx, c.o.Deadline, fmt.Errorf("deadline %v passed", c.o.Deadline))
	defer cancel()
	if c.o.Gate != nil {
		release, err := c.o.Gate.Hold(hctx)
		if err != nil {
			return fmt.Errorf("wait for in-flight HTTP requests: %w", err)
		}
		// New requests meet read-only now, but the hold is kept until the
		// fence is done (resumeAll, milliseconds): on a fleet it also
		// keeps the other nodes' endpoints paused across the fence, so
		// that no read transaction there is cut by it.
		c.release = release
	}
	if c.o.Endpoint != nil {
		c.paused = true
		if err := c.o.Endpoint.Pause(hctx); err != nil {
			return fmt.Errorf("pause the database endpoint: %w", err)
		}
	}
	if err := c.record(hctx, Fencing); err != nil {
		return err
	}
	c.fenced = true
	if err := c.pair.Fence(hctx); err != nil {
		return fmt.Errorf("fence the old primary: %w", err)
	}
	// Reads go on against the fenced old primary for the whole window.
	c.resumeAll()
	if err := c.record(wctx, CatchingUp); err != nil {
		return err
	}
	if err := catchUp(wctx, c.pair); err != nil {
		return err
	}
	if err := c.pair.Prepare(wctx); err != nil {
		return fmt.Errorf("prepare the copy: %w", err)
	}
	if err := c.record(wctx, Promoting); err != nil {
		return err
	}
	if err := c.pair.Promote(wctx); err != nil {
		return fmt.Errorf("detach the copy: %w", err)
	}
	if err := c.record(wctx, Migrating); err != nil {
		return err
	}
	if err := c.migrate(wctx); err != nil {
		return err
	}
	return wctx.Err()
}

// migrate runs every pending migration of the directory on the copy,
// expand, backfill and contract, as `handoff migrate up` does. The lint's
// rules are waived: they flag statements that would block live traffic,
// and no live traffic reaches the copy.
func (c *copyRun) migrate(ctx context.Context) error {
	opts := c.o.Migrate
	opts.Dirs = []string{c.o.Dir}
	opts.Allow = append(append([]string(nil), opts.Allow...), lintWaived(true)...)
	if opts.Progress == nil {
		opts.Progress = func(e migrate.Event) {
			if e.Kind == migrate.EventPhaseDone {
				c.o.Log.Info("migrate-on-copy: phase done", "db", c.o.Name, "migration", e.Migration, "phase", string(e.Phase))
			}
		}
	}
	m, err := migrate.Open(ctx, c.o.To, opts)
	if err != nil {
		return fmt.Errorf("open the copy for the migrations: %w", err)
	}
	defer m.Close()
	if err := m.Up(ctx); err != nil {
		return fmt.Errorf("migrations of %s on the copy: %w", c.o.Dir, err)
	}
	return nil
}

// lintWaived is every lint rule but, unless withSyntax, the grammar's:
// the rules flag what would block live traffic, and none reaches the copy.
func lintWaived(withSyntax bool) []string {
	var out []string
	for _, r := range migrate.LintRules {
		if r != "syntax" || withSyntax {
			out = append(out, r)
		}
	}
	return out
}

// revert undoes a migrate-on-copy before the endpoint moved: the old
// primary writable, the endpoint on it, read-only off. The copy is not
// touched.
func (c *copyRun) revert(ctx context.Context, cause error) error {
	return c.rollback(ctx, cause, func(ctx context.Context) error {
		if !c.readOnly {
			return nil
		}
		if err := c.o.ReadOnly.Off(ctx); err != nil {
			return fmt.Errorf("switch read-only off: %w", err)
		}
		return nil
	})
}

// finishCopy moves the endpoint to the migrated copy and switches
// read-only off; shared by RunCopy and RecoverCopy.
func finishCopy(ctx context.Context, rec Record, ep Endpoint, ro ReadOnly, record func(context.Context, Step) error) error {
	if err := record(ctx, Repointing); err != nil {
		return err
	}
	if ep != nil {
		if err := ep.Repoint(rec.ToAddr); err != nil {
			return fmt.Errorf("point the endpoint at %s: %w", rec.ToAddr, err)
		}
	}
	if err := record(ctx, Resuming); err != nil {
		return err
	}
	if ro != nil {
		if err := ro.Off(ctx); err != nil {
			return fmt.Errorf("switch read-only off: %w", err)
		}
	}
	return record(ctx, Done)
}

// catchUp waits until the replica has the primary's position, again
// until the position stands still (a write between the fence and the
// read of the position is waited for too).
func catchUp(ctx context.Context, pair Pair) error {
	for {
		pos, err := pair.Position(ctx)
		if err != nil {
			return err
		}
		if err := pair.CaughtUp(ctx, pos); err != nil {
			return fmt.Errorf("wait for the replica to apply %s: %w", pos, err)
		}
		again, err := pair.Position(ctx)
		if err != nil {
			return err
		}
		if again == pos {
			return nil
		}
	}
}

// RecoverCopy reverts or finishes a migrate-on-copy that a killed handoff
// left unfinished: once its record is at the move of the endpoint it is
// finished (endpoint on the copy, read-only off); before, it is reverted
// (old primary unfenced, endpoint on it, read-only off; the copy as it
// is). ep and ro may be nil.
func RecoverCopy(ctx context.Context, rec Record, pair Pair, ep Endpoint, ro ReadOnly, j Journal) (Record, error) {
	if rec.Step.Final() {
		return rec, nil
	}
	started := rec.Started
	record := func(ctx context.Context, s Step) error {
		rec.Step = s
		rec.Recovered = true
		rec.Steps = append(rec.Steps, StepTime{Step: s, At: time.Since(started)})
		if j == nil {
			return nil
		}
		if err := j.Put(ctx, JournalKind, rec.Name, rec); err != nil {
			return fmt.Errorf("record step %s: %w", s, err)
		}
		return nil
	}
	if rec.Committed() {
		fctx, cancel := context.WithTimeout(ctx, finishTimeout)
		defer cancel()
		if err := finishCopy(fctx, rec, ep, ro, record); err != nil {
			return rec, fmt.Errorf("finish the migrate-on-copy of %s: %w", rec.Name, err)
		}
		return rec, nil
	}
	rctx, cancel := context.WithTimeout(ctx, rollbackTimeout)
	defer cancel()
	if rec.Error == "" {
		rec.Error = fmt.Sprintf("handoff stopped at step %s; %s", rec.Step, copyRebuild(rec.ToAddr))
	}
	if err := record(rctx, RollingBack); err != nil {
		return rec, err
	}
	if err := pair.Unfence(rctx); err != nil {
		return rec, fmt.Errorf("revert the migrate-on-copy of %s: unfence the old primary: %w", rec.Name, err)
	}
	if ep != nil {
		if err := ep.Repoint(rec.FromAddr); err != nil {
			return rec, fmt.Errorf("revert the migrate-on-copy of %s: point the endpoint at %s: %w", rec.Name, rec.FromAddr, err)
		}
	}
	if ro != nil {
		if err := ro.Off(rctx); err != nil {
			return rec, fmt.Errorf("revert the migrate-on-copy of %s: switch read-only off: %w", rec.Name, err)
		}
	}
	return rec, record(rctx, RolledBack)
}
