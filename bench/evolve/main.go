// Command evolve benchmarks handoff's backfill against a one-shot UPDATE on
// Postgres, first on an idle database, then under a live workload that runs
// all the time, and prints every figure as a ratio to the baselines
// measured in the same run, with the goals of the default throttle.
//
//	go run ./bench/evolve [--rows 1000000] [--db postgres://postgres@127.0.0.1:5432/test] [--only idle-oneshot,idle-default,...]
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
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/handoff-dev/handoff/internal/dialect"
	"github.com/handoff-dev/handoff/internal/evolve"
	"github.com/handoff-dev/handoff/internal/migrate"
)

func main() {
	rows := flag.Int("rows", 1_000_000, "rows in the items table")
	admin := flag.String("db", "postgres://postgres@127.0.0.1:5432/test", "a Postgres database to create the benchmark's own database from")
	clients := flag.Int("clients", 8, "live workload clients")
	baseline := flag.Duration("baseline", 15*time.Second, "how long to measure the live workload alone")
	rate := flag.Float64("rate", 10000, "rate target (rows/s) to track; keep it below what the unthrottled run reaches")
	front := flag.String("frontier", "0.1,0.2,0.3,0.5", "the frontier phase: fractions of the idle one-shot's rows/s to pace a backfill at, one 15 s phase each (needs idle-oneshot)")
	flag.IntVar(&unthrottledWorkers, "workers", 2, "workers of the unthrottled backfill (one per core here)")
	flag.DurationVar(&batchTime, "batch-time", 0, "target batch time of the backfills (default: handoff's default)")
	only := flag.String("only", "", "comma-separated phases to run (default all): "+strings.Join(phaseKeys, ","))
	flag.BoolVar(&verbose, "v", false, "print the adaptive throttle's changes of pace")
	flag.Parse()
	if *only != "" {
		selected = map[string]bool{}
		for _, k := range strings.Split(*only, ",") {
			if !slices.Contains(phaseKeys, k) {
				fmt.Fprintf(os.Stderr, "bench: unknown phase %q (want %s)\n", k, strings.Join(phaseKeys, ","))
				os.Exit(2)
			}
			selected[k] = true
		}
	}
	if selected != nil && selected["frontier"] && !selected["idle-oneshot"] {
		fmt.Fprintln(os.Stderr, "bench: the frontier phase needs the idle-oneshot phase: its rates are shares of it")
		os.Exit(2)
	}
	for _, f := range strings.Split(*front, ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || v <= 0 {
			fmt.Fprintf(os.Stderr, "bench: -frontier: %q is not a fraction above 0\n", f)
			os.Exit(2)
		}
		frontier = append(frontier, v)
	}
	if err := run(*admin, *rows, *clients, *baseline, *rate); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// Overrides of handoff's defaults, to explore them.
var (
	unthrottledWorkers int
	batchTime          time.Duration
	verbose            bool
	selected           map[string]bool // nil: every phase
	frontier           []float64       // fractions of the idle one-shot's rows/s
)

// phaseKeys name the phases, in the order they run: on the idle database,
// then under the live workload.
var phaseKeys = []string{"idle-oneshot", "idle-default", "oneshot", "unthrottled", "fixed", "default", "serve", "rate", "frontier", "ddl"}

func want(key string) bool { return selected == nil || selected[key] }

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
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sigs // a bench stopped half-way leaves no database behind
		drop()
		os.Exit(1)
	}()
	d, err := dialect.Open(ctx, dbURL, 100*time.Millisecond)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := seed(ctx, d.DB(), rows); err != nil {
		return err
	}
	res := map[string]result{}
	var order []string
	do := func(key, name string, live *workload, f func() (int64, error)) error {
		if !want(key) && !(strings.HasPrefix(key, "frontier-") && want("frontier")) {
			return nil
		}
		r, err := measure(ctx, d.DB(), live, name, f)
		if err != nil {
			return err
		}
		res[key] = r
		order = append(order, key)
		report(r)
		return nil
	}

	// The idle database: nothing but the backfill.
	fmt.Println("idle database:")
	if err := do("idle-oneshot", "(i1) one-shot UPDATE", nil, func() (int64, error) { return oneShot(ctx, d.DB(), "title_lower_i1") }); err != nil {
		return err
	}
	if err := do("idle-default", "(i2) handoff default (adaptive)", nil, func() (int64, error) {
		return backfill(ctx, d, "title_lower_i2", tuned(evolve.DefaultSettings(), 0), 0, nil)
	}); err != nil {
		return err
	}

	live, err := startLive(dbURL, rows, clients)
	if err != nil {
		return err
	}
	defer live.stop()
	fmt.Println("\nunder the live workload:")
	time.Sleep(2 * time.Second) // warm up
	t0 := time.Now()
	time.Sleep(baseline)
	alone := result{name: "live alone", live: live.window(t0, time.Now()), elapsed: baseline}
	report(alone)

	phases := []struct {
		key, name string
		run       func() (int64, error)
	}{
		{"oneshot", "(a) one-shot UPDATE", func() (int64, error) { return oneShot(ctx, d.DB(), "title_lower_a") }},
		{"unthrottled", fmt.Sprintf("(b) handoff unthrottled, %d workers", max(unthrottledWorkers, 1)), func() (int64, error) {
			s := evolve.DefaultSettings().Unthrottled()
			s.Workers = max(unthrottledWorkers, 1)
			return backfill(ctx, d, "title_lower_b", tuned(s, 0), 0, nil)
		}},
		{"fixed", fmt.Sprintf("(c) handoff fixed duty %d%%", evolve.DefaultFixedDuty), func() (int64, error) {
			return backfill(ctx, d, "title_lower_c", tuned(evolve.DefaultSettings().Fixed(evolve.DefaultFixedDuty), 1), 0, nil)
		}},
		{"default", "(d) handoff default (adaptive, CLI)", func() (int64, error) {
			return backfill(ctx, d, "title_lower_d", tuned(evolve.DefaultSettings(), 0), 0, nil)
		}},
		{"serve", "(e) default + gateway p99 (serve)", func() (int64, error) {
			return backfill(ctx, d, "title_lower_e", tuned(evolve.DefaultSettings(), 0), 0, live.signal())
		}},
		{"rate", fmt.Sprintf("(f) handoff rate=%.0f", rate), func() (int64, error) {
			s := evolve.DefaultSettings().Unthrottled()
			s.Rate = rate
			return backfill(ctx, d, "title_lower_f", s, 15*time.Second, nil)
		}},
	}
	for _, p := range phases {
		if err := do(p.key, p.name, live, p.run); err != nil {
			return err
		}
	}
	// The frontier: a backfill paced evenly at a fixed share of the idle
	// one-shot's rows/s, with no throttle deciding anything. What the live
	// p99 is at each rate bounds what any throttle can do on this host.
	if one, ok := res["idle-oneshot"]; ok {
		for i, f := range frontier {
			rate := f * one.rowsPS
			err := do(fmt.Sprintf("frontier-%d", i), fmt.Sprintf("(h) paced at %.2f× the one-shot", f), live, func() (int64, error) {
				s := evolve.DefaultSettings().Unthrottled()
				s.Rate = rate
				return backfill(ctx, d, fmt.Sprintf("title_lower_h%d", i), tuned(s, 0), 15*time.Second, nil)
			})
			if err != nil {
				return err
			}
		}
	}
	const lockTimeout = 100 * time.Millisecond
	if want("ddl") {
		ddl, err := ddlUnderLock(ctx, dbURL, live, lockTimeout)
		if err != nil {
			return err
		}
		res["ddl"] = ddl
		order = append(order, "ddl")
		report(ddl)
	}
	summary(res, order, rate, lockTimeout)
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
		`ALTER TABLE items ADD COLUMN title_lower_i1 text, ADD COLUMN title_lower_i2 text, ADD COLUMN title_lower_a text, ADD COLUMN title_lower_b text,
			ADD COLUMN title_lower_c text, ADD COLUMN title_lower_d text, ADD COLUMN title_lower_e text, ADD COLUMN title_lower_f text`,
		frontierColumns(),
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

