package evolve

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/testdb"
)

// TestBatchTimeBoundedPostgres: under live writers, the adaptive
// throttle's batches last about batch_time whatever a row costs: each
// batch's size follows its last one's time, so that a live write that
// lands on a row a batch holds waits at most about one short batch. The
// batch's own statement records how long its transaction had run when the
// change was done (the row locks are held from then until the commit,
// one round trip later). The median is checked, not the maximum: a
// loaded host stalls any single statement.
func TestBatchTimeBoundedPostgres(t *testing.T) {
	const rows = 600_000 // enough batches to measure on a fast host too (300,000 gave 18 of the 20 needed)
	url := testdb.Postgres(t)
	d := open(t, url)
	mustExec(t, d, `CREATE TABLE items (id bigint PRIMARY KEY, title text NOT NULL, title_lower text, n int NOT NULL DEFAULT 0)`)
	mustExec(t, d, `INSERT INTO items (id, title) SELECT g, 'Title ' || g FROM generate_series(1, $1::int) g`, rows)
	mustExec(t, d, `CREATE TABLE batch_log (lo bigint, hi bigint, took interval)`)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := d.DB().ExecContext(ctx, `UPDATE items SET title = title WHERE id = $1`, 1+rand.IntN(rows))
				cancel()
				if err != nil {
					t.Errorf("live write: %v", err)
					return
				}
			}
		}()
	}
	s := DefaultSettings()
	s.Workers = 1
	job := sqlJob(d, s)
	job.Statements = append(job.Statements,
		`INSERT INTO batch_log (lo, hi, took) VALUES ($1, $2, clock_timestamp() - transaction_timestamp())`)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	_, err := Run(ctx, d, job, nil)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	checkOnce(t, d, rows)

	var took []time.Duration
	rs, err := d.DB().Query(`SELECT EXTRACT(EPOCH FROM took)::float8 FROM batch_log ORDER BY lo`)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Close()
	for rs.Next() {
		var secs float64
		if err := rs.Scan(&secs); err != nil {
			t.Fatal(err)
		}
		took = append(took, time.Duration(secs*float64(time.Second)))
	}
	if len(took) < 20 {
		t.Fatalf("%d batches: too few to say anything of their times", len(took))
	}
	// The first batches find their size (1000 rows, then at most ×2 or
	// ÷2 per batch).
	took = took[10:]
	slices.Sort(took)
	p50, p90 := took[len(took)/2], took[len(took)*9/10]
	t.Logf("%d batches: median %v, p90 %v, max %v (target %v)", len(took), p50, p90, took[len(took)-1], s.BatchTime)
	if p50 > 2*s.BatchTime {
		t.Errorf("median batch %v, over twice the target %v", p50, s.BatchTime)
	}
}
