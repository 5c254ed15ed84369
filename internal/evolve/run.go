package evolve

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/handoff-dev/handoff/internal/dialect"
)

// runner is one run of one backfill in this process.
type runner struct {
	d     dialect.Dialect
	job   Job
	owner string
	rec   *record
	thr   *throttle
	track *tracker
	// tag names the sessions of this run's batches to the database, so
	// that the sessions they block can be found (dialect.SessionWatcher).
	tag string
	// shown is the throttle's state as last reported (monitorControl only).
	shown string

	// Set by monitorControl, read by the workers between batches.
	paused, lagged, cancelled atomic.Bool
}

// Run runs the backfill job to the end of its range, resuming an unfinished
// run if there is one, and reports progress to progress (which may be nil;
// calls are serialized). It returns ErrCancelled when cancelled from
// another terminal, a *StoppedError when a batch could not be done, a
// *RunningError when another process runs it. Every stop is resumable by
// calling Run again.
func Run(ctx context.Context, d dialect.Dialect, job Job, progress func(Event)) (Result, error) {
	if err := job.validate(); err != nil {
		return Result{}, fmt.Errorf("backfill %s: %w", job.Name, err)
	}
	if err := EnsureSchema(ctx, d); err != nil {
		return Result{}, err
	}
	r := &runner{d: d, job: job, owner: ownerID(), thr: newThrottle(job.Settings), tag: "handoff backfill " + job.Name}
	upToDate, err := r.claim(ctx)
	if err != nil {
		return Result{}, err
	}
	if upToDate {
		run := 0
		if r.rec != nil {
			run = r.rec.Run
		}
		if progress != nil {
			progress(Event{Kind: EventDone, Name: job.Name, Run: run, Percent: 100, Reason: "up to date"})
		}
		return Result{Run: run, UpToDate: true}, nil
	}
	parts, err := r.loadParts(ctx)
	if err != nil {
		return Result{}, err
	}
	r.track = newTracker(progress, job.Name, r.rec.Run, r.rec.RowsTotal, parts)
	rowsBefore := r.track.base.Rows
	err = r.walkAll(ctx, parts)
	err = r.finish(ctx, err)
	return Result{Run: r.rec.Run, Rows: r.track.base.Rows - rowsBefore}, err
}

func (j Job) validate() error {
	switch {
	case j.Name == "":
		return errors.New("a backfill needs a name")
	case (len(j.Statements) == 0) == (j.Command == ""):
		return errors.New("give SQL statements or a command, not both")
	case j.Range == nil && (j.Table == "" || j.Key == ""):
		return errors.New("give a table and key, or a range")
	case j.Table != "" && (!dialect.ValidIdent(j.Table) || !dialect.ValidIdent(j.Key)):
		return fmt.Errorf("table %q and key %q must be plain identifiers", j.Table, j.Key)
	case len(j.Statements) > 0 && j.Table == "":
		return errors.New("a SQL backfill needs a table and key")
	}
	return j.Settings.validate()
}

func (r *runner) loadParts(ctx context.Context) ([]*part, error) {
	rows, err := r.d.DB().QueryContext(ctx, q(r.d, `SELECT part, lo, hi, cursor, rows FROM handoff_evolve_parts WHERE name = ? ORDER BY part`), r.job.Name)
	if err != nil {
		return nil, fmt.Errorf("read checkpoint of %s: %w", r.job.Name, err)
	}
	defer rows.Close()
	var parts []*part
	for rows.Next() {
		var p part
		var lo, hi, cur string
		if err := rows.Scan(&p.n, &lo, &hi, &cur, &p.rows); err != nil {
			return nil, fmt.Errorf("read checkpoint of %s: %w", r.job.Name, err)
		}
		for _, k := range []struct {
			s   string
			dst *key
		}{{lo, &p.lo}, {hi, &p.hi}, {cur, &p.cursor}} {
			if *k.dst, err = parseKey(r.rec.Kind, k.s); err != nil {
				return nil, err
			}
		}
		parts = append(parts, &p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read checkpoint of %s: %w", r.job.Name, err)
	}
	return parts, nil
}

// walkAll runs one worker per unfinished part, with the control monitor
// beside them.
func (r *runner) walkAll(ctx context.Context, parts []*part) error {
	r.track.send(Event{Kind: EventStart, Batch: r.job.Settings.Batch})
	if r.job.Settings.MaxLag > 0 {
		r.checkLag(ctx) // before the first batch, not a tick after it
	}
	mctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); r.monitorControl(mctx) }()
	if r.thr.pacer != nil && canaryWatcher(r.d) {
		// No batch before the canary's first unloaded measurement: it
		// lets them go once it has it (or has given up).
		r.thr.hold(time.Now().Add(canaryHoldBound))
		wg.Add(1)
		go func() { defer wg.Done(); r.runCanary(mctx) }()
	}
	defer func() { stop(); wg.Wait() }()
	g, gctx := errgroup.WithContext(ctx)
	for _, p := range parts {
		if !p.done() {
			g.Go(func() error { return r.walk(gctx, p) })
		}
	}
	return g.Wait()
}

