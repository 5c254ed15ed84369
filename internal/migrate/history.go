package migrate

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
)

// The history table records every phase that was started: a row is
// written before (or, for a transactional phase, together with) the
// phase's changes, so a crash mid-phase is visible and resumes at the step
// it reached.
const historySchema = `CREATE TABLE IF NOT EXISTS handoff_migrations (
	name text NOT NULL,
	phase text NOT NULL,
	checksum text NOT NULL,
	state text NOT NULL,
	step integer NOT NULL DEFAULT 0,
	started_at text NOT NULL,
	finished_at text NOT NULL DEFAULT '',
	applied_by text NOT NULL,
	PRIMARY KEY (name, phase)
)`

// Record states. A backfill's row is only ever started: whether the
// backfill finished is recorded once, by evolve (handoff_evolve's
// finished_once), and the Migrator reads it from there (Migrator.history).
const (
	stateRunning = "running"
	stateDone    = "done"
	stateStarted = "started"
)

// applied is one row of the history table.
type applied struct {
	Name, Phase, Checksum, State string
	Step                         int
	StartedAt, FinishedAt        time.Time
	AppliedBy                    string
}

type history struct{ d dialect.Dialect }

func (h history) ensure(ctx context.Context) error {
	if err := dialect.RetryBusy(ctx, h.d, func() error { return h.d.EnsureTables(ctx, historySchema) }); err != nil {
		return fmt.Errorf("create history table: %w", err)
	}
	return h.upgrade(ctx)
}

// upgrade rewrites the backfill rows of a history written before the
// backfill's finish had one record: they said running or done as well,
// which could disagree with evolve's record (a kill between the two
// writes). They become started; nothing reads their state. It writes only
// when there is such a row, so that readers (status) take no write lock.
func (h history) upgrade(ctx context.Context) error {
	var n int
	err := h.d.DB().QueryRowContext(ctx, q(h.d, `SELECT count(*) FROM handoff_migrations WHERE phase = ? AND state <> ?`),
		string(Backfill), stateStarted).Scan(&n)
	if err != nil || n == 0 {
		return wrapUpgrade(err)
	}
	return wrapUpgrade(dialect.RetryBusy(ctx, h.d, func() error {
		_, err := h.d.DB().ExecContext(ctx, q(h.d, `UPDATE handoff_migrations SET state = ?, finished_at = '' WHERE phase = ? AND state <> ?`),
			stateStarted, string(Backfill), stateStarted)
		return err
	}))
}

func wrapUpgrade(err error) error {
	if err != nil {
		return fmt.Errorf("upgrade history table: %w", err)
	}
	return nil
}

// load returns the history keyed by migration name and phase.
func (h history) load(ctx context.Context) (map[string]map[Phase]*applied, error) {
	rows, err := h.d.DB().QueryContext(ctx, `SELECT name, phase, checksum, state, step, started_at, finished_at, applied_by FROM handoff_migrations`)
	if err != nil {
		return nil, fmt.Errorf("read history: %w", err)
	}
	defer rows.Close()
	out := map[string]map[Phase]*applied{}
	for rows.Next() {
		var a applied
		var started, finished string
		if err := rows.Scan(&a.Name, &a.Phase, &a.Checksum, &a.State, &a.Step, &started, &finished, &a.AppliedBy); err != nil {
			return nil, fmt.Errorf("read history: %w", err)
		}
		a.StartedAt, _ = time.Parse(time.RFC3339Nano, started)
		a.FinishedAt, _ = time.Parse(time.RFC3339Nano, finished)
		if out[a.Name] == nil {
			out[a.Name] = map[Phase]*applied{}
		}
		out[a.Name][Phase(a.Phase)] = &a
	}
	return out, rows.Err()
}

// q rewrites ? placeholders into the dialect's.
func q(d dialect.Dialect, query string) string { return dialect.Rebind(d, query) }

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// begin writes the running row of a phase (a backfill's: started) unless
// it is there already.
func (h history) begin(ctx context.Context, ex execer, m *Migration, s *Section, by string) error {
	state := stateRunning
	if s.Phase == Backfill {
		state = stateStarted
	}
	_, err := ex.ExecContext(ctx, q(h.d, `INSERT INTO handoff_migrations (name, phase, checksum, state, step, started_at, applied_by)
		VALUES (?, ?, ?, ?, 0, ?, ?) ON CONFLICT (name, phase) DO NOTHING`),
		m.Name, string(s.Phase), s.Checksum, state, now(), by)
	return err
}

// advance records that a phase has done step groups, and is done when last.
func (h history) advance(ctx context.Context, ex execer, m *Migration, p Phase, step int, last bool) error {
	state, finished := stateRunning, ""
	if last {
		state, finished = stateDone, now()
	}
	_, err := ex.ExecContext(ctx, q(h.d, `UPDATE handoff_migrations SET step = ?, state = ?, finished_at = ? WHERE name = ? AND phase = ?`),
		step, state, finished, m.Name, string(p))
	return err
}

// forget deletes a rolled-back migration's history.
func (h history) forget(ctx context.Context, name string) error {
	_, err := h.d.DB().ExecContext(ctx, q(h.d, `DELETE FROM handoff_migrations WHERE name = ?`), name)
	if err != nil {
		return fmt.Errorf("forget migration %s: %w", name, err)
	}
	return nil
}

// verify checks that no applied phase was edited since it ran: its text
// is what the database now reflects, and a changed file would mislead.
func verify(ms []*Migration, hist map[string]map[Phase]*applied) error {
	var errs []error
	for _, m := range ms {
		for p, a := range hist[m.Name] {
			s := m.Sections[p]
			switch {
			case s == nil:
				errs = append(errs, &FileError{File: m.Path, Msg: fmt.Sprintf("phase %s was applied on %s by %s but is no longer in the file",
					p, a.StartedAt.Format(time.DateTime), a.AppliedBy)})
			case s.Checksum != a.Checksum:
				errs = append(errs, &FileError{File: m.Path, Line: s.Line, Msg: fmt.Sprintf("phase %s was applied on %s by %s and has been edited since; put the change in a new migration",
					p, a.StartedAt.Format(time.DateTime), a.AppliedBy)})
			}
		}
	}
	return errors.Join(errs...)
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// whoami names who applies a phase: user@host.
func whoami() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return name + "@" + host
}
