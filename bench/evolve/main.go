// Command evolve benchmarks handoff's backfill against a one-shot UPDATE on
// Postgres, under a live workload that runs all the time, and prints every
// figure as a ratio to the baselines measured in the same run.
//
//	go run ./bench/evolve [--rows 5000000] [--db postgres://postgres@127.0.0.1:5432/test]
//
// It creates a database of its own next to --db and drops it at the end.
package main

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/handoff-dev/handoff/internal/dialect"
	"github.com/handoff-dev/handoff/internal/evolve"
	"github.com/handoff-dev/handoff/internal/migrate"
)

func main() {
	rows := flag.Int("rows", 5_000_000, "rows in the items table")
	admin := flag.String("db", "postgres://postgres@127.0.0.1:5432/test", "a Postgres database to create the benchmark's own database from")
	clients := flag.Int("clients", 8, "live workload clients")
	baseline := flag.Duration("baseline", 15*time.Second, "how long to measure the live workload alone")
	rate := flag.Float64("rate", 10000, "rate target (rows/s) to track; keep it below what the unthrottled run reaches")
	flag.IntVar(&unthrottledWorkers, "workers", 2, "workers of the unthrottled backfill (one per core here)")
	flag.DurationVar(&batchTime, "batch-time", 0, "target batch time of the backfills (default: handoff's default)")
	flag.Parse()
	if err := run(*admin, *rows, *clients, *baseline, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// Overrides of handoff's defaults, to explore them.
var (
	unthrottledWorkers int
	batchTime          time.Duration
)

func tuned(s evolve.Settings, workers int) evolve.Settings {
	if workers > 0 {
		s.Workers = workers
	}
	if batchTime > 0 {
		s.BatchTime = batchTime
	}
	return s
}

// result is one phase's figures.
type result struct {
	name   string
	rowsPS float64
	live   stats
	// base is the live workload alone just before this phase: the host is
	// shared, so each phase is compared with the baseline nearest to it.
	base    stats
	elapsed time.Duration
}

func run(admin string, rows, clients int, baseline time.Duration, rate float64) error {
	ctx := context.Background()
	dbURL, drop, err := createDatabase(ctx, admin)
	if err != nil {
		return err
	}
	defer drop()
	d, err := dialect.Open(ctx, dbURL, 100*time.Millisecond)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := seed(ctx, d.DB(), rows); err != nil {
		return err
	}
	live, err := startLive(dbURL, rows, clients)
	if err != nil {
		return err
	}
	defer live.stop()

	var results []result
	time.Sleep(2 * time.Second) // warm up
	t0 := time.Now()
	time.Sleep(baseline)
	results = append(results, result{name: "live alone", live: live.window(t0, time.Now()), elapsed: baseline})
	report(results[0])

	phases := []struct {
		name string
		run  func() (int64, error)
	}{
		{"(a) one-shot UPDATE", func() (int64, error) { return oneShot(ctx, d.DB(), "title_lower_a") }},
		{fmt.Sprintf("(b) handoff unthrottled, %d workers", max(unthrottledWorkers, 1)), func() (int64, error) {
			return backfill(ctx, d, "title_lower_b", tuned(evolve.DefaultSettings().Unthrottled(), unthrottledWorkers), 0)
		}},
		{"(c) handoff default throttle", func() (int64, error) {
			return backfill(ctx, d, "title_lower_c", tuned(evolve.DefaultSettings(), 0), 0)
		}},
	}
	for _, p := range phases {
		r, err := measure(ctx, d.DB(), live, p.name, p.run)
		if err != nil {
			return err
		}
		results = append(results, r)
		report(r)
	}
	rateRes, err := measure(ctx, d.DB(), live, fmt.Sprintf("(d) handoff rate=%.0f", rate), func() (int64, error) {
		s := evolve.DefaultSettings().Unthrottled()
		s.Rate = rate
		return backfill(ctx, d, "title_lower_d", s, 15*time.Second)
	})
	if err != nil {
		return err
	}
	report(rateRes)
	ddl, lockTimeout, err := ddlUnderLock(ctx, dbURL, live)
	if err != nil {
		return err
	}
	report(ddl)
	summary(results, rateRes, rate, ddl, lockTimeout)
	return nil
}

func createDatabase(ctx context.Context, admin string) (string, func(), error) {
	db, err := sql.Open("pgx", admin)
	if err != nil {
		return "", nil, err
	}
	name := fmt.Sprintf("handoff_bench_%d", time.Now().UnixNano()%1e9)
	if _, err := db.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		db.Close()
		return "", nil, fmt.Errorf("create database: %w", err)
	}
	u, err := url.Parse(admin)
	if err != nil {
		return "", nil, err
	}
	u.Path = "/" + name
	return u.String(), func() {
		db.ExecContext(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		db.Close()
	}, nil
}

// seed makes items as the issue describes: about 170-byte rows.
func seed(ctx context.Context, db *sql.DB, rows int) error {
	start := time.Now()
	for _, q := range []string{
		`CREATE TABLE items (id bigserial PRIMARY KEY, owner int, title text, body text, score int)`,
		fmt.Sprintf(`INSERT INTO items (owner, title, body, score)
			SELECT g %% 1000, 'Item Title Number ' || g || ' In The Catalogue',
			       repeat(md5(g::text), 3), g %% 100 FROM generate_series(1, %d) g`, rows),
		`ALTER TABLE items ADD COLUMN title_lower_a text, ADD COLUMN title_lower_b text, ADD COLUMN title_lower_c text, ADD COLUMN title_lower_d text`,
		`VACUUM ANALYZE items`,
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
	}
	var size int64
	db.QueryRowContext(ctx, `SELECT pg_table_size('items')`).Scan(&size)
	fmt.Printf("seeded %d rows (%.0f B/row on disk) in %v\n", rows, float64(size)/float64(rows), time.Since(start).Round(time.Second))
	return nil
}

// measure runs one phase under the live workload and vacuums after it, so
// that the next phase starts from a table without dead rows.
func measure(ctx context.Context, db *sql.DB, live *workload, name string, f func() (int64, error)) (result, error) {
	base := live.quiet()
	start := time.Now()
	n, err := f()
	end := time.Now()
	if err != nil {
		return result{}, fmt.Errorf("%s: %w", name, err)
	}
	r := result{name: name, rowsPS: float64(n) / end.Sub(start).Seconds(), live: live.window(start, end), base: base, elapsed: end.Sub(start)}
	if _, err := db.ExecContext(ctx, `VACUUM items`); err != nil {
		return result{}, fmt.Errorf("vacuum: %w", err)
	}
	return r, nil
}

func oneShot(ctx context.Context, db *sql.DB, col string) (int64, error) {
	res, err := db.ExecContext(ctx, fmt.Sprintf(`UPDATE items SET %[1]s = lower(title)`, col))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// backfill runs handoff's engine over the whole table; limit > 0 stops it
// after that long (for the rate target).
func backfill(ctx context.Context, d dialect.Dialect, col string, s evolve.Settings, limit time.Duration) (int64, error) {
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	job := evolve.Job{Name: "bench_" + col, Table: "items", Key: "id", Settings: s, Statements: []string{
		fmt.Sprintf(`UPDATE items SET %[1]s = lower(title) WHERE id >= $1 AND id < $2`, col),
	}}
	res, err := evolve.Run(ctx, d, job, nil)
	if limit > 0 && ctx.Err() != nil {
		st, gerr := evolve.Get(context.Background(), d, job.Name)
		return st.Rows, gerr
	}
	return res.Rows, err
}

// ddlUnderLock holds an ACCESS SHARE lock on items for 3 s while handoff's
// expand adds a column under a 100 ms lock timeout.
func ddlUnderLock(ctx context.Context, dbURL string, live *workload) (result, time.Duration, error) {
	const lockTimeout = 100 * time.Millisecond
	dir, err := os.MkdirTemp("", "bench-migrations")
	if err != nil {
		return result{}, 0, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "0001_add.sql"), []byte("ALTER TABLE items ADD COLUMN flag boolean;\n"), 0o644); err != nil {
		return result{}, 0, err
	}
	m, err := migrate.Open(ctx, dbURL, migrate.Options{Dirs: []string{dir}, LockTimeout: lockTimeout})
	if err != nil {
		return result{}, 0, err
	}
	defer m.Close()
	long, err := m.Dialect().DB().BeginTx(ctx, nil)
	if err != nil {
		return result{}, 0, err
	}
	defer long.Rollback()
	if _, err := long.ExecContext(ctx, `SELECT 1 FROM items LIMIT 1`); err != nil {
		return result{}, 0, err
	}
	base := live.quiet()
	time.AfterFunc(3*time.Second, func() { long.Commit() })
	start := time.Now()
	if err := m.Expand(ctx); err != nil {
		return result{}, 0, err
	}
	end := time.Now()
	return result{name: "(e) DDL behind a 3 s lock", live: live.window(start, end), base: base, elapsed: end.Sub(start)}, lockTimeout, nil
}

// workload is the live traffic: clients doing 80 % point reads and 20 %
// point updates by random id, each its own transaction.
type workload struct {
	db   *sql.DB
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	obs  []observation
}

type observation struct {
	end     time.Time
	latency time.Duration
	write   bool
}

func startLive(dbURL string, rows, clients int) (*workload, error) {
	db, err := sql.Open("pgx", dbURL)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(clients)
	w := &workload{db: db, done: make(chan struct{})}
	for i := 0; i < clients; i++ {
		w.wg.Add(1)
		go w.client(rows)
	}
	return w, nil
}

func (w *workload) client(rows int) {
	defer w.wg.Done()
	var buf []observation
	flush := func() {
		w.mu.Lock()
		w.obs = append(w.obs, buf...)
		w.mu.Unlock()
		buf = buf[:0]
	}
	defer flush()
	for {
		select {
		case <-w.done:
			return
		default:
		}
		id := 1 + rand.IntN(rows)
		write := rand.IntN(5) == 0
		start := time.Now()
		var err error
		if write {
			_, err = w.db.Exec(`UPDATE items SET score = score + 1 WHERE id = $1`, id)
		} else {
			var o, s int
			var t, b string
			err = w.db.QueryRow(`SELECT owner, title, body, score FROM items WHERE id = $1`, id).Scan(&o, &t, &b, &s)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "live query:", err)
			continue
		}
		end := time.Now()
		buf = append(buf, observation{end, end.Sub(start), write})
		if len(buf) >= 256 {
			flush()
		}
	}
}

// quiet measures the live workload alone for five seconds.
func (w *workload) quiet() stats {
	start := time.Now()
	time.Sleep(5 * time.Second)
	return w.window(start, time.Now())
}

func (w *workload) stop() {
	close(w.done)
	w.wg.Wait()
	w.db.Close()
}

// stats are the live workload's figures over a window.
type stats struct {
	tps      float64
	p99, max time.Duration
	gap      time.Duration // longest interval without a live write committing
}

func (w *workload) window(from, to time.Time) stats {
	time.Sleep(500 * time.Millisecond) // let parked queries finish and clients flush
	w.mu.Lock()
	defer w.mu.Unlock()
	var lat []time.Duration
	last := from
	var s stats
	obs := slices.Clone(w.obs)
	slices.SortFunc(obs, func(a, b observation) int { return a.end.Compare(b.end) })
	for _, o := range obs {
		// Latency counts every query that started in the window, however
		// late it finished (a writer parked behind the one-shot UPDATE);
		// the gap counts writes that committed in it.
		if start := o.end.Add(-o.latency); !start.Before(from) && !start.After(to) {
			lat = append(lat, o.latency)
		}
		if o.write && !o.end.Before(from) && !o.end.After(to) {
			s.gap = max(s.gap, o.end.Sub(last))
			last = o.end
		}
	}
	s.gap = max(s.gap, to.Sub(last))
	if len(lat) == 0 {
		return s
	}
	slices.Sort(lat)
	s.tps = float64(len(lat)) / to.Sub(from).Seconds()
	s.p99 = lat[len(lat)*99/100]
	s.max = lat[len(lat)-1]
	return s
}

// loadavg is the machine's 1-minute load average: other processes on the
// machine move every figure, so each line says how busy it was.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	var one string
	fmt.Sscan(string(b), &one)
	return one
}