// walk does one part batch by batch, each in a worker slot of the throttle.
func (r *runner) walk(ctx context.Context, p *part) error {
	size, elapsed := r.job.Settings.Batch, time.Duration(0)
	for !p.done() {
		slot, err := r.thr.acquire(ctx)
		if err != nil {
			return err
		}
		// The gate comes after the slot's rest, so that a pause or a
		// cancel made during the rest holds this batch.
		if err := r.gate(ctx); err != nil {
			r.thr.release(slot, 0, 0)
			return err
		}
		lo := p.cursor
		hi, rows, took, err := r.step(ctx, p, &size, elapsed)
		r.thr.release(slot, took, rows)
		if errors.Is(err, errLostRace) {
			moved, rerr := r.reloadPart(ctx, p)
			if rerr != nil {
				return rerr
			}
			if moved {
				continue // on from where the checkpoint is
			}
		}
		if err != nil {
			return err
		}
		r.thr.observe(size, took)
		r.track.batch(p, lo, hi, rows, size)
		elapsed = took
	}
	return nil
}

// step does the next batch of part p: its size from the last one's time,
// its end, and the batch with its retries.
func (r *runner) step(ctx context.Context, p *part, size *int, elapsed time.Duration) (key, int64, time.Duration, error) {
	*size = r.thr.size(*size, elapsed)
	hi, err := r.nextHi(ctx, p.cursor, p.hi, *size)
	if err != nil {
		return key{}, 0, 0, err
	}
	return r.batchWithRetry(ctx, p, hi, size)
}

// gate holds a worker between batches while the backfill is paused or a
// replica lags, and stops it when cancelled.
func (r *runner) gate(ctx context.Context) error {
	for {
		if r.cancelled.Load() {
			return ErrCancelled
		}
		if !r.paused.Load() && !r.lagged.Load() {
			return ctx.Err()
		}
		if err := dialect.Sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
}

// finish records how the run ended. It writes even when ctx is done, so
// that an interrupted run says so.
func (r *runner) finish(ctx context.Context, runErr error) error {
	ctx = context.WithoutCancel(ctx)
	if runErr == nil {
		runErr = r.checkSawRows(ctx)
	}
	state, msg, forget := StateDone, "", errors.Is(runErr, ErrSawNoRows)
	switch {
	case runErr == nil:
	case errors.Is(runErr, ErrCancelled):
		state = StateCancelled
	default:
		state, msg = StateFailed, runErr.Error()
	}
	err := r.write(ctx, func(tx *sql.Tx) (sql.Result, error) {
		if state == StateDone {
			return tx.ExecContext(ctx, q(r.d, `UPDATE handoff_evolve SET state = ?, covered = range_hi, finished_once = 1,
				finished_at = ?, owner = '', request = '', rate = ? WHERE name = ? AND owner = ?`),
				string(state), now(), r.track.rate(), r.job.Name, r.owner)
		}
		if forget {
			if _, err := tx.ExecContext(ctx, q(r.d, `DELETE FROM handoff_evolve_parts WHERE name = ?`), r.job.Name); err != nil {
				return nil, err
			}
			return tx.ExecContext(ctx, q(r.d, `UPDATE handoff_evolve SET state = ?, error = ?, owner = '', request = '', range_lo = '', range_hi = ''
				WHERE name = ? AND owner = ?`), string(state), msg, r.job.Name, r.owner)
		}
		return tx.ExecContext(ctx, q(r.d, `UPDATE handoff_evolve SET state = ?, error = ?, owner = '', request = '' WHERE name = ? AND owner = ?`),
			string(state), msg, r.job.Name, r.owner)
	})
	if err != nil {
		return errors.Join(runErr, fmt.Errorf("record end of backfill %s: %w", r.job.Name, err))
	}
	if state == StateDone {
		r.track.send(Event{Kind: EventDone})
	} else {
		r.track.send(Event{Kind: EventStopped, Reason: string(state), Err: runErr})
	}
	return runErr
}

// ErrSawNoRows is returned by the first pass of a backfill whose walk
// covered none of the rows of a table that has some: the footprint of keys
// walked in the wrong order. The pass is not marked done; it forgets its
// range, and the next run starts the pass over on the keys it then finds.
var ErrSawNoRows = errors.New("the first pass saw none of the table's rows")

// checkSawRows applies the rule that a first pass (of a backfill not yet
// finished) must see rows if the table has any. The pass's rows are
// counted over all its sessions, so a pass resumed after its last batch
// has seen what the sessions before it saw. Rows that the statements left
// unchanged were still seen when they lie in the run's range: only then,
// when no row changed, is the table asked.
func (r *runner) checkSawRows(ctx context.Context) error {
	if r.rec.FinishedOnce || r.job.Table == "" || r.track.base.Rows > 0 {
		return nil
	}
	table, column := r.job.Table, r.job.Key
	has, err := dialect.HasRows(ctx, r.d, table)
	if err != nil || !has {
		return err
	}
	lo, err := parseKey(r.rec.Kind, r.rec.Lo)
	if err != nil {
		return err
	}
	hi, err := parseKey(r.rec.Kind, r.rec.Hi)
	if err != nil {
		return err
	}
	var in int64
	if lo.kind == dialect.KeyInt {
		in, err = dialect.CountKeys(ctx, r.d, table, column, lo.n, hi.n)
	} else {
		in, err = dialect.CountKeys(ctx, r.d, table, column, lo.s, hi.s)
	}
	if err != nil || in > 0 {
		return err
	}
	return fmt.Errorf("backfill %s: %w: %s has rows, but none with %s in the run's key range [%s, %s) as the database orders it; not marked done, the next run starts the pass over",
		r.job.Name, ErrSawNoRows, table, column, lo, hi)
}
