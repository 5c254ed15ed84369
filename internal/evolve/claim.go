package evolve

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
)

// staleAfter is how old a heartbeat must be before another host may take
// over a backfill whose process it cannot check.
const staleAfter = 15 * time.Second

// record is a backfill's row in handoff_evolve.
type record struct {
	Name         string
	State        State
	Run          int
	Kind         dialect.KeyKind
	Lo, Hi       string
	Covered      string
	FinishedOnce bool
	RowsTotal    int64
	Batch        int
	Rate         float64
	Owner        string
	Heartbeat    time.Time
	StartedAt    time.Time
	FinishedAt   time.Time
	Error        string
	Request      string
	SetBatch     sql.NullInt64
	SetRate      sql.NullFloat64
}

const recordColumns = `name, state, run, key_kind, range_lo, range_hi, covered, finished_once, rows_total,
	batch, rate, owner, heartbeat, started_at, finished_at, error, request, set_batch, set_rate`

func scanRecord(row interface{ Scan(...any) error }) (*record, error) {
	var r record
	var once int
	var hb, started, finished, kind, state string
	err := row.Scan(&r.Name, &state, &r.Run, &kind, &r.Lo, &r.Hi, &r.Covered, &once, &r.RowsTotal,
		&r.Batch, &r.Rate, &r.Owner, &hb, &started, &finished, &r.Error, &r.Request, &r.SetBatch, &r.SetRate)
	if err != nil {
		return nil, err
	}
	r.State, r.Kind, r.FinishedOnce = State(state), dialect.KeyKind(kind), once != 0
	r.Heartbeat, r.StartedAt, r.FinishedAt = parseTime(hb), parseTime(started), parseTime(finished)
	return &r, nil
}

func loadRecord(ctx context.Context, d dialect.Dialect, name string) (*record, error) {
	row := d.DB().QueryRowContext(ctx, q(d, `SELECT `+recordColumns+` FROM handoff_evolve WHERE name = ?`), name)
	r, err := scanRecord(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read backfill %s: %w", name, err)
	}
	return r, nil
}

// alive reports whether the process that owns the record may still be
// running it.
func (r *record) alive() bool {
	if r.State != StateRunning && r.State != StatePaused || r.Owner == "" {
		return false
	}
	host, pid := splitOwner(r.Owner)
	if host == hostname() && pid > 0 {
		return pid == os.Getpid() || syscall.Kill(pid, 0) == nil
	}
	return time.Since(r.Heartbeat) < staleAfter
}

func ownerID() string { return hostname() + ":" + strconv.Itoa(os.Getpid()) }

func hostname() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}

func splitOwner(owner string) (string, int) {
	i := strings.LastIndexByte(owner, ':')
	if i < 0 {
		return owner, 0
	}
	pid, _ := strconv.Atoi(owner[i+1:])
	return owner[:i], pid
}

// claim makes this process the owner of the backfill: it resumes an
// unfinished run, or starts a new one over the keys not yet covered. It
// reports upToDate when a new run would have nothing to do.
func (r *runner) claim(ctx context.Context) (upToDate bool, err error) {
	rec, err := loadRecord(ctx, r.d, r.job.Name)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return false, err
	}
	if rec != nil && rec.alive() {
		return false, &RunningError{Name: rec.Name, Owner: rec.Owner}
	}
	if rec != nil && rec.State != StateDone && !rec.forgotten() {
		return false, r.resume(ctx, rec)
	}
	return r.start(ctx, rec)
}

// forgotten reports a run that dropped its range (a first pass that saw
// no rows, see checkSawRows): the next run starts the pass over.
func (r *record) forgotten() bool { return r.Run > 0 && r.Lo == "" && r.Hi == "" }

