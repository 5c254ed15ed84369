package switchover

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/handoff-dev/handoff/internal/dbproxy"
	"github.com/handoff-dev/handoff/internal/switchover"
	"github.com/handoff-dev/handoff/internal/testdb"
)

var (
	runs     = flag.Int("n", 10, "switchovers per kind and way")
	writers  = flag.Int("writers", 16, "concurrent writers (never retrying)")
	deadline = flag.Duration("deadline", 5*time.Second, "the switchover's deadline")
)

// pair is one primary and its replica, made fresh for each run.
type pair struct {
	kind             dbproxy.Kind
	oldAddr, newAddr string
	oldURL, newURL   string
	dsn              func(addr string) (string, string) // driver, DSN
	insert           string
	// naivePromote promotes the replica by hand, the way a runbook would.
	naivePromote func(ctx context.Context) error
}

func pgPhysical(b *testing.B) pair {
	old := testdb.NewPG(b)
	old.Exec(b, "postgres", "CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL)")
	s := old.Standby(b)
	return pgPair(dbproxy.Postgres, old, s, func(ctx context.Context) error {
		return exec(ctx, "pgx", s.URL("postgres"), "SELECT pg_promote()")
	})
}

func pgLogical(b *testing.B) pair {
	old := testdb.NewPG(b)
	old.Exec(b, "postgres", "CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL)")
	s := testdb.NewPG(b)
	s.Subscribe(b, old, "postgres", "bench")
	return pgPair(dbproxy.Postgres, old, s, func(ctx context.Context) error {
		// The runbook's way: drop the subscription; sequences are
		// forgotten, as they are when nobody knows they must be copied.
		return exec(ctx, "pgx", s.URL("postgres"), "DROP SUBSCRIPTION bench")
	})
}

func pgPair(kind dbproxy.Kind, old, s *testdb.PG, promote func(context.Context) error) pair {
	return pair{kind: kind, oldAddr: old.Addr(), newAddr: s.Addr(), oldURL: old.URL("postgres"), newURL: s.URL("postgres"),
		dsn: func(addr string) (string, string) {
			return "pgx", "postgres://postgres@" + addr + "/postgres?sslmode=disable"
		},
		insert: "INSERT INTO acks (note) VALUES ($1) RETURNING id", naivePromote: promote}
}

func mariaDB(b *testing.B) pair {
	old := testdb.NewMariaDB(b)
	old.Exec(b, "", "CREATE DATABASE app", "CREATE TABLE app.acks (id bigint AUTO_INCREMENT PRIMARY KEY, note varchar(64) NOT NULL)",
		"CREATE USER app@'127.0.0.1'", "GRANT ALL ON app.* TO app@'127.0.0.1'")
	r := old.Replica(b)
	return pair{kind: dbproxy.MySQL, oldAddr: old.Addr(), newAddr: r.Addr(),
		oldURL: "mysql://root@" + old.Addr() + "/", newURL: "mysql://root@" + r.Addr() + "/",
		dsn:    func(addr string) (string, string) { return "mysql", "app@tcp(" + addr + ")/app?timeout=5s" },
		insert: "INSERT INTO acks (note) VALUES (?) RETURNING id",
		naivePromote: func(ctx context.Context) error {
			return exec(ctx, "mysql", r.DSN(""), "STOP SLAVE", "RESET SLAVE ALL", "SET GLOBAL read_only = 0")
		}}
}

func exec(ctx context.Context, driver, dsn string, stmts ...string) error {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return err
	}
	defer db.Close()
	for _, s := range stmts {
		if _, err := db.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// result is one run's figures.
type result struct {
	pause                        time.Duration
	acked, failed, lost, collide int
}

// writeLoad writes through db until stop, recording acknowledged writes
// and the time of each.
type writeLoad struct {
	mu      sync.Mutex
	acked   map[int64]string
	times   []time.Time
	failed  int
	collide int
	down    bool // the naive way: the app is stopped, a request fails
	stop    chan struct{}
	wg      sync.WaitGroup
}

func startWrites(db func() *sql.DB, insert string, n int) *writeLoad {
	l := &writeLoad{acked: map[int64]string{}, stop: make(chan struct{})}
	end := time.Now().Add(2 * time.Minute)
	for w := range n {
		l.wg.Go(func() {
			for i := 0; time.Now().Before(end); i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				l.mu.Lock()
				down := l.down
				l.mu.Unlock()
				if down {
					l.mu.Lock()
					l.failed++ // the app is stopped: its users get an error
					l.mu.Unlock()
					time.Sleep(10 * time.Millisecond)
					continue
				}
				note := fmt.Sprintf("w%d-%d", w, i)
				var id int64
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := db().QueryRowContext(ctx, insert, note).Scan(&id)
				cancel()
				l.mu.Lock()
				if err != nil {
					l.failed++
					if s := err.Error(); strings.Contains(s, "duplicate") || strings.Contains(s, "Duplicate") {
						l.collide++
					}
				} else {
					l.acked[id] = note
					l.times = append(l.times, time.Now())
				}
				l.mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		})
	}
	return l
}

func (l *writeLoad) waitFor(n int) {
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		l.mu.Lock()
		got := len(l.acked)
		l.mu.Unlock()
		if got >= n {
			return
		}
	}
}