// frontierColumns adds a column per point of the frontier.
func frontierColumns() string {
	cols := make([]string, len(frontier))
	for i := range frontier {
		cols[i] = fmt.Sprintf("ADD COLUMN title_lower_h%d text", i)
	}
	if len(cols) == 0 {
		return "SELECT 1"
	}
	return "ALTER TABLE items " + strings.Join(cols, ", ")
}

// measure runs one phase, under the live workload when live is set, and
// vacuums after it, so that the next phase starts from a table without
// dead rows.
func measure(ctx context.Context, db *sql.DB, live *workload, name string, f func() (int64, error)) (result, error) {
	var base stats
	if live != nil {
		base = live.quiet()
	}
	start := time.Now()
	n, err := f()
	end := time.Now()
	if err != nil {
		return result{}, fmt.Errorf("%s: %w", name, err)
	}
	r := result{name: name, rowsPS: float64(n) / end.Sub(start).Seconds(), base: base, elapsed: end.Sub(start)}
	if live != nil {
		r.live = live.window(start, end)
	}
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
// after that long (for the rate target); sig is the live p99 that handoff
// serve's gateway would give it.
func backfill(ctx context.Context, d dialect.Dialect, col string, s evolve.Settings, limit time.Duration, sig evolve.LiveSignal) (int64, error) {
	if limit > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}
	job := evolve.Job{Name: "bench_" + col, Table: "items", Key: "id", Settings: s, Live: sig, Statements: []string{
		fmt.Sprintf(`UPDATE items SET %[1]s = lower(title) WHERE id >= $1 AND id < $2`, col),
	}}
	start := time.Now()
	res, err := evolve.Run(ctx, d, job, func(e evolve.Event) {
		if verbose && e.Kind == evolve.EventThrottle {
			fmt.Printf("    %6.1fs %s\n", time.Since(start).Seconds(), e.Reason)
		}
	})
	if limit > 0 && ctx.Err() != nil {
		st, gerr := evolve.Get(context.Background(), d, job.Name)
		return st.Rows, gerr
	}
	return res.Rows, err
}

