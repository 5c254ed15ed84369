package evolve

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
)

// ExitConflict is the exit code by which a backfill command says "this
// batch conflicted with live work; try it again" (EX_TEMPFAIL).
const ExitConflict = 75

// conflictError is a command's exit 75.
type conflictError struct{ output string }

func (e *conflictError) Error() string {
	return "command exited 75 (conflict, retry)" + outputSuffix(e.output)
}

// retryReason names the conflict behind err, or "" when err is permanent.
func (r *runner) retryReason(err error) string {
	var ce *conflictError
	if errors.As(err, &ce) {
		return "exit 75"
	}
	if c := r.d.Classify(err); c.Retryable() {
		return c.String()
	}
	return ""
}

// batchWithRetry runs the batch [lo, hi) of part p until it commits,
// retrying conflicts with backoff and a halved batch each time. It returns
// the bounds actually done, which a retry may have narrowed.
func (r *runner) batchWithRetry(ctx context.Context, p *part, hi key, size *int) (key, int64, time.Duration, error) {
	lo := p.cursor
	for attempt := 1; ; attempt++ {
		start := time.Now()
		n, err := r.batch(ctx, p, lo, hi)
		if err == nil {
			return hi, n, time.Since(start), nil
		}
		if ctx.Err() != nil {
			return key{}, 0, 0, ctx.Err()
		}
		reason := r.retryReason(err)
		if reason == "" || attempt > r.job.Settings.Retries {
			return key{}, 0, 0, &StoppedError{Name: r.job.Name, Lo: lo.String(), Hi: hi.String(), Attempts: attempt, Err: err}
		}
		r.track.send(Event{Kind: EventRetry, Lo: lo.String(), Hi: hi.String(), Attempt: attempt, Reason: reason, Err: err})
		if err := dialect.Sleep(ctx, dialect.Backoff(attempt-1)); err != nil {
			return key{}, 0, 0, err
		}
		*size = r.thr.shrink(*size)
		if hi, err = r.nextHi(ctx, lo, p.hi, *size); err != nil {
			return key{}, 0, 0, err
		}
	}
}

// batch does [lo, hi) once: the change and the checkpoint in one
// transaction for SQL; for a command, the command and then the checkpoint
// (a command killed between the two is run again: it must be idempotent).
func (r *runner) batch(ctx context.Context, p *part, lo, hi key) (int64, error) {
	if r.job.Command == "" {
		return r.checkpointTx(ctx, p, lo, hi, func(tx *sql.Tx) (int64, error) { return r.statements(ctx, tx, lo, hi) })
	}
	if err := r.command(ctx, lo, hi); err != nil {
		return 0, err
	}
	n := int64(1) // a batch of text or uuid keys counts once
	if lo.kind == dialect.KeyInt {
		n = hi.n - lo.n
	}
	return r.checkpointTx(ctx, p, lo, hi, func(*sql.Tx) (int64, error) { return n, nil })
}

func (r *runner) statements(ctx context.Context, tx *sql.Tx, lo, hi key) (int64, error) {
	var rows int64
	for _, stmt := range r.job.Statements {
		res, err := tx.ExecContext(ctx, stmt, lo.arg(), hi.arg())
		if err != nil {
			return 0, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return 0, fmt.Errorf("count rows: %w", err)
		}
		rows += n
	}
	return rows, nil
}

// checkpointTx runs change and moves the part's cursor from lo to hi in
// one transaction. The cursor only moves if it is still at lo, so a batch
// can never be recorded twice.
func (r *runner) checkpointTx(ctx context.Context, p *part, lo, hi key, change func(*sql.Tx) (int64, error)) (int64, error) {
	s := r.job.Settings
	tx, err := r.begin(ctx, s)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	rows, err := change(tx)
	if err != nil {
		return 0, err
	}
	res, err := tx.ExecContext(ctx, q(r.d, `UPDATE handoff_evolve_parts SET cursor = ?, rows = rows + ? WHERE name = ? AND part = ? AND cursor = ?`),
		hi.String(), rows, r.job.Name, p.n, lo.String())
	if err != nil {
		return 0, err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return 0, errLostRace
	}
	if err := tx.Commit(); err != nil {
		return 0, err
	}
	return rows, nil
}

