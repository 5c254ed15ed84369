package e2e

import (
	"database/sql"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/handoff-dev/handoff/internal/testdb"
)

// dbApp is an HTTP app that writes to its database through handoff's
// database endpoint: POST /write inserts a row and answers its id once
// the transaction has committed; GET /read counts the rows.
type dbApp struct {
	addr string
	db   *sql.DB
}

func startDBApp(t *testing.T, endpoint string) *dbApp {
	t.Helper()
	db, err := sql.Open("pgx", "postgres://postgres@"+endpoint+"/postgres?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(16)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /slow", func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(15 * time.Second) // a long request, in flight across the switchover
		fmt.Fprint(w, "slow done")
	})
	mux.HandleFunc("GET /read", func(w http.ResponseWriter, r *http.Request) {
		var n int64
		if err := db.QueryRowContext(r.Context(), "SELECT count(*) FROM acks").Scan(&n); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, n)
	})
	mux.HandleFunc("POST /write", func(w http.ResponseWriter, r *http.Request) {
		var id int64
		err := db.QueryRowContext(r.Context(), "INSERT INTO acks (note) VALUES ($1) RETURNING id", r.URL.Query().Get("note")).Scan(&id)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprint(w, id)
	})
	srv := &http.Server{Handler: mux}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close(); db.Close() })
	return &dbApp{addr: l.Addr().String(), db: db}
}

