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
	// FromStart walks every key again, where a run after a finished pass
	// over integer keys would start above what earlier runs covered: a
	// row inserted below that mark by a transaction still open while the
	// walk went past it is reached only so (the catch-up before contract).
	FromStart bool
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
	// Live, when set, is the live requests' latency as the application's
	// gateway sees it (the run is under handoff serve): the adaptive
	// throttle backs off while the backfill lifts its p99.
	Live LiveSignal
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
	// Throttle says who decides how long to rest between batches and how
	// many workers run: the adaptive throttle (the default), a fixed duty
	// cycle, or nobody (off).
	Throttle ThrottleMode
	// Duty is the fixed throttle's percentage of wall time spent in
	// batches (1–100); the rest is spent resting between them so that live
	// traffic catches up. The adaptive throttle sets its own.
	Duty int
	// Rate caps rows per second over all workers; 0 is no cap.
	Rate float64
	// MaxLag waits while a replica lags more than this (Postgres); 0 ignores lag.
	MaxLag time.Duration
	// Workers run disjoint parts of the range in parallel; the adaptive
	// throttle runs between one and this many at a time. 0 is the
	// throttle's choice: up to DefaultAdaptiveWorkers adaptive, else 1.
	Workers int
	// Retries bounds the attempts at one batch after conflicts.
	Retries int
	// LockTimeout bounds each lock wait inside a batch.
	LockTimeout time.Duration
	// Isolation of each batch's transaction; 0 is the database's default.
	Isolation sql.IsolationLevel
}

// ThrottleMode names who paces a backfill.
type ThrottleMode string

// The throttles. See docs/migrations.md for how the adaptive one decides.
const (
	// ThrottleAdaptive runs at full speed while nothing suffers and backs
	// off when live work does: lock waits its batches cause, its own
	// batches slowing down against their unloaded time, replication lag,
	// and the live p99 at the gateway when one is given (Job.Live).
	ThrottleAdaptive ThrottleMode = "adaptive"
	// ThrottleFixed rests after each batch by the fixed duty cycle Duty.
	ThrottleFixed ThrottleMode = "fixed"
	// ThrottleOff never rests (rate cap and lag wait off as well).
	ThrottleOff ThrottleMode = "off"
)

// ParseThrottle reads a throttle's name; "" is the default, adaptive.
func ParseThrottle(s string) (ThrottleMode, error) {
	switch m := ThrottleMode(s); m {
	case "":
		return ThrottleAdaptive, nil
	case ThrottleAdaptive, ThrottleFixed, ThrottleOff:
		return m, nil
	}
	return "", fmt.Errorf("throttle must be adaptive, fixed or off, got %q", s)
}

// DefaultFixedDuty is the duty cycle of the fixed throttle when none is
// given: a batch overlapping a live query is what lifts its latency, so
// the share of time in batches sets the live p99 (docs/migrations.md).
const DefaultFixedDuty = 25

// DefaultAdaptiveWorkers is how many workers the adaptive throttle runs
// at most unless told: two reached 0.98× a one-shot UPDATE on an idle
// database where one reached about 0.75× (docs/migrations.md).
const DefaultAdaptiveWorkers = 2

// maxWorkers is how many workers the run has: one per part of the range.
func (s Settings) maxWorkers() int {
	switch {
	case s.Workers > 0:
		return s.Workers
	case s.Throttle == ThrottleAdaptive || s.Throttle == "":
		return DefaultAdaptiveWorkers
	}
	return 1
}

// DefaultSettings is the default throttle: the adaptive one, with up to
// DefaultAdaptiveWorkers workers, batches that last about 40 ms (short
// row-lock holds and small WAL flushes, which live commits wait on), a
// replica lag of at most 10 s.
func DefaultSettings() Settings {
	return Settings{
		Batch: 1000, BatchTime: 40 * time.Millisecond, MinBatch: 10, MaxBatch: 50000,
		Throttle: ThrottleAdaptive, Duty: DefaultFixedDuty, MaxLag: 10 * time.Second, Retries: 50,
		LockTimeout: 100 * time.Millisecond,
	}
}

// Unthrottled turns off the rest between batches, the rate cap and the lag
// wait, keeping adaptive batch sizing.
func (s Settings) Unthrottled() Settings {
	s.Throttle, s.Duty, s.Rate, s.MaxLag = ThrottleOff, 100, 0, 0
	return s
}

// Throttled selects the throttle mode: off is Unthrottled, fixed keeps
// the duty set, adaptive keeps the rest.
func (s Settings) Throttled(mode ThrottleMode) Settings {
	if mode == ThrottleOff {
		return s.Unthrottled()
	}
	s.Throttle = mode
	return s
}

// Fixed selects the fixed duty cycle: duty percent of wall time in batches.
func (s Settings) Fixed(duty int) Settings {
	s.Throttle, s.Duty = ThrottleFixed, duty
	return s
}

func (s Settings) validate() error {
	switch {
	case s.Batch < 1:
		return errors.New("batch must be at least 1")
	case s.Throttle != "" && s.Throttle != ThrottleAdaptive && s.Throttle != ThrottleFixed && s.Throttle != ThrottleOff:
		return fmt.Errorf("throttle must be adaptive, fixed or off, got %q", s.Throttle)
	case s.Throttle == ThrottleFixed && (s.Duty < 1 || s.Duty > 100):
		return fmt.Errorf("duty must be 1–100 percent, got %d", s.Duty)
	case s.Workers < 0:
		return errors.New("workers must not be negative")
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