// begin opens a batch's transaction, its session named by the run's tag
// where the adaptive throttle watches the sessions it blocks.
func (r *runner) begin(ctx context.Context, s Settings) (*sql.Tx, error) {
	var tx *sql.Tx
	var err error
	if w, ok := r.d.(dialect.SessionWatcher); ok && r.thr.pacer != nil {
		tx, err = w.BeginTagged(ctx, s.Isolation, s.LockTimeout, r.tag)
	} else {
		tx, err = r.d.BeginWrite(ctx, s.Isolation, s.LockTimeout)
	}
	if err != nil || r.d.Name() != "postgres" {
		return tx, err
	}
	// The batch's commit does not wait for its WAL to reach the disk. A
	// live commit waits for the WAL flush (LWLock:WALWrite, IO:WALSync in
	// pg_stat_activity: most of a live write's time on the bench), and a
	// batch that waits too holds the flush queue and its own worker; the
	// fixed throttle at 25 % wrote 1.3–2× the rows with the live p99 no
	// higher (bench/evolve). Nothing can be lost by it: the batch and its
	// checkpoint commit together, so a server crash that loses the one
	// loses the other and the run does the batch again; and a later
	// synchronous commit (the run's end, marking it done) flushes all the
	// WAL before it, these batches' included.
	if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("set synchronous_commit: %w", err)
	}
	return tx, nil
}

// command runs the backfill command for [lo, hi) in the release directory.
// It runs in its own process group so that cancelling kills its children.
func (r *runner) command(ctx context.Context, lo, hi key) error {
	line := strings.NewReplacer("{lo}", shellQuote(lo.String()), "{hi}", shellQuote(hi.String())).Replace(r.job.Command)
	cmd := exec.CommandContext(ctx, "sh", "-c", line)
	cmd.Dir = r.job.Dir
	cmd.Env = append(os.Environ(), "HANDOFF_EVOLVE="+r.job.Name, "HANDOFF_LO="+lo.String(), "HANDOFF_HI="+hi.String())
	out := &tail{max: 4096}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee) && ee.ExitCode() == ExitConflict:
		return &conflictError{output: out.String()}
	case errors.As(err, &ee):
		return fmt.Errorf("backfill command exited %d%s", ee.ExitCode(), outputSuffix(out.String()))
	}
	return fmt.Errorf("run backfill command: %w", err)
}

func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "0123456789-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func outputSuffix(out string) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return ""
	}
	return ": " + out
}

// tail keeps the last max bytes written to it.
type tail struct {
	max int
	buf []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = t.buf[len(t.buf)-t.max:]
	}
	return len(p), nil
}

func (t *tail) String() string { return string(t.buf) }

// reloadPart reads the part's checkpoint again after its cursor was not
// where this worker left it, and reports whether it had moved on. That is
// a batch committed by a process that had already let go of it: a batch
// whose COMMIT was in flight when its run was cancelled or killed reaches
// the server after a run that resumes at once has read the checkpoint.
// The batch and its cursor committed together, so going on from the
// cursor applies nothing twice.
func (r *runner) reloadPart(ctx context.Context, p *part) (bool, error) {
	var cur string
	var rows int64
	err := r.d.DB().QueryRowContext(ctx, q(r.d, `SELECT cursor, rows FROM handoff_evolve_parts WHERE name = ? AND part = ?`),
		r.job.Name, p.n).Scan(&cur, &rows)
	if err != nil {
		return false, fmt.Errorf("read checkpoint of %s: %w", r.job.Name, err)
	}
	if cur == p.cursor.String() {
		return false, nil
	}
	k, err := parseKey(p.cursor.kind, cur)
	if err != nil {
		return false, err
	}
	r.track.moved(p, k, rows)
	return true, nil
}