func report(r result) {
	if r.base.tps > 0 {
		fmt.Printf("%-36s %6.1fs  live %6.0f TPS  p99 %7v  max %7v  longest write gap %7v  (load %s)\n", "  live alone before it", 5.0,
			r.base.tps, r.base.p99.Round(10*time.Microsecond), r.base.max.Round(time.Millisecond), r.base.gap.Round(time.Millisecond), loadavg())
	}
	rows := ""
	if r.rowsPS > 0 {
		rows = fmt.Sprintf("%8.0f rows/s  ", r.rowsPS)
	}
	fmt.Printf("%-36s %6.1fs  %slive %6.0f TPS  p99 %7v  max %7v  longest write gap %7v  (load %s)\n", r.name, r.elapsed.Seconds(), rows,
		r.live.tps, r.live.p99.Round(10*time.Microsecond), r.live.max.Round(time.Millisecond), r.live.gap.Round(time.Millisecond), loadavg())
}

func summary(rs []result, rateRes result, rate float64, ddl result, lockTimeout time.Duration) {
	one := rs[1]
	fmt.Println("\nratios (live figures to the live workload alone in the 5 s before each phase; rows/s to the one-shot UPDATE):")
	fmt.Printf("%-36s %8s %8s %8s %8s %10s\n", "", "rows/s", "TPS", "p99", "max", "gap")
	for _, r := range append(rs[1:], rateRes, ddl) {
		rowsRatio := "-"
		if r.rowsPS > 0 {
			rowsRatio = fmt.Sprintf("%.2f×", r.rowsPS/one.rowsPS)
		}
		base := r.base
		fmt.Printf("%-36s %8s %7.2f× %7.2f× %7.2f× %9.2f×\n", r.name, rowsRatio, r.live.tps/base.tps,
			float64(r.live.p99)/float64(base.p99), float64(r.live.max)/float64(base.max), float64(r.live.gap)/float64(base.gap))
	}
	fmt.Println("\ngoals:")
	check := func(ok bool, format string, args ...any) {
		mark := "MET   "
		if !ok {
			mark = "MISSED"
		}
		fmt.Printf("  %s "+format+"\n", append([]any{mark}, args...)...)
	}
	b, c := rs[2], rs[3]
	check(b.rowsPS >= 0.5*one.rowsPS, "unthrottled ≥ 0.5× one-shot rows/s: %.2f×", b.rowsPS/one.rowsPS)
	check(b.live.gap <= 300*time.Millisecond, "unthrottled: no live write gap over 0.3 s: %v", b.live.gap.Round(time.Millisecond))
	check(c.live.p99 <= 2*c.base.p99, "default throttle keeps live p99 ≤ 2× baseline: %.2f×", float64(c.live.p99)/float64(c.base.p99))
	check(rateRes.rowsPS >= 0.9*rate && rateRes.rowsPS <= 1.1*rate, "rate target %.0f tracked within ±10%%: %.0f rows/s (%+.1f%%)",
		rate, rateRes.rowsPS, 100*(rateRes.rowsPS/rate-1))
	check(ddl.live.max <= lockTimeout+50*time.Millisecond, "DDL under a long-held lock stalls live traffic ≤ lock_timeout + 50 ms: max %v",
		ddl.live.max.Round(time.Millisecond))
}