// ddlUnderLock holds an ACCESS SHARE lock on items for 3 s while handoff's
// expand adds a column under a 100 ms lock timeout.
func ddlUnderLock(ctx context.Context, dbURL string, live *workload, lockTimeout time.Duration) (result, error) {
	dir, err := os.MkdirTemp("", "bench-migrations")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "0001_add.sql"), []byte("ALTER TABLE items ADD COLUMN flag boolean;\n"), 0o644); err != nil {
		return result{}, err
	}
	m, err := migrate.Open(ctx, dbURL, migrate.Options{Dirs: []string{dir}, LockTimeout: lockTimeout})
	if err != nil {
		return result{}, err
	}
	defer m.Close()
	long, err := m.Dialect().DB().BeginTx(ctx, nil)
	if err != nil {
		return result{}, err
	}
	defer long.Rollback()
	if _, err := long.ExecContext(ctx, `SELECT 1 FROM items LIMIT 1`); err != nil {
		return result{}, err
	}
	base := live.quiet()
	time.AfterFunc(3*time.Second, func() { long.Commit() })
	start := time.Now()
	if err := m.Expand(ctx); err != nil {
		return result{}, err
	}
	end := time.Now()
	return result{name: "(g) DDL behind a 3 s lock", live: live.window(start, end), base: base, elapsed: end.Sub(start)}, nil
}

// workload is the live traffic: clients doing 80 % point reads and 20 %
// point updates by random id, each its own transaction.
type workload struct {
	db    *sql.DB
	waits *waitSampler // what its sessions wait for
	done  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	obs   []observation
	// lastQuiet is the p99 of the last quiet window, the baseline of the
	// gateway signal.
	lastQuiet time.Duration
}

type observation struct {
	end     time.Time
	latency time.Duration
	write   bool
}

func startLive(dbURL string, rows, clients int) (*workload, error) {
	liveURL, err := withAppName(dbURL, liveApp)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("pgx", liveURL)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(clients)
	w := &workload{db: db, done: make(chan struct{})}
	if w.waits, err = startWaits(dbURL); err != nil {
		return nil, err
	}
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
		if len(buf) >= 32 { // the gateway signal reads the last two seconds
			flush()
		}
	}
}

// quiet measures the live workload alone for five seconds.
func (w *workload) quiet() stats {
	start := time.Now()
	time.Sleep(5 * time.Second)
	s := w.window(start, time.Now())
	w.mu.Lock()
	w.lastQuiet = s.p99
	w.mu.Unlock()
	return s
}

func (w *workload) stop() {
	close(w.done)
	w.wg.Wait()
	w.db.Close()
	w.waits.stop()
}

// stats are the live workload's figures over a window.
type stats struct {
	tps      float64
	p99, max time.Duration
	// p99 of the reads and of the writes alone: a write waits for its
	// commit's WAL flush and for row locks, a read for neither.
	p99r, p99w time.Duration
	// p50w and p90w: the body of the writes' latency, where a canary's
	// p90 sits (the p99 can be in the host's stalls, which a batch barely
	// moves).
	p50w, p90w time.Duration
	gap        time.Duration // longest interval without a live write committing
	// waits is what the live sessions waited for over the window, and
	// gapWaits in its longest write gap (pg_stat_activity samples).
	waits, gapWaits string
}