func (l *writeLoad) count() int { l.mu.Lock(); defer l.mu.Unlock(); return len(l.acked) }

func (l *writeLoad) finish(b *testing.B, p pair) result {
	close(l.stop)
	l.wg.Wait()
	slices.SortFunc(l.times, time.Time.Compare)
	r := result{acked: len(l.acked), failed: l.failed, collide: l.collide}
	for i := 1; i < len(l.times); i++ {
		r.pause = max(r.pause, l.times[i].Sub(l.times[i-1]))
	}
	driver, dsn := p.dsn(p.newAddr)
	db, err := sql.Open(driver, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	have := map[int64]string{}
	rows, err := db.Query("SELECT id, note FROM acks")
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var note string
		if err := rows.Scan(&id, &note); err != nil {
			b.Fatal(err)
		}
		have[id] = note
	}
	rows.Close()
	for id, note := range l.acked {
		if have[id] != note {
			r.lost++
		}
	}
	return r
}

// handoffWay: the app's pool on dbproxy's endpoint, handoff's switchover.
func handoffWay(b *testing.B, p pair) result {
	ep, err := dbproxy.New(dbproxy.Options{Name: "bench", Kind: p.kind, Primary: p.oldAddr})
	if err != nil {
		b.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go ep.Serve(l)
	defer ep.Close()
	driver, dsn := p.dsn(l.Addr().String())
	db, err := sql.Open(driver, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	w := startWrites(func() *sql.DB { return db }, p.insert, *writers)
	w.waitFor(200)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sp, err := switchover.Open(ctx, p.oldURL, p.newURL)
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	if _, err := switchover.Run(ctx, sp, switchover.Options{Name: "bench", Deadline: *deadline, Endpoint: ep}); err != nil {
		b.Logf("switchover: %v", err)
	}
	w.waitFor(w.count() + 200)
	return w.finish(b, p)
}

// naiveWay: the app connects to the server itself; stop it, wait for the
// replica, promote it, start the app on the new server.
func naiveWay(b *testing.B, p pair) result {
	var mu sync.Mutex
	driver, dsn := p.dsn(p.oldAddr)
	db, err := sql.Open(driver, dsn)
	if err != nil {
		b.Fatal(err)
	}
	current := func() *sql.DB { mu.Lock(); defer mu.Unlock(); return db }
	w := startWrites(current, p.insert, *writers)
	w.waitFor(200)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w.mu.Lock()
	w.down = true // stop the app
	w.mu.Unlock()
	time.Sleep(100 * time.Millisecond) // what was in flight finishes
	sp, err := switchover.Open(ctx, p.oldURL, p.newURL)
	if err != nil {
		b.Fatal(err)
	}
	pos, err := sp.Position(ctx)
	if err == nil {
		err = sp.CaughtUp(ctx, pos)
	}
	sp.Close()
	if err != nil {
		b.Fatal(err)
	}
	if err := p.naivePromote(ctx); err != nil {
		b.Fatal(err)
	}
	driver, dsn = p.dsn(p.newAddr)
	ndb, err := sql.Open(driver, dsn)
	if err != nil {
		b.Fatal(err)
	}
	mu.Lock()
	old := db
	db = ndb
	mu.Unlock()
	old.Close()
	w.mu.Lock()
	w.down = false // start the app again
	w.mu.Unlock()
	w.waitFor(w.count() + 200)
	r := w.finish(b, p)
	ndb.Close()
	return r
}

func BenchmarkSwitchover(b *testing.B) {
	kinds := []struct {
		name string
		make func(*testing.B) pair
	}{{"postgres-physical", pgPhysical}, {"postgres-logical", pgLogical}, {"mariadb-gtid", mariaDB}}
	ways := []struct {
		name string
		run  func(*testing.B, pair) result
	}{{"handoff", handoffWay}, {"naive", naiveWay}}
	var report []string
	for range b.N {
		for _, k := range kinds {
			for _, w := range ways {
				var rs []result
				for i := range *runs {
					b.Run(fmt.Sprintf("%s/%s/%d", k.name, w.name, i), func(b *testing.B) {
						rs = append(rs, w.run(b, k.make(b)))
					})
				}
				report = append(report, summary(k.name, w.name, rs))
			}
		}
	}
	fmt.Printf("\n%-18s %-8s %4s %9s %9s %9s %7s %7s %5s %9s\n", "kind", "way", "runs", "pause p50", "p99", "max", "acked", "failed", "lost", "collision")
	for _, line := range report {
		fmt.Println(line)
	}
}

func summary(kind, way string, rs []result) string {
	var pauses []time.Duration
	var acked, failed, lost, collide int
	for _, r := range rs {
		pauses = append(pauses, r.pause)
		acked += r.acked
		failed += r.failed
		lost += r.lost
		collide += r.collide
	}
	slices.Sort(pauses)
	q := func(f float64) time.Duration {
		if len(pauses) == 0 {
			return 0
		}
		return pauses[min(len(pauses)-1, int(f*float64(len(pauses))))]
	}
	return fmt.Sprintf("%-18s %-8s %4d %9v %9v %9v %7d %7d %5d %9d", kind, way, len(rs),
		q(0.5).Round(time.Millisecond), q(0.99).Round(time.Millisecond), q(1).Round(time.Millisecond), acked, failed, lost, collide)
}
