package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/loadgen"
	"github.com/handoff-dev/handoff/internal/testdb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// txTime is how long each page of startTxApps keeps its transaction open,
// at least; at most twice that. Longer than the 100 ms lock timeout, which
// is what starves an ALTER TABLE: it needs 100 ms in which no page began.
// Random, so that the pages do not fall into step (those that waited
// behind an attempt of the ALTER all begin together when it gives up) and
// leave such gaps between the steps.
const txTime = 200 * time.Millisecond

// startTxApps serves two instances of an app, in the test process, whose
// every page is a transaction that reads a row of items and keeps it for
// txTime to twice that (an app that renders inside its request's transaction, as
// frameworks that wrap each request in one do). They share one pool of
// clients connections: the Postgres server is shared with other tests. A
// database error is a 500 (a failed request for the load), and logged.
func startTxApps(t *testing.T, url string, clients int) (string, string) {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), fmt.Sprintf("%s?pool_max_conns=%d", url, clients))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var logged atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /item", func(w http.ResponseWriter, r *http.Request) {
		err := pgx.BeginFunc(r.Context(), pool, func(tx pgx.Tx) error {
			var title string
			if err := tx.QueryRow(r.Context(), `SELECT title FROM items WHERE id = $1`, 1+rand.IntN(1000)).Scan(&title); err != nil {
				return err
			}
			time.Sleep(txTime + rand.N(txTime))
			return nil
		})
		if err != nil {
			if logged.Add(1) <= 3 {
				t.Logf("the app failed a page: %v", err)
			}
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	serve := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: mux}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().String()
	}
	return serve(), serve()
}

// ddlRun is what one run of a DDL under load saw.
type ddlRun struct {
	first, done time.Time     // the ALTER's first attempt seen in pg_stat_activity; its column in the table
	watched     time.Duration // from first until done, or until the test stopped waiting
	load        loadgen.Result
	longest     time.Duration // of the requests begun from a second before first on
	n           *node
}

// ddlUnderLoad serves app web from startTxApps under 16 keep-alive clients
// that never retry, then deploys its second instance whose migration adds a
// column to items, with database.escalate as given. It waits up to within
// for the ALTER TABLE to be done, counting from its first attempt; then
// it stops the load and waits for the deploy.
func ddlUnderLoad(t *testing.T, escalate string, within time.Duration) ddlRun {
	url := testdb.Postgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE items (id bigint PRIMARY KEY, title text NOT NULL);
		INSERT INTO items SELECT g, 'Item ' || g FROM generate_series(1, 1000) g`); err != nil {
		t.Fatal(err)
	}
	const clients = 16
	v1, v2 := startTxApps(t, url, clients)
	migrations := t.TempDir()
	n := newNode(t, fmt.Sprintf("  web:\n    targets: [%q]\n    health: { path: /healthz, interval: 200ms }\n", v1))
	appendConfig(t, n, fmt.Sprintf("database:\n  url: %q\n  migrations: %s\n  lock_timeout: 100ms\n  escalate: %s\n", url, migrations, escalate))

	var mu sync.Mutex
	var recs []loadgen.Record // a few thousand
	load, err := loadgen.Start(ctx, loadgen.Config{Addr: n.gateway, Fast: clients, FastPath: "/item", Duration: 3 * time.Minute, Timeout: 30 * time.Second,
		Record: func(r loadgen.Record) {
			mu.Lock()
			recs = append(recs, r)
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			load.Stop()
		}
	}()
	time.Sleep(2 * time.Second) // the load at full flow, the pools filled
	if err := os.WriteFile(filepath.Join(migrations, "0001_title_lower.sql"), []byte("-- handoff:expand\nALTER TABLE items ADD COLUMN title_lower text;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	deployed, out := deployTargetInBackground(t, n, v2)
	t.Logf("escalate %s: deploying under load", escalate)

	var run ddlRun
	deadline := time.Now().Add(2 * time.Minute) // the first attempt comes after the lint's first parse
	for {
		var alters, columns int
		if err := conn.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM pg_stat_activity WHERE query LIKE 'ALTER TABLE items%'),
			(SELECT count(*) FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'title_lower')`).Scan(&alters, &columns); err != nil {
			t.Fatal(err)
		}
		if alters > 0 && run.first.IsZero() {
			run.first = time.Now()
		}
		if columns > 0 {
			run.done = time.Now()
			break
		}
		if run.first.IsZero() && time.Now().After(deadline) || !run.first.IsZero() && time.Since(run.first) >= within {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	run.watched = time.Since(run.first)
	t.Logf("escalate %s: %s", escalate, ddlOutcome(run))
	if run.first.IsZero() {
		t.Fatalf("the ALTER TABLE never ran:\n%s\n%s", out, n.output())
	}
	run.load, stopped = load.Stop(), true
	t.Logf("escalate %s: load stopped; waiting for the deploy", escalate)
	select {
	case err := <-deployed:
		if err != nil {
			t.Fatalf("the deploy: %v\n%s", err, out)
		}
	case <-time.After(time.Minute):
		t.Fatalf("the deploy did not end within a minute of the load's end:\n%s", out)
	}
	// The longest request of those the DDL could touch: begun from a
	// second before its first attempt (one that waited behind an attempt's
	// lock) on; the first ones, while the app's pool and the gateway's
	// connections were new, are not its doing.
	mu.Lock()
	for _, r := range recs {
		d := r.End.Sub(r.Start)
		if r.Start.After(run.first.Add(-time.Second)) {
			run.longest = max(run.longest, d)
		}
		if d > time.Second {
			t.Logf("escalate %s: a request took %v, from %v after the ALTER's first attempt (status %d, %v)",
				escalate, d.Round(time.Millisecond), r.Start.Sub(run.first).Round(time.Millisecond), r.Status, r.Err)
		}
	}
	mu.Unlock()
	run.n = n
	return run
}

