package evolve

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
)

// How often a run reads its control row, and writes its heartbeat.
const (
	controlEvery   = 250 * time.Millisecond
	heartbeatEvery = time.Second
	lagEvery       = time.Second
)

// Requests another terminal can make of a running backfill.
const (
	requestPause  = "pause"
	requestCancel = "cancel"
)

// monitorControl reads the control columns between batches' worth of time
// and publishes them to the workers; it also keeps the heartbeat, the
// shown state and rate fresh, and watches replication lag.
func (r *runner) monitorControl(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	var lastBeat, lastLag time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.readControl(ctx)
		if r.job.Settings.MaxLag > 0 && time.Since(lastLag) >= lagEvery {
			lastLag = time.Now()
			r.checkLag(ctx)
		}
		r.watch(ctx)
		if time.Since(lastBeat) >= heartbeatEvery {
			lastBeat = time.Now()
			r.heartbeat(ctx)
		}
		t.Reset(controlEvery)
	}
}

func (r *runner) readControl(ctx context.Context) {
	var req string
	var batch sql.NullInt64
	var rate sql.NullFloat64
	err := r.d.DB().QueryRowContext(ctx, q(r.d, `SELECT request, set_batch, set_rate FROM handoff_evolve WHERE name = ?`), r.job.Name).
		Scan(&req, &batch, &rate)
	if err != nil {
		return // a missed read is made up for at the next tick
	}
	if req == requestCancel {
		r.cancelled.Store(true)
	}
	if paused := req == requestPause; paused != r.paused.Load() {
		r.paused.Store(paused)
		if paused {
			r.track.send(Event{Kind: EventPause, Reason: "requested"})
		} else {
			r.track.send(Event{Kind: EventResume, Reason: "requested"})
		}
		r.heartbeat(ctx)
	}
	if batch.Valid {
		r.thr.setBatch(int(batch.Int64))
	}
	if rate.Valid {
		r.thr.setRate(rate.Float64)
	}
}

func (r *runner) checkLag(ctx context.Context) {
	lag, err := r.d.ReplicationLag(ctx)
	if err != nil {
		return
	}
	if r.thr.pacer != nil {
		r.thr.pacer.lag(time.Now(), lag)
	}
	over := lag > r.job.Settings.MaxLag
	if over != r.lagged.Load() {
		r.lagged.Store(over)
		if over {
			r.track.send(Event{Kind: EventPause, Reason: fmt.Sprintf("replication lag %v", lag.Round(time.Millisecond))})
		} else {
			r.track.send(Event{Kind: EventResume, Reason: "replicas caught up"})
		}
	}
}

// watch gives the adaptive throttle its readings of the live work: the
// sessions the batches block (where the database shows them) and the
// live p99 at the gateway (under handoff serve). A reading that fails is
// skipped: the throttle acts only on fresh ones.
func (r *runner) watch(ctx context.Context) {
	p := r.thr.pacer
	if p == nil {
		return
	}
	if w, ok := r.d.(dialect.SessionWatcher); ok {
		if s, err := w.Sessions(ctx, r.tag); err == nil {
			p.sessions(time.Now(), s)
		}
	}
	if r.job.Live != nil {
		if now, base, ok := r.job.Live.P99(); ok {
			p.live(time.Now(), now, base)
		}
	}
	if key, why := p.why(); key != r.shown {
		r.shown = key
		r.track.send(Event{Kind: EventThrottle, Reason: why})
	}
}

func (r *runner) heartbeat(ctx context.Context) {
	state := StateRunning
	if r.paused.Load() {
		state = StatePaused
	}
	r.track.mu.Lock()
	batch := r.track.base.Batch
	r.track.mu.Unlock()
	_, _ = r.d.DB().ExecContext(ctx, q(r.d, `UPDATE handoff_evolve SET heartbeat = ?, state = ?, batch = ?, rate = ? WHERE name = ? AND owner = ?`),
		now(), string(state), batch, r.track.rate(), r.job.Name, r.owner)
}

// Pause asks the running backfill to stop between batches until Resume.
func Pause(ctx context.Context, d dialect.Dialect, name string) error {
	return request(ctx, d, name, requestPause)
}

// Resume lets a paused backfill go on.
func Resume(ctx context.Context, d dialect.Dialect, name string) error {
	return request(ctx, d, name, "")
}

// Cancel stops the running backfill after its current batch. Its
// checkpoint is kept; running it again resumes.
func Cancel(ctx context.Context, d dialect.Dialect, name string) error {
	return request(ctx, d, name, requestCancel)
}

func request(ctx context.Context, d dialect.Dialect, name, req string) error {
	return control(ctx, d, name, `UPDATE handoff_evolve SET request = ? WHERE name = ?`, req, name)
}

// Set changes the batch size (0 leaves it) and the rate cap in rows per
// second (nil leaves it, 0 lifts it) of a backfill, running or not; a set
// batch size stops the size adapting.
func Set(ctx context.Context, d dialect.Dialect, name string, batch int, rate *float64) error {
	if batch < 0 || rate != nil && *rate < 0 {
		return errors.New("set backfill: batch and rate must not be negative")
	}
	if batch > 0 {
		if err := control(ctx, d, name, `UPDATE handoff_evolve SET set_batch = ? WHERE name = ?`, batch, name); err != nil {
			return err
		}
	}
	if rate != nil {
		return control(ctx, d, name, `UPDATE handoff_evolve SET set_rate = ? WHERE name = ?`, *rate, name)
	}
	return nil
}

func control(ctx context.Context, d dialect.Dialect, name, stmt string, args ...any) error {
	if err := EnsureSchema(ctx, d); err != nil {
		return err
	}
	var n int64
	err := dialect.RetryBusy(ctx, d, func() error {
		res, err := d.DB().ExecContext(ctx, q(d, stmt), args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return fmt.Errorf("control backfill %s: %w", name, err)
	}
	if n == 0 {
		return fmt.Errorf("control backfill %s: %w", name, ErrNotFound)
	}
	return nil
}
