package evolve

import (
	"context"
	"database/sql"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// retries collects the reasons of retry events.
type retries struct {
	mu      sync.Mutex
	reasons []string
}

func (r *retries) event(e Event) {
	if e.Kind == EventRetry {
		r.mu.Lock()
		r.reasons = append(r.reasons, e.Reason)
		r.mu.Unlock()
	}
}

func (r *retries) has(reason string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.reasons {
		if s == reason {
			return true
		}
	}
	return false
}

// waitForLockWait waits until some backend of the database waits on a lock.
func waitForLockWait(t *testing.T, d dialect.Dialect) {
	t.Helper()
	waitFor(t, func() bool {
		var n int
		d.DB().QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&n)
		return n > 0
	})
}

func conflictSettings(iso sql.IsolationLevel) Settings {
	s := fast()
	s.Isolation, s.LockTimeout = iso, 10*time.Second // long enough for the deadlock detector
	return s
}

// TestSerializationFailureRetried: a batch in REPEATABLE READ blocks on a
// row a live transaction updates; when that commits, the batch fails with
// a serialization failure, is retried, and the run completes.
func TestSerializationFailureRetried(t *testing.T) {
	ctx := context.Background()
	d := open(t, testdb.Postgres(t))
	seed(t, d, 300)
	live, err := d.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Rollback()
	if _, err := live.Exec(`UPDATE items SET title = 'Held By Live' WHERE id = 121`); err != nil {
		t.Fatal(err)
	}
	var rs retries
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, d, sqlJob(d, conflictSettings(sql.LevelRepeatableRead)), rs.event)
		done <- err
	}()
	waitForLockWait(t, d)
	if err := live.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !rs.has("serialization failure") {
		t.Fatalf("retries %v, want a serialization failure", rs.reasons)
	}
	checkOnce(t, d, 300)
	var lower string
	d.DB().QueryRow(`SELECT title_lower FROM items WHERE id = 121`).Scan(&lower)
	if lower != "held by live" {
		t.Fatalf("the retried batch did not see the live write: %q", lower)
	}
}

// TestDeadlockRetried: a live transaction holds a row in the middle of a
// batch, the batch waits for it holding the rows before it, and the live
// transaction then wants one of those: a real deadlock. Postgres aborts
// the batch (its detector fires first), the batch is retried, and both
// the live transaction and the run complete.
func TestDeadlockRetried(t *testing.T) {
	ctx := context.Background()
	d := open(t, testdb.Postgres(t))
	seed(t, d, 300)
	live, err := d.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Rollback()
	// The live side waits longer before checking for a deadlock, so the
	// batch is the one Postgres aborts.
	for _, q := range []string{`SET LOCAL deadlock_timeout = '20s'`, `UPDATE items SET title = 'B' WHERE id = 40`} {
		if _, err := live.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	var rs retries
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, d, sqlJob(d, conflictSettings(0)), rs.event)
		done <- err
	}()
	waitForLockWait(t, d) // the batch holds ids 1..38 and waits for 40
	// The live write to id 10 leaves its title as it is: once the batch
	// is aborted and rolls back, its retry (after a backoff of a few ms)
	// can lock id 10 before the live transaction, woken by the rollback,
	// does on a loaded host; the live write then lands after the batch's
	// commit — a correct order, in which a changed title would no longer
	// match the title_lower the batch wrote (checkOnce).
	if _, err := live.Exec(`UPDATE items SET title = title WHERE id = 10`); err != nil {
		t.Fatalf("the live transaction lost the deadlock: %v", err)
	}
	if err := live.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !rs.has("deadlock") {
		t.Fatalf("retries %v, want a deadlock", rs.reasons)
	}
	checkOnce(t, d, 300)
}