func (w *workload) window(from, to time.Time) stats {
	time.Sleep(500 * time.Millisecond) // let parked queries finish and clients flush
	w.mu.Lock()
	defer w.mu.Unlock()
	var lat, reads, writes []time.Duration
	last, gapAt := from, from
	var s stats
	obs := slices.Clone(w.obs)
	slices.SortFunc(obs, func(a, b observation) int { return a.end.Compare(b.end) })
	for _, o := range obs {
		// Latency counts every query that started in the window, however
		// late it finished (a writer parked behind the one-shot UPDATE);
		// the gap counts writes that committed in it.
		if start := o.end.Add(-o.latency); !start.Before(from) && !start.After(to) {
			lat = append(lat, o.latency)
			if o.write {
				writes = append(writes, o.latency)
			} else {
				reads = append(reads, o.latency)
			}
		}
		if o.write && !o.end.Before(from) && !o.end.After(to) {
			if o.end.Sub(last) > s.gap {
				s.gap, gapAt = o.end.Sub(last), last
			}
			last = o.end
		}
	}
	if to.Sub(last) > s.gap {
		s.gap, gapAt = to.Sub(last), last
	}
	s.waits = w.waits.summary(from, to)
	s.gapWaits = w.waits.summary(gapAt, gapAt.Add(s.gap))
	if len(lat) == 0 {
		return s
	}
	s.p99r, s.p99w = p99Of(reads), p99Of(writes)
	if len(writes) > 0 { // sorted by p99Of
		s.p50w, s.p90w = writes[len(writes)/2], writes[len(writes)*9/10]
	}
	s.tps = float64(len(lat)) / to.Sub(from).Seconds()
	s.p99 = p99Of(lat)
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
		fmt.Printf("%-38s %6.1fs  live %6.0f TPS  p99 %7v  max %7v  longest write gap %7v  (load %s)\n", "  live alone before it", 5.0,
			r.base.tps, r.base.p99.Round(10*time.Microsecond), r.base.max.Round(time.Millisecond), r.base.gap.Round(time.Millisecond), loadavg())
		details("    ", r.base)
	}
	rows := ""
	if r.rowsPS > 0 {
		rows = fmt.Sprintf("%8.0f rows/s  ", r.rowsPS)
	}
	if r.live.tps == 0 {
		fmt.Printf("%-38s %6.1fs  %s(load %s)\n", r.name, r.elapsed.Seconds(), rows, loadavg())
		return
	}
	fmt.Printf("%-38s %6.1fs  %slive %6.0f TPS  p99 %7v  max %7v  longest write gap %7v  (load %s)\n", r.name, r.elapsed.Seconds(), rows,
		r.live.tps, r.live.p99.Round(10*time.Microsecond), r.live.max.Round(time.Millisecond), r.live.gap.Round(time.Millisecond), loadavg())
	details("  ", r.live)
}

// details prints the p99 of reads and writes apart and what the live
// sessions waited for, over the window and in its longest write gap.
func details(indent string, s stats) {
	fmt.Printf("%sp99 reads %v, writes %v (writes p50 %v, p90 %v); live sessions: %s; in the longest write gap: %s\n", indent,
		s.p99r.Round(10*time.Microsecond), s.p99w.Round(10*time.Microsecond), s.p50w.Round(10*time.Microsecond),
		s.p90w.Round(10*time.Microsecond), s.waits, s.gapWaits)
}

