package evolve

import (
	"context"
	"database/sql"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/testdb"
)

// TestAdaptiveThrottlePostgres runs the default (adaptive) throttle on
// real Postgres twice: on an idle database it stays at full speed and
// takes its second worker; under live writers that keep landing on the
// rows its batches hold, it sees them wait (pg_stat_activity,
// pg_blocking_pids) and backs off. Both runs change every row once. A
// million rows, so that even on a quiet host a run lasts several decisions.
func TestAdaptiveThrottlePostgres(t *testing.T) {
	const rows = 1_000_000
	settings := func(maxBatch int) Settings {
		s := DefaultSettings()
		// Long batches hold their row locks long enough for a live writer
		// to wait past lockWaitLimit; a tenth of the table at most, so
		// that the run lasts several of the throttle's decisions.
		s.Batch, s.BatchTime, s.MaxBatch = 4000, 300*time.Millisecond, maxBatch
		return s
	}
	setup := func(t *testing.T) (string, *sql.DB) {
		url := testdb.Postgres(t)
		d := open(t, url)
		mustExec(t, d, `CREATE TABLE items (id bigint PRIMARY KEY, title text NOT NULL, title_lower text, n int NOT NULL DEFAULT 0)`)
		mustExec(t, d, `INSERT INTO items (id, title) SELECT g, 'Title ' || g FROM generate_series(1, $1::int) g`, rows)
		return url, d.DB()
	}
	run := func(t *testing.T, url string, maxBatch int, live LiveSignal) []string {
		d := open(t, url)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var mu sync.Mutex
		var paces []string
		job := sqlJob(d, settings(maxBatch))
		job.Live = live
		_, err := Run(ctx, d, job, func(e Event) {
			if e.Kind == EventThrottle {
				mu.Lock()
				paces = append(paces, e.Reason)
				mu.Unlock()
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		checkOnce(t, d, rows)
		mu.Lock()
		defer mu.Unlock()
		t.Logf("paces:\n%s", strings.Join(paces, "\n"))
		return paces
	}

	t.Run("idle", func(t *testing.T) {
		url, _ := setup(t)
		start := time.Now()
		paces := run(t, url, rows/10, nil)
		took := time.Since(start)
		joined := strings.Join(paces, "\n")
		if strings.Contains(joined, "backing off") {
			t.Errorf("backed off on an idle database:\n%s", joined)
		}
		// A second worker is due after calmToAddWorker calm decisions: a
		// run shorter than that on a quiet host ends first (the pacer's
		// own tests prove the rule on a fake clock).
		if took > (calmToAddWorker+2)*decideEvery && !strings.Contains(joined, "100% of the time in batches, 2 workers") {
			t.Errorf("never ran two workers at full duty in %v:\n%s", took, joined)
		}
	})

	t.Run("live writers wait", func(t *testing.T) {
		url, db := setup(t)
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var writes atomic.Int64
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for n := 0; n < 100000; n++ { // bounded; the run ends long before
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					_, err := db.ExecContext(ctx, `UPDATE items SET title = title WHERE id = $1`, 1+rand.IntN(rows))
					cancel()
					if err != nil {
						t.Errorf("live write: %v", err)
						return
					}
					writes.Add(1)
				}
			}()
		}
		// A steady live p99, as a gateway would report one, keeps the
		// canary quiet (it speaks only without a live signal): on a loaded
		// host it backed off first, and the lock waits this test is about
		// then never grew long enough to be the reason (the canary has
		// its own tests).
		paces := run(t, url, rows/10, steadyLive{})
		close(stop)
		wg.Wait()
		joined := strings.Join(paces, "\n")
		if !strings.Contains(joined, "backing off: lock waits") {
			t.Fatalf("did not back off while %d live writes waited for its batches:\n%s", writes.Load(), joined)
		}
		if !strings.Contains(joined, ", 1 workers (backing off") {
			t.Errorf("kept two workers while backing off:\n%s", joined)
		}
	})
}

// steadyLive is a live signal whose p99 never moves from its baseline.
type steadyLive struct{}

func (steadyLive) P99() (now, baseline time.Duration, ok bool) {
	return time.Millisecond, time.Millisecond, true
}