// deployTargetInBackground runs 'handoff deploy web --target addr'; the
// channel gets its end.
func deployTargetInBackground(t *testing.T, n *node, addr string) (<-chan error, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(bin, "deploy", "web", "--target", addr, "--label", "v2", "--socket", n.socket)
	cmd.Dir = n.dir
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done, exited := make(chan error, 1), make(chan struct{})
	go func() {
		done <- cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
	})
	return done, out
}

// TestDDLEscalation: an app whose pages each keep a transaction on items
// for 200-400 ms, under 16 keep-alive clients that never retry, starves an
// ALTER TABLE under a 100 ms lock timeout. Through the real binary, with a
// deploy's release pipeline running the migration: with escalation off
// the ALTER keeps losing its lock for as long as the test waits (20 s);
// on (a 2 s bound), the gateway holds new requests, those in flight
// finish, the ALTER takes its lock within seconds — and no request fails,
// none is refused, and the longest waits no more than the bound plus its
// own time and a margin.
func TestDDLEscalation(t *testing.T) {
	// Twice the pages' longest time for them to finish in (half the bound),
	// with room for a CI host under load.
	const hold = 2 * time.Second
	off := ddlUnderLoad(t, "off", 20*time.Second)
	t.Logf("escalation off: %s; %d requests, %d failed, p99 %v, longest %v",
		ddlOutcome(off), off.load.Requests, off.load.Failures, off.load.Latency.P99, off.longest)
	if !off.done.IsZero() {
		t.Errorf("without escalation the ALTER should starve; it took its lock after %v", off.done.Sub(off.first))
	}

	on := ddlUnderLoad(t, hold.String(), 20*time.Second)
	t.Logf("escalation on: %s; %d requests, %d failed, refused %v, p99 %v, longest %v",
		ddlOutcome(on), on.load.Requests, on.load.Failures, on.load.Refused, on.load.Latency.P99, on.longest)
	if on.done.IsZero() || on.done.Sub(on.first) > 8*time.Second {
		t.Errorf("with escalation the ALTER should take its lock within seconds: %s", ddlOutcome(on))
	}
	for _, r := range []ddlRun{off, on} {
		if r.load.Failures > 0 || len(r.load.Refused) > 0 {
			t.Errorf("%d requests failed, refused: %v; errors: %v", r.load.Failures, r.load.Refused, r.load.Errors)
		}
	}
	// A request is held for at most the bound, then takes its own time;
	// the margin is for a CI host under load.
	if limit := hold + 2*txTime + time.Second; on.longest > limit {
		t.Errorf("the longest request took %v, more than the hold's bound plus its own time and a margin (%v)", on.longest, limit)
	}
	held := ""
	for _, e := range events(t, on.n) {
		if strings.Contains(e.Message, "new requests were held for") {
			held = e.Message
		}
	}
	if !strings.Contains(held, "while it took the lock") {
		t.Errorf("the event log should say that requests were held while the ALTER took its lock; last: %q", held)
	}
	t.Logf("event: %s", held)
}

func ddlOutcome(r ddlRun) string {
	if r.done.IsZero() {
		return "the ALTER had not taken its lock after " + r.watched.Round(time.Millisecond).String()
	}
	return "the ALTER took its lock after " + r.done.Sub(r.first).Round(time.Millisecond).String()
}
