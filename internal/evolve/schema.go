package evolve

import (
	"context"
	"fmt"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
)

// The checkpoint tables live in the application's database, so that a
// batch's change and its checkpoint commit in one transaction. The SQL is
// portable between Postgres and SQLite but for bind parameters.
var schema = []string{
	// One row per backfill: the run's fixed range, its state, and the
	// control columns another terminal writes (request, set_batch, set_rate).
	`CREATE TABLE IF NOT EXISTS handoff_evolve (
		name text PRIMARY KEY,
		state text NOT NULL,
		run integer NOT NULL,
		key_kind text NOT NULL,
		range_lo text NOT NULL,
		range_hi text NOT NULL,
		covered text NOT NULL DEFAULT '',
		-- finished_once is THE record of whether the backfill completed a
		-- full pass (a contract waits for it); migrate's history does not
		-- say it again.
		finished_once integer NOT NULL DEFAULT 0,
		rows_total bigint NOT NULL DEFAULT 0,
		batch integer NOT NULL DEFAULT 0,
		rate double precision NOT NULL DEFAULT 0,
		owner text NOT NULL DEFAULT '',
		heartbeat text NOT NULL DEFAULT '',
		started_at text NOT NULL DEFAULT '',
		finished_at text NOT NULL DEFAULT '',
		error text NOT NULL DEFAULT '',
		request text NOT NULL DEFAULT '',
		set_batch integer,
		set_rate double precision
	)`,
	// One row per worker's part of the range; cursor is the next key to do.
	`CREATE TABLE IF NOT EXISTS handoff_evolve_parts (
		name text NOT NULL,
		part integer NOT NULL,
		lo text NOT NULL,
		hi text NOT NULL,
		cursor text NOT NULL,
		rows bigint NOT NULL DEFAULT 0,
		PRIMARY KEY (name, part)
	)`,
}

// State is where a backfill stands.
type State string

// The states of a backfill.
const (
	StateRunning   State = "running"
	StatePaused    State = "paused"
	StateDone      State = "done"
	StateFailed    State = "failed"
	StateCancelled State = "cancelled"
)

// EnsureSchema creates the checkpoint tables if they are missing.
func EnsureSchema(ctx context.Context, d dialect.Dialect) error {
	if err := dialect.RetryBusy(ctx, d, func() error { return d.EnsureTables(ctx, schema...) }); err != nil {
		return fmt.Errorf("create evolve tables: %w", err)
	}
	return nil
}

// q rewrites ? placeholders into the dialect's numbered ones.
func q(d dialect.Dialect, query string) string { return dialect.Rebind(d, query) }

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}