func summary(res map[string]result, order []string, rate float64, lockTimeout time.Duration) {
	idleOne, one := res["idle-oneshot"], res["oneshot"]
	ratio := func(r, to result) string {
		if r.rowsPS <= 0 || to.rowsPS <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f×", r.rowsPS/to.rowsPS)
	}
	live := func(a, b time.Duration) string {
		if b <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2f×", float64(a)/float64(b))
	}
	fmt.Println("\nratios (rows/s to the one-shot UPDATE on the idle database and under the live workload; live figures to the live workload alone in the 5 s before each phase):")
	fmt.Printf("%-38s %9s %9s %8s %8s %8s %8s %9s\n", "", "rows/s÷i1", "rows/s÷a", "TPS", "p99", "max", "gap", "gap (abs)")
	for _, k := range order {
		r := res[k]
		tps := "-"
		if r.base.tps > 0 {
			tps = fmt.Sprintf("%.2f×", r.live.tps/r.base.tps)
		}
		gap := "-"
		if r.live.tps > 0 {
			gap = r.live.gap.Round(time.Millisecond).String()
		}
		fmt.Printf("%-38s %9s %9s %8s %8s %8s %8s %9s\n", r.name, ratio(r, idleOne), ratio(r, one), tps,
			live(r.live.p99, r.base.p99), live(r.live.max, r.base.max), live(r.live.gap, r.base.gap), gap)
	}
	fmt.Println("\ngoals:")
	check := func(key string, ok bool, format string, args ...any) {
		if _, ran := res[key]; !ran {
			return
		}
		mark := "MET   "
		if !ok {
			mark = "MISSED"
		}
		fmt.Printf("  %s "+format+"\n", append([]any{mark}, args...)...)
	}
	if _, ok := res["idle-oneshot"]; ok {
		r := res["idle-default"]
		check("idle-default", r.rowsPS >= 0.7*idleOne.rowsPS, "idle: default ≥ 0.7× one-shot rows/s: %s", ratio(r, idleOne))
	}
	// The goal is the default's; the other throttles of the same run are
	// held to it too, for comparison on the same host at the same time.
	for _, k := range []string{"default", "serve", "fixed", "unthrottled"} {
		r := res[k]
		what := "under load"
		if k == "fixed" || k == "unthrottled" {
			what = "(for comparison)"
		}
		check(k, r.live.p99 <= 3*r.base.p99/2 && r.live.gap <= 200*time.Millisecond && r.rowsPS >= 0.3*one.rowsPS,
			"%s %s: live p99 ≤ 1.5× baseline (%s), no live write gap > 0.2 s (%v), ≥ 0.3× one-shot rows/s (%s)",
			r.name, what, live(r.live.p99, r.base.p99), r.live.gap.Round(time.Millisecond), ratio(r, one))
	}
	b := res["unthrottled"]
	check("unthrottled", b.rowsPS >= 0.5*one.rowsPS && b.live.gap <= 300*time.Millisecond,
		"unthrottled ≥ 0.5× one-shot rows/s (%s), no live write gap over 0.3 s (%v)", ratio(b, one), b.live.gap.Round(time.Millisecond))
	rr := res["rate"]
	check("rate", rr.rowsPS >= 0.9*rate && rr.rowsPS <= 1.1*rate, "rate target %.0f tracked within ±10%%: %.0f rows/s (%+.1f%%)",
		rate, rr.rowsPS, 100*(rr.rowsPS/rate-1))
	frontierSummary(res, live)
	ddl := res["ddl"]
	check("ddl", ddl.live.max <= lockTimeout+50*time.Millisecond, "DDL under a long-held lock stalls live traffic ≤ lock_timeout + 50 ms: max %v",
		ddl.live.max.Round(time.Millisecond))
}

// frontierSummary says, from the paced phases, how far pacing alone gets
// on this host: the most a paced backfill wrote with the live p99 ≤ 1.5×
// and no write gap over 0.2 s, and each point's figures.
func frontierSummary(res map[string]result, live func(a, b time.Duration) string) {
	one := res["idle-oneshot"]
	var lines []string
	reach := 0.0
	for i, f := range frontier {
		r, ok := res[fmt.Sprintf("frontier-%d", i)]
		if !ok {
			continue
		}
		got := r.rowsPS / one.rowsPS
		ok = r.live.p99 <= 3*r.base.p99/2 && r.live.gap <= 200*time.Millisecond
		if ok {
			reach = max(reach, got)
		}
		lines = append(lines, fmt.Sprintf("    paced at %.2f×: wrote %.2f×, live p99 %s, longest write gap %v: %s", f, got,
			live(r.live.p99, r.base.p99), r.live.gap.Round(time.Millisecond), map[bool]string{true: "within", false: "over"}[ok]))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Printf("  the frontier (a backfill paced evenly, nothing deciding): the most it wrote with live p99 ≤ 1.5× and no write gap > 0.2 s: %.2f× the one-shot (the goal asks 0.3×)\n", reach)
	for _, l := range lines {
		fmt.Println(l)
	}
}

// liveP99 is the live workload's latency as handoff serve's gateway would
// report it to a backfill (evolve.LiveSignal): the p99 of the queries that
// ended in the last two seconds, against the p99 of the five seconds
// before the backfill began.
type liveP99 struct {
	w    *workload
	base time.Duration
}

func (w *workload) signal() evolve.LiveSignal {
	return &liveP99{w: w, base: w.lastQuiet}
}

func (l *liveP99) P99() (now, baseline time.Duration, ok bool) {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	from := time.Now().Add(-2 * time.Second)
	var lat []time.Duration
	// Clients flush in turns, so the tail is in order only roughly.
	for i := len(l.w.obs) - 1; i >= max(len(l.w.obs)-50000, 0); i-- {
		if l.w.obs[i].end.After(from) {
			lat = append(lat, l.w.obs[i].latency)
		}
	}
	if len(lat) < 100 || l.base <= 0 {
		return 0, 0, false
	}
	slices.Sort(lat)
	return lat[len(lat)*99/100], l.base, true
}