// writeLoad is HTTP clients on keep-alive connections posting writes
// through the gateway, never retrying; every answered id is an
// acknowledged write.
type writeLoad struct {
	mu     sync.Mutex
	acked  map[int64]string
	failed atomic.Int64
	errs   []string
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startWriteLoad(gateway string, clients int) *writeLoad {
	l := &writeLoad{acked: map[int64]string{}, stop: make(chan struct{})}
	deadline := time.Now().Add(2 * time.Minute) // bounded whatever happens
	for c := range clients {
		l.wg.Go(func() {
			client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
			for i := 0; time.Now().Before(deadline); i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				note := fmt.Sprintf("c%d-%d", c, i)
				resp, err := client.Post("http://"+gateway+"/write?note="+note, "text/plain", nil)
				var body []byte
				if err == nil {
					body, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				l.mu.Lock()
				switch {
				case err != nil:
					l.failed.Add(1)
					l.errs = append(l.errs, err.Error())
				case resp.StatusCode != http.StatusOK:
					l.failed.Add(1)
					l.errs = append(l.errs, fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body))))
				default:
					id, _ := strconv.ParseInt(string(body), 10, 64)
					l.acked[id] = note
				}
				l.mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	return l
}

func (l *writeLoad) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

func (l *writeLoad) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// checkOn asserts every acknowledged write is on the server at addr.
func (l *writeLoad) checkOn(t *testing.T, pg *testdb.PG) {
	t.Helper()
	db, err := sql.Open("pgx", pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	have := map[int64]string{}
	rows, err := db.Query("SELECT id, note FROM acks")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var note string
		if err := rows.Scan(&id, &note); err != nil {
			t.Fatal(err)
		}
		have[id] = note
	}
	rows.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	lost := 0
	for id, note := range l.acked {
		if have[id] != note {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes are not on %s", lost, len(l.acked), pg.Addr())
	}
	t.Logf("all %d acknowledged writes are on %s", len(l.acked), pg.Addr())
}

// switchoverNode starts handoff serve with one app (the dbApp) and the
// database endpoint main in front of primary.
func switchoverNode(t *testing.T, primary *testdb.PG) (*node, *dbApp) {
	endpoint := freeAddr(t)
	app := startDBApp(t, endpoint)
	n := newNode(t, fmt.Sprintf(`  web:
    targets: [%q]
    health: { path: /healthz, interval: 200ms }
    hold_max: 30s
databases:
  main:
    kind: postgres
    listen: %q
    primary: %q
`, app.addr, endpoint, primary.Addr()))
	return n, app
}

// handoff db switchover under HTTP load through the real binary: 32
// keep-alive clients posting writes that go through the gateway, the app,
// and the database endpoint; the switchover holds HTTP and the database,
// moves to the standby, and releases both. Zero failed requests, every
// acknowledged write on the new primary; a 15 s request in flight all the
// while finishes.
func TestSwitchoverUnderHTTPLoad(t *testing.T) {
	old := testdb.NewPG(t)
	old.Exec(t, "postgres", "CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL)")
	standby := old.Standby(t)
	n, _ := switchoverNode(t, old)

	l := startWriteLoad(n.gateway, 32)
	defer l.halt()
	waitUntil(t, 30*time.Second, "writes through the gateway", func() bool { return l.count() >= 300 })
	// A request that stays in flight for longer than the deadline does not
	// stop the switchover, and is not cut by it.
	slow := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + n.gateway + "/slow")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "slow done" {
				err = fmt.Errorf("%d %s", resp.StatusCode, body)
			}
		}
		slow <- err
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	out := n.must("db", "switchover", "main", "--to", standby.URL("postgres"), "--deadline", "5s")
	took := time.Since(start)
	t.Logf("handoff db switchover (%v):\n%s", took.Round(time.Millisecond), out)
	if !strings.Contains(out, "switched: the endpoint points at "+standby.Addr()) {
		t.Fatalf("switchover output:\n%s", out)
	}
	after := l.count()
	waitUntil(t, 30*time.Second, "writes after the switchover", func() bool { return l.count() >= after+300 })
	l.halt()
	if f := l.failed.Load(); f > 0 {
		t.Fatalf("%d failed requests: %v", f, l.errs[:min(len(l.errs), 5)])
	}
	l.checkOn(t, standby)
	if err := <-slow; err != nil {
		t.Fatalf("the long request in flight across the switchover: %v", err)
	}
	// The old primary refuses writes; a second switchover back is refused
	// (it is no replica of the new one), changing nothing.
	oldDB, err := sql.Open("pgx", old.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer oldDB.Close()
	if _, err := oldDB.Exec("INSERT INTO acks (note) VALUES ('after')"); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("a write on the old primary after the switchover: %v; want a read-only error", err)
	}
	r := n.cli("db", "switchover", "main", "--to", old.URL("postgres"))
	if r.code != 1 || !strings.Contains(r.stderr, "neither a standby") {
		t.Fatalf("switch back to the fenced old primary: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// kill -9 of handoff serve while a switchover waits for a late standby:
// the restarted handoff rolls it back — the old primary writable, the
// endpoint on it, the standby still a standby — and the app's writes go on.
func TestSwitchoverKilledServeRollsBackOnRestart(t *testing.T) {
	old := testdb.NewPG(t)
	old.Exec(t, "postgres", "CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL)")
	standby := old.Standby(t)
	n, app := switchoverNode(t, old)

	l := startWriteLoad(n.gateway, 8)
	defer l.halt()
	waitUntil(t, 30*time.Second, "writes through the gateway", func() bool { return l.count() >= 100 })
	// The standby applies each commit 3 s late: it passes the check (a
	// quarter of the 30 s deadline) and then keeps the switchover at
	// catching-up, fenced, long enough to kill handoff there.
	standby.Exec(t, "postgres", "ALTER SYSTEM SET recovery_min_apply_delay = '3s'")
	standby.Exec(t, "postgres", "SELECT pg_reload_conf()")

	done := make(chan result, 1)
	go func() {
		done <- n.cli("db", "switchover", "main", "--to", standby.URL("postgres"), "--deadline", "30s")
	}()
	oldDB, err := sql.Open("pgx", old.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer oldDB.Close()
	waitUntil(t, 30*time.Second, "the old primary to be fenced", func() bool {
		var ro string
		err := oldDB.QueryRow("SELECT setting FROM pg_settings WHERE name = 'default_transaction_read_only'").Scan(&ro)
		return err == nil && ro == "on"
	})
	n.kill9()
	if r := <-done; r.code == 0 {
		t.Fatalf("the switchover's CLI succeeded though its server was killed:\n%s", r.stdout)
	}
	l.halt()
	acked := l.count()
	// The kill cut the app's connections to the endpoint; a pool finds a
	// dead one only by using it (one failed query each). That is the cost
	// of killing handoff, not of the switchover: start the app's pool
	// afresh, as the app's own restart or health check would.
	app.db.SetMaxIdleConns(0)
	app.db.SetMaxIdleConns(16)

	// Recovery runs as the restarted handoff starts, before its endpoint
	// serves (the control socket may answer first).
	n.start()
	waitUntil(t, 30*time.Second, "the old primary to be writable again", func() bool {
		var ro string
		err := oldDB.QueryRow("SELECT setting FROM pg_settings WHERE name = 'default_transaction_read_only'").Scan(&ro)
		return err == nil && ro == "off"
	})
	l2 := startWriteLoad(n.gateway, 8)
	waitUntil(t, 30*time.Second, "writes after the restart", func() bool { return l2.count() >= 100 })
	l2.halt()
	if f := l2.failed.Load(); f > 0 {
		t.Fatalf("%d failed requests after the restart: %v", f, l2.errs[:min(len(l2.errs), 5)])
	}
	l.checkOn(t, old)
	l2.checkOn(t, old)
	standbyDB, err := sql.Open("pgx", standby.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer standbyDB.Close()
	var recovering bool
	if err := standbyDB.QueryRow("SELECT pg_is_in_recovery()").Scan(&recovering); err != nil || !recovering {
		t.Fatalf("the standby left recovery (%v, %v): two primaries", recovering, err)
	}
	t.Logf("rolled back on restart; %d writes acknowledged before the kill, all on the old primary", acked)
}