func (r *runner) resume(ctx context.Context, rec *record) error {
	err := r.write(ctx, func(tx *sql.Tx) (sql.Result, error) {
		return tx.ExecContext(ctx, q(r.d, `UPDATE handoff_evolve SET state = ?, owner = ?, heartbeat = ?, error = '', request = ''
			WHERE name = ? AND owner = ? AND state = ?`),
			string(StateRunning), r.owner, now(), rec.Name, rec.Owner, string(rec.State))
	})
	if err != nil {
		return fmt.Errorf("resume backfill %s: %w", rec.Name, err)
	}
	r.rec = rec
	r.rec.State = StateRunning
	return nil
}

// start fixes the range of a new run. Integer keys continue above what
// earlier runs covered; text and uuid keys cannot be assumed to grow, so a
// later run walks them all again. The key column's type is checked here,
// before anything is recorded or run.
func (r *runner) start(ctx context.Context, prev *record) (bool, error) {
	kind, sp, ok, err := r.bounds(ctx)
	if err != nil {
		return false, fmt.Errorf("backfill %s: %w", r.job.Name, err)
	}
	run, covered := 1, ""
	if prev != nil {
		run, covered = prev.Run+1, prev.Covered
	}
	if ok && kind == dialect.KeyInt && covered != "" && !r.job.FromStart {
		c, err := parseKey(kind, covered)
		if err != nil {
			return false, err
		}
		sp.lo.n = max(sp.lo.n, c.n)
	}
	// Only integers can run out of keys above what was covered; a text or
	// uuid span from bounds always holds the table's first key.
	if !ok || kind == dialect.KeyInt && sp.lo.n >= sp.hi.n {
		r.rec = prev
		return true, r.markUpToDate(ctx, prev, kind)
	}
	total, err := r.estimate(ctx, sp)
	if err != nil {
		return false, err
	}
	parts, err := r.parts(ctx, sp, total)
	if err != nil {
		return false, fmt.Errorf("backfill %s: %w", r.job.Name, err)
	}
	rec := &record{Name: r.job.Name, State: StateRunning, Run: run, Kind: kind, Lo: sp.lo.String(), Hi: sp.hi.String(),
		Covered: covered, FinishedOnce: prev != nil && prev.FinishedOnce, RowsTotal: total, Batch: r.job.Settings.Batch}
	if err := r.write(ctx, func(tx *sql.Tx) (sql.Result, error) { return r.insertRun(ctx, tx, prev, rec, parts) }); err != nil {
		return false, fmt.Errorf("start backfill %s: %w", r.job.Name, err)
	}
	r.rec = rec
	return false, nil
}

// bounds reads the range a new run covers, [first key, a value above the
// last), in the column's order, and false when no row has a key. Rows
// whose key is NULL lie in no range: they are an error, not left out.
func (r *runner) bounds(ctx context.Context) (dialect.KeyKind, span, bool, error) {
	if rg := r.job.Range; rg != nil {
		end, err := intKeyEnd("range", rg.Hi)
		return dialect.KeyInt, span{intKey(rg.Lo), end}, rg.Lo <= rg.Hi, err
	}
	table, column := r.job.Table, r.job.Key
	kind, err := r.d.KeyKind(ctx, table, column)
	if err != nil {
		return "", span{}, false, err
	}
	if n, err := dialect.NullKeys(ctx, r.d, table, column); err != nil || n > 0 {
		if err == nil {
			err = fmt.Errorf("key %s.%s is NULL in %d rows: no key range reaches them (give them keys, or walk another column)", table, column, n)
		}
		return kind, span{}, false, err
	}
	if kind == dialect.KeyInt {
		lo, hi, ok, err := dialect.IntKeyBounds(ctx, r.d, table, column)
		if err != nil || !ok {
			return kind, span{}, false, err
		}
		end, err := intKeyEnd("key "+table+"."+column, hi)
		return kind, span{intKey(lo), end}, true, err
	}
	first, last, ok, err := dialect.KeyEnds(ctx, r.d, table, column)
	if err != nil || !ok {
		return kind, span{}, false, err
	}
	end, err := dialect.KeyAbove(ctx, r.d, table, column, kind, last)
	return kind, span{textKey(kind, first), textKey(kind, end)}, true, err
}