// TestRetriesExhaustedStopResumably: a conflict that outlasts the retries
// stops the run with a StoppedError; once the conflict is gone, running
// again resumes at the failed batch.
func TestRetriesExhaustedStopResumably(t *testing.T) {
	ctx := context.Background()
	d := open(t, testdb.Postgres(t))
	seed(t, d, 300)
	live, err := d.DB().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Rollback()
	live.Exec(`UPDATE items SET title = 'Held' WHERE id = 200`)
	s := fast()
	s.Retries, s.LockTimeout, s.MinBatch = 2, 50*time.Millisecond, 50
	var rs retries
	_, err = Run(ctx, d, sqlJob(d, s), rs.event)
	var se *StoppedError
	if !errors.As(err, &se) || se.Attempts != 3 || d.Classify(se.Err) != dialect.LockTimeout {
		t.Fatalf("want a stop after 3 lock timeouts, got %v", err)
	}
	lo, _ := strconv.Atoi(se.Lo)
	hi, _ := strconv.Atoi(se.Hi)
	if lo > 200 || hi <= 200 {
		t.Fatalf("want a stop at the batch that holds id 200, got [%s, %s)", se.Lo, se.Hi)
	}
	if st, _ := Get(ctx, d, "0001_lower"); st.State != StateFailed || st.Rows == 0 {
		t.Fatalf("status after the stop: %+v", st)
	}
	live.Rollback()
	if _, err := Run(ctx, d, sqlJob(d, s), nil); err != nil {
		t.Fatal(err)
	}
	checkOnce(t, d, 300)
}

// TestSQLiteBusyRetried: another connection holds SQLite's write lock for
// longer than the busy timeout; the batch gets SQLITE_BUSY, is retried,
// and the run completes.
func TestSQLiteBusyRetried(t *testing.T) {
	ctx := context.Background()
	path := testdb.SQLite(t)
	d := open(t, path)
	seed(t, d, 300)
	other := open(t, path)
	var rs retries
	var once sync.Once
	progress := func(e Event) {
		rs.event(e)
		if e.Kind != EventBatch {
			return
		}
		// After the first batch, another connection takes the write lock
		// and keeps it for longer than the busy timeout.
		once.Do(func() {
			holder, err := other.BeginWrite(ctx, 0, time.Second)
			if err != nil {
				t.Error(err)
				return
			}
			if _, err := holder.Exec(`UPDATE items SET title = title WHERE id = 1`); err != nil {
				t.Error(err)
			}
			go func() {
				time.Sleep(700 * time.Millisecond)
				holder.Commit()
			}()
		})
	}
	if _, err := Run(ctx, d, sqlJob(d, fast()), progress); err != nil {
		t.Fatal(err)
	}
	if !rs.has("database busy") {
		t.Fatalf("retries %v, want database busy", rs.reasons)
	}
	checkOnce(t, d, 300)
}

// TestLateCommitFollowed: a batch of a session that had let go of the
// backfill (its COMMIT was in flight when it was cancelled or killed)
// reaches the server after a resumed run read the checkpoint. The run's
// own batch over the same keys loses the race on the cursor and rolls
// back; it then goes on from where the checkpoint is, and every row is
// still changed exactly once.
func TestLateCommitFollowed(t *testing.T) {
	for name, url := range backends {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			d := open(t, url(t))
			seed(t, d, 300)
			var once sync.Once
			late := func(e Event) {
				if e.Kind != EventBatch {
					return
				}
				once.Do(func() { // the cursor is at e.Hi; move it on as that session would have
					tx, err := d.BeginWrite(ctx, 0, time.Second)
					if err != nil {
						t.Error(err)
						return
					}
					defer tx.Rollback()
					res, err := tx.Exec(`UPDATE items SET title_lower = lower(title), n = n + 1 WHERE id >= `+d.Param(1)+` AND id < `+d.Param(2), e.Hi, "101")
					if err != nil {
						t.Error(err)
						return
					}
					n, _ := res.RowsAffected()
					if _, err := tx.Exec(`UPDATE handoff_evolve_parts SET cursor = '101', rows = rows + `+d.Param(1)+` WHERE name = '0001_lower' AND cursor = `+d.Param(2), n, e.Hi); err != nil {
						t.Error(err)
						return
					}
					if err := tx.Commit(); err != nil {
						t.Error(err)
					}
				})
			}
			if _, err := Run(ctx, d, sqlJob(d, fast()), late); err != nil {
				t.Fatal(err)
			}
			checkOnce(t, d, 300)
			if st, _ := Get(ctx, d, "0001_lower"); st.Rows != 200 || !st.Finished {
				t.Fatalf("status %+v, want 200 rows, finished", st)
			}
		})
	}
}
