package evolve

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
)

// StateInterrupted is shown for a backfill recorded as running whose
// process is gone (killed, or its host lost); running it again resumes.
const StateInterrupted State = "interrupted"

// Status is one backfill as `handoff evolve status` shows it.
type Status struct {
	Name  string `json:"name"`
	State State  `json:"state"`
	// Finished is true once a full pass has completed; later runs only
	// cover keys added since.
	Finished bool `json:"finished"`
	Run      int  `json:"run"`
	// Lo and Hi are the current run's fixed range [lo, hi).
	Lo      string  `json:"lo"`
	Hi      string  `json:"hi"`
	Rows    int64   `json:"rows"`
	Total   int64   `json:"total"`
	Percent float64 `json:"percent"`
	Rate    float64 `json:"rate"`
	// ETASeconds is an estimate from the rate, 0 when unknown or done.
	ETASeconds float64   `json:"eta_seconds"`
	Batch      int       `json:"batch"`
	Owner      string    `json:"owner,omitempty"`
	Request    string    `json:"request,omitempty"`
	Error      string    `json:"error,omitempty"`
	StartedAt  time.Time `json:"started_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	Heartbeat  time.Time `json:"heartbeat,omitzero"`
}

// List returns every backfill the database has a record of, by name.
func List(ctx context.Context, d dialect.Dialect) ([]Status, error) {
	if err := EnsureSchema(ctx, d); err != nil {
		return nil, err
	}
	rows, err := d.DB().QueryContext(ctx, `SELECT `+recordColumns+` FROM handoff_evolve ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("list backfills: %w", err)
	}
	var recs []*record
	for rows.Next() {
		rec, err := scanRecord(rows)
		if err != nil {
			rows.Close()
			return nil, fmt.Errorf("list backfills: %w", err)
		}
		recs = append(recs, rec)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("list backfills: %w", err)
	}
	var out []Status
	for _, rec := range recs {
		s, err := status(ctx, d, rec)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// Get returns one backfill's status, or ErrNotFound.
func Get(ctx context.Context, d dialect.Dialect, name string) (Status, error) {
	if err := EnsureSchema(ctx, d); err != nil {
		return Status{}, err
	}
	rec, err := loadRecord(ctx, d, name)
	if err != nil {
		return Status{}, err
	}
	return status(ctx, d, rec)
}

// Finished reports whether the backfill has completed a full pass. A
// backfill that never ran is not finished.
func Finished(ctx context.Context, d dialect.Dialect, name string) (bool, error) {
	s, err := Get(ctx, d, name)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return s.Finished, err
}

// FinishedAll returns, for every backfill that has completed a full pass,
// when its latest run finished: the record of whether a backfill is
// finished (migrate's history keeps no other). One query, for callers
// that ask about many.
func FinishedAll(ctx context.Context, d dialect.Dialect) (map[string]time.Time, error) {
	if err := EnsureSchema(ctx, d); err != nil {
		return nil, err
	}
	rows, err := d.DB().QueryContext(ctx, `SELECT name, finished_at FROM handoff_evolve WHERE finished_once <> 0`)
	if err != nil {
		return nil, fmt.Errorf("list finished backfills: %w", err)
	}
	out := map[string]time.Time{}
	for rows.Next() {
		var name, at string
		if err := rows.Scan(&name, &at); err != nil {
			rows.Close()
			return nil, fmt.Errorf("list finished backfills: %w", err)
		}
		out[name] = parseTime(at)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("list finished backfills: %w", err)
	}
	return out, nil
}

// Forget deletes a backfill's record and checkpoint, so that its next run
// starts from the beginning (after a migration is rolled back).
func Forget(ctx context.Context, d dialect.Dialect, name string) error {
	if err := EnsureSchema(ctx, d); err != nil {
		return err
	}
	for _, stmt := range []string{`DELETE FROM handoff_evolve_parts WHERE name = ?`, `DELETE FROM handoff_evolve WHERE name = ?`} {
		if err := dialect.RetryBusy(ctx, d, func() error {
			_, err := d.DB().ExecContext(ctx, q(d, stmt), name)
			return err
		}); err != nil {
			return fmt.Errorf("forget backfill %s: %w", name, err)
		}
	}
	return nil
}

func status(ctx context.Context, d dialect.Dialect, rec *record) (Status, error) {
	s := Status{Name: rec.Name, State: rec.State, Finished: rec.FinishedOnce, Run: rec.Run, Lo: rec.Lo, Hi: rec.Hi,
		Total: rec.RowsTotal, Rate: rec.Rate, Batch: rec.Batch, Owner: rec.Owner, Request: rec.Request, Error: rec.Error,
		StartedAt: rec.StartedAt, FinishedAt: rec.FinishedAt, Heartbeat: rec.Heartbeat}
	if (rec.State == StateRunning || rec.State == StatePaused) && !rec.alive() {
		s.State, s.Owner = StateInterrupted, ""
	}
	if rec.State == StateDone {
		s.Percent = 100
		s.Rate = 0
	}
	if rec.Run == 0 {
		return s, nil
	}
	r := &runner{d: d, job: Job{Name: rec.Name}, rec: rec}
	parts, err := r.loadParts(ctx)
	if err != nil {
		return Status{}, err
	}
	t := newTracker(nil, rec.Name, rec.Run, rec.RowsTotal, parts)
	s.Rows = t.base.Rows
	if rec.State != StateDone {
		s.Percent = 100 * t.percent()
		if s.Rate > 0 && s.State == StateRunning && s.Total > s.Rows {
			s.ETASeconds = float64(s.Total-s.Rows) / s.Rate
		}
	}
	return s, nil
}