func (r *runner) estimate(ctx context.Context, sp span) (int64, error) {
	if r.job.Table == "" {
		return sp.hi.n - sp.lo.n, nil
	}
	return r.d.EstimateRows(ctx, r.job.Table)
}

// insertRun writes the new run's record and parts; the compare on run
// makes two processes starting at once agree on one winner.
func (r *runner) insertRun(ctx context.Context, tx *sql.Tx, prev, rec *record, parts []span) (sql.Result, error) {
	var res sql.Result
	var err error
	if prev == nil {
		res, err = tx.ExecContext(ctx, q(r.d, `INSERT INTO handoff_evolve (name, state, run, key_kind, range_lo, range_hi, covered,
			finished_once, rows_total, batch, owner, heartbeat, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?)`),
			rec.Name, string(rec.State), rec.Run, string(rec.Kind), rec.Lo, rec.Hi, rec.Covered, rec.RowsTotal, rec.Batch, r.owner, now(), now())
	} else {
		res, err = tx.ExecContext(ctx, q(r.d, `UPDATE handoff_evolve SET state = ?, run = ?, key_kind = ?, range_lo = ?, range_hi = ?,
			rows_total = ?, batch = ?, owner = ?, heartbeat = ?, started_at = ?, finished_at = '', error = '', request = ''
			WHERE name = ? AND run = ?`),
			string(rec.State), rec.Run, string(rec.Kind), rec.Lo, rec.Hi, rec.RowsTotal, rec.Batch, r.owner, now(), now(), rec.Name, prev.Run)
	}
	if err != nil {
		return nil, err
	}
	if _, err := tx.ExecContext(ctx, q(r.d, `DELETE FROM handoff_evolve_parts WHERE name = ?`), rec.Name); err != nil {
		return nil, err
	}
	for i, p := range parts {
		if _, err := tx.ExecContext(ctx, q(r.d, `INSERT INTO handoff_evolve_parts (name, part, lo, hi, cursor) VALUES (?, ?, ?, ?, ?)`),
			rec.Name, i, p.lo.String(), p.hi.String(), p.lo.String()); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// markUpToDate records a run that found nothing to do; a backfill of an
// empty table is finished.
func (r *runner) markUpToDate(ctx context.Context, prev *record, kind dialect.KeyKind) error {
	err := r.write(ctx, func(tx *sql.Tx) (sql.Result, error) {
		if prev != nil {
			// A run that forgot its range finds the table emptied: finished.
			return tx.ExecContext(ctx, q(r.d, `UPDATE handoff_evolve SET state = ?, finished_once = 1, finished_at = ?, owner = '', error = ''
				WHERE name = ? AND run = ?`), string(StateDone), now(), prev.Name, prev.Run)
		}
		if kind == "" {
			kind = dialect.KeyInt
		}
		return tx.ExecContext(ctx, q(r.d, `INSERT INTO handoff_evolve (name, state, run, key_kind, range_lo, range_hi, finished_once,
			started_at, finished_at) VALUES (?, ?, 0, ?, '', '', 1, ?, ?)`), r.job.Name, string(StateDone), string(kind), now(), now())
	})
	if err != nil {
		return fmt.Errorf("record backfill %s: %w", r.job.Name, err)
	}
	return nil
}

// errLostRace is a compare-and-set that matched no row: another process
// changed the record first.
var errLostRace = errors.New("another process changed the backfill's checkpoint first")

// write runs f in a write transaction and commits it, retrying lock
// conflicts; f's statement must change exactly one row.
func (r *runner) write(ctx context.Context, f func(tx *sql.Tx) (sql.Result, error)) error {
	return dialect.RetryBusy(ctx, r.d, func() error {
		tx, err := r.d.BeginWrite(ctx, 0, time.Second)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		res, err := f(tx)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n != 1 {
			return errLostRace
		}
		return tx.Commit()
	})
}
