// Package evolve runs batched data changes ("evolve" scripts, backfills)
// on a live database without getting in its way.
//
// A run fixes its key range when it starts, so it always ends however fast
// the application inserts. It walks the range in batches, one transaction
// per batch, and records a checkpoint in the same transaction as the batch's
// change, in the application's own database (table handoff_evolve_parts):
// a run killed at any moment resumes after its last committed batch and
// never applies a batch twice. A batch that conflicts with live traffic
// (serialization failure, deadlock, lock timeout, SQLite busy, a command's
// exit 75) is retried with backoff up to a limit, then the run stops in a
// state that the next run resumes. A throttle adapts the batch size to a
// target duration, rests between batches, caps the rows per second and, on
// Postgres, waits for replicas to catch up. Another process controls a
// running backfill through its row in handoff_evolve (Pause, Resume,
// Cancel, Set): the run reads it between batches.
package evolve

import (
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Job is one backfill: what to run, over which keys.
type Job struct {
	// Name identifies the backfill (a migration's name) in the checkpoint
	// table and to `handoff evolve`.
	Name string
	// Table and Key name the table whose key column is walked: an integer,
	// text (any collation) or uuid column, in the order the database gives
	// it. The range is from the first key to a value above the last when
	// the run starts.
	Table, Key string
	// Range, when set, is an explicit inclusive integer range used instead
	// of the table's keys (a command backfill of an external store).
	Range *Range
	// Statements is the SQL form: each is run in the batch's transaction
	// with the batch's lo as bind parameter 1 and its hi as parameter 2,
	// covering lo <= key < hi.
	Statements []string
	// Command is the command form: a shell command line in which {lo} and
	// {hi} are replaced by the batch's bounds; it runs in Dir. Exit 0 is
	// done, exit 75 a conflict to retry, anything else stops the run.
	Command string
	Dir     string
	// Settings tune batching, retries and the throttle.
	Settings Settings
}

// Range is an inclusive range of integer keys.
type Range struct{ Lo, Hi int64 }

// Settings tune a run. DefaultSettings gives the defaults; zero values of
// a Settings built by hand mean "off" where that makes sense.
type Settings struct {
	// Batch is the first batch's size in rows (keys for a command).
	Batch int
	// BatchTime is the batch duration the size adapts to; 0 keeps Batch.
	BatchTime time.Duration
	// MinBatch and MaxBatch bound the adapted size.
	MinBatch, MaxBatch int
	// Duty is the percentage of wall time spent in batches (1–100); the
	// rest is spent resting between them so that live traffic catches up.
	Duty int
	// Rate caps rows per second over all workers; 0 is no cap.
	Rate float64
	// MaxLag waits while a replica lags more than this (Postgres); 0 ignores lag.
	MaxLag time.Duration
	// Workers run disjoint parts of an integer range in parallel.
	Workers int
	// Retries bounds the attempts at one batch after conflicts.
	Retries int
	// LockTimeout bounds each lock wait inside a batch.
	LockTimeout time.Duration
	// Isolation of each batch's transaction; 0 is the database's default.
	Isolation sql.IsolationLevel
}

// DefaultSettings is the default throttle: batches that last about 40 ms
// (short row-lock holds and small WAL flushes, which live commits wait on),
// with three times as long a rest after each (a batch overlapping a live
// query is what lifts its latency, so the share of time in batches sets the
// live p99; see docs/migrations.md), a replica lag of at most 10 s, one
// worker.
func DefaultSettings() Settings {
	return Settings{
		Batch: 1000, BatchTime: 40 * time.Millisecond, MinBatch: 10, MaxBatch: 50000,
		Duty: 25, MaxLag: 10 * time.Second, Workers: 1, Retries: 50,
		LockTimeout: 100 * time.Millisecond,
	}
}

// Unthrottled turns off the rest between batches, the rate cap and the lag
// wait, keeping adaptive batch sizing.
func (s Settings) Unthrottled() Settings {
	s.Duty, s.Rate, s.MaxLag = 100, 0, 0
	return s
}

func (s Settings) validate() error {
	switch {
	case s.Batch < 1:
		return errors.New("batch must be at least 1")
	case s.Duty < 1 || s.Duty > 100:
		return fmt.Errorf("duty must be 1–100 percent, got %d", s.Duty)
	case s.Workers < 1:
		return errors.New("workers must be at least 1")
	case s.Rate < 0:
		return errors.New("rate must not be negative")
	case s.Retries < 0:
		return errors.New("retries must not be negative")
	}
	return nil
}

// Result says what a run did.
type Result struct {
	// Run counts the runs of this backfill; run 1 is the first full pass,
	// later runs cover keys added since.
	Run int
	// Rows is the number of rows (keys, for a command) this run changed.
	Rows int64
	// UpToDate is true when there was nothing new to cover.
	UpToDate bool
}

// ErrCancelled is returned by Run when `evolve cancel` stopped it. The
// checkpoint is kept: the next run resumes.
var ErrCancelled = errors.New("backfill cancelled")

// ErrNotFound is returned for a backfill that has never run.
var ErrNotFound = errors.New("no such backfill")

// RunningError says that another process is running the backfill.
type RunningError struct{ Name, Owner string }

func (e *RunningError) Error() string {
	return fmt.Sprintf("backfill %s is running in %s", e.Name, e.Owner)
}

// StoppedError is a run that stopped on a batch it could not complete: a
// permanent error, or a conflict that outlasted the retries. Run it again
// to resume from the batch that failed.
type StoppedError struct {
	Name   string
	Lo, Hi string
	// Attempts made at the failed batch.
	Attempts int
	Err      error
}

func (e *StoppedError) Error() string {
	return fmt.Sprintf("backfill %s stopped at batch [%s, %s) after %d attempts (resume by running it again): %v",
		e.Name, e.Lo, e.Hi, e.Attempts, e.Err)
}

func (e *StoppedError) Unwrap() error { return e.Err }
