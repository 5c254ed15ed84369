package dbproxy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/testdb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"
)

// pgEndpoint starts an endpoint in front of the server of dbURL and
// returns it with the URL a client uses to reach the same database
// through it.
func pgEndpoint(t *testing.T, dbURL string, opts Options) (*Endpoint, string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	opts.Kind, opts.Name = Postgres, "pg"
	if opts.Primary == "" {
		opts.Primary = u.Host
	}
	e, addr := serveEndpoint(t, opts)
	u.Host = addr
	q := u.Query()
	q.Set("sslmode", "disable")
	u.RawQuery = q.Encode()
	return e, u.String()
}

// relay is a second address for the same server: a TCP relay that counts
// the connections it carries, so that a test sees sessions arrive there.
type relay struct {
	addr  string
	conns atomic.Int64
}

func newRelay(t *testing.T, target string) *relay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	r := &relay{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r.conns.Add(1)
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(s, c); s.Close() }()
			go func() { io.Copy(c, s); c.Close() }()
		}
	}()
	return r
}

// TestPGPauseRepointUnderLoad runs many clients with transactions through
// the endpoint — pgxpool with pgx's default statement cache, and
// database/sql over pgx's stdlib — pauses, checks that no transaction is
// open and none starts while paused, repoints to a SECOND server (a temp
// cluster), resumes, and checks that the clients' next transactions run
// there, that no transaction was split (between servers or server
// sessions), and that no client saw an error.
func TestPGPauseRepointUnderLoad(t *testing.T) {
	dbURL := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	direct, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	const schema = `CREATE TABLE tx (client int, seq int, part int, pid int, PRIMARY KEY (client, seq, part))`
	if _, err := direct.Exec(ctx, schema); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(dbURL)
	dbName := u.Path[1:]
	second := testdb.NewPG(t)
	second.Exec(t, "postgres", "CREATE DATABASE "+dbName)
	second.Exec(t, dbName, schema)
	e, through := pgEndpoint(t, dbURL, Options{})

	pool, err := pgxpool.New(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	sqlDB, err := sql.Open("pgx", through)
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	sqlDB.SetMaxOpenConns(8)

	const clients = 16
	var (
		commits, failures atomic.Int64
		stop              atomic.Bool
		mu                sync.Mutex
		firstErr          error
	)
	fail := func(err error) {
		failures.Add(1)
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	// One transaction: two statements, each recording its backend's pid;
	// a split transaction would show two pids.
	txPool := func(client, seq int) error {
		tx, err := pool.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx)
		var pid1, pid2 int
		if err := tx.QueryRow(ctx, `INSERT INTO tx VALUES ($1, $2, 1, pg_backend_pid()) RETURNING pid`, client, seq).Scan(&pid1); err != nil {
			return err
		}
		time.Sleep(time.Millisecond) // a transaction that spans time
		if err := tx.QueryRow(ctx, `INSERT INTO tx VALUES ($1, $2, 2, pg_backend_pid()) RETURNING pid`, client, seq).Scan(&pid2); err != nil {
			return err
		}
		if pid1 != pid2 {
			return fmt.Errorf("transaction %d/%d split over backends %d and %d", client, seq, pid1, pid2)
		}
		return tx.Commit(ctx)
	}
	txSQL := func(client, seq int) error {
		tx, err := sqlDB.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		var pid1, pid2 int
		if err := tx.QueryRowContext(ctx, `INSERT INTO tx VALUES ($1, $2, 1, pg_backend_pid()) RETURNING pid`, client, seq).Scan(&pid1); err != nil {
			return err
		}
		if err := tx.QueryRowContext(ctx, `INSERT INTO tx VALUES ($1, $2, 2, pg_backend_pid()) RETURNING pid`, client, seq).Scan(&pid2); err != nil {
			return err
		}
		if pid1 != pid2 {
			return fmt.Errorf("transaction %d/%d split over backends %d and %d", client, seq, pid1, pid2)
		}
		return tx.Commit()
	}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			run := txPool
			if c%2 == 1 {
				run = txSQL
			}
			for seq := 0; seq < 5000 && !stop.Load(); seq++ {
				if err := run(c, seq); err != nil {
					fail(err)
					return
				}
				commits.Add(1)
			}
		}()
	}
	waitFor(t, 10*time.Second, func() bool { return commits.Load() >= 200 })

	pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
	start := time.Now()
	if err := e.Pause(pctx); err != nil {
		t.Fatalf("pause: %v", err)
	}
	pcancel()
	t.Logf("paused in %v after %d commits", time.Since(start), commits.Load())
	if st := e.Stats(); st.InTransaction != 0 {
		t.Fatalf("paused with %d sessions in a transaction", st.InTransaction)
	}
	// No transaction open on the server and none committed while paused.
	var open int
	if err := direct.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()
		AND pid <> pg_backend_pid() AND (xact_start IS NOT NULL OR state = 'active')`).Scan(&open); err != nil {
		t.Fatal(err)
	}
	if open != 0 {
		t.Fatalf("paused, but the server shows %d sessions in a transaction", open)
	}
	rows := func() int {
		var n int
		if err := direct.QueryRow(ctx, `SELECT count(*) FROM tx`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := rows()
	time.Sleep(300 * time.Millisecond)
	if after := rows(); after != before {
		t.Fatalf("%d rows committed while paused", after-before)
	}
	if st := e.Stats(); st.Held == 0 {
		t.Errorf("paused under load, yet no connection held: %+v", st)
	}
	if err := e.Repoint(second.Addr()); err != nil {
		t.Fatal(err)
	}
	e.Resume()
	atRepoint := commits.Load()
	waitFor(t, 10*time.Second, func() bool { return commits.Load() >= atRepoint+500 })
	stop.Store(true)
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d client errors; the first: %v", failures.Load(), firstErr)
	}
	seconddb, err := pgx.Connect(ctx, second.URL(dbName))
	if err != nil {
		t.Fatal(err)
	}
	defer seconddb.Close(ctx)
	count := func(c *pgx.Conn, q string) int {
		var n int
		if err := c.QueryRow(ctx, q).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	onFirst, onSecond := count(direct, "SELECT count(*) FROM tx"), count(seconddb, "SELECT count(*) FROM tx")
	st := e.Stats()
	t.Logf("commits %d: %d rows on the first server, %d on the second; %+v", commits.Load(), onFirst, onSecond, st)
	if onSecond == 0 || st.Moved == 0 || st.MoveFailures != 0 {
		t.Fatalf("sessions did not move: %d rows on the second server, stats %+v", onSecond, st)
	}
	if int64(onFirst+onSecond) != 2*commits.Load() {
		t.Fatalf("%d rows for %d commits", onFirst+onSecond, commits.Load())
	}
	// No transaction split: both rows of each on one server, by one backend.
	const split = `SELECT count(*) FROM (SELECT client, seq FROM tx GROUP BY client, seq HAVING count(*) <> 2 OR count(DISTINCT pid) <> 1) s`
	if n := count(direct, split) + count(seconddb, split); n != 0 {
		t.Fatalf("%d transactions split", n)
	}
	// Every transaction after the repoint ran on the second server: the
	// first has exactly what it had while paused.
	if onFirst != before {
		t.Fatalf("%d rows on the first server after the repoint", onFirst-before)
	}
}

// TestPGPreparedStatementsMove checks that a client's named prepared
// statements work after its session moved, and that statements it
// deallocated are not brought back.
func TestPGPreparedStatementsMove(t *testing.T) {
	dbURL := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	u, _ := url.Parse(dbURL)
	second := newRelay(t, u.Host)
	e, through := pgEndpoint(t, dbURL, Options{})
	conn, err := pgx.Connect(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Prepare(ctx, "add", "SELECT $1::int + 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Prepare(ctx, "gone", "SELECT 2"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "DEALLOCATE gone"); err != nil {
		t.Fatal(err)
	}
	var pid1 int
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid1); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SET application_name = 'moved-app'"); err != nil {
		t.Fatal(err)
	}
	if err := e.Repoint(second.addr); err != nil {
		t.Fatal(err)
	}
	var n, pid2 int
	if err := conn.QueryRow(ctx, "add", 41).Scan(&n); err != nil || n != 42 {
		t.Fatalf("prepared statement after the move: %d, %v", n, err)
	}
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid2); err != nil {
		t.Fatal(err)
	}
	if pid1 == pid2 || second.conns.Load() != 1 {
		t.Fatalf("session did not move: pid %d then %d, relay %d", pid1, pid2, second.conns.Load())
	}
	// The deallocated statement stayed gone: preparing its name again works.
	if _, err := conn.Prepare(ctx, "gone", "SELECT 3"); err != nil {
		t.Fatalf("a deallocated statement came back: %v", err)
	}
	var app string
	if err := conn.QueryRow(ctx, "SHOW application_name").Scan(&app); err != nil || app != "moved-app" {
		t.Fatalf("application_name after the move: %q, %v", app, err)
	}
}

// TestPGPauseTimesOutOnOpenTransaction: a transaction left open keeps
// Pause from returning; Pause gives up with ctx, the endpoint stays
// paused (a new transaction waits), and Resume lets it through.
func TestPGPauseTimesOutOnOpenTransaction(t *testing.T) {
	dbURL := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, through := pgEndpoint(t, dbURL, Options{})
	a, err := pgx.Connect(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	b, err := pgx.Connect(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	tx, err := a.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer pcancel()
	if err := e.Pause(pctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("pause with an open transaction: %v, want the deadline", err)
	}
	done := make(chan error, 1)
	go func() {
		var one int
		done <- b.QueryRow(ctx, "SELECT 1").Scan(&one)
	}()
	select {
	case err := <-done:
		t.Fatalf("a new transaction ran while paused: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	// The open transaction goes on while paused.
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if st := e.Stats(); st.Held != 1 || !st.Paused {
		t.Fatalf("stats while one held: %+v", st)
	}
	e.Resume()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestPGHoldMax: a pause nobody resumes ends by itself at HoldMax.
func TestPGHoldMax(t *testing.T) {
	dbURL := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, through := pgEndpoint(t, dbURL, Options{HoldMax: 300 * time.Millisecond})
	conn, err := pgx.Connect(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := e.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}
	if held := time.Since(start); held < 250*time.Millisecond || held > 5*time.Second {
		t.Fatalf("held %v, want about hold_max (300ms)", held)
	}
}

// TestPGCancelRequest: a client's cancel reaches the server session
// behind it (the client knows only the endpoint's key).
func TestPGCancelRequest(t *testing.T) {
	dbURL := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, through := pgEndpoint(t, dbURL, Options{})
	conn, err := pgx.Connect(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	go func() {
		time.Sleep(300 * time.Millisecond)
		if err := conn.PgConn().CancelRequest(ctx); err != nil {
			t.Errorf("cancel request: %v", err)
		}
	}()
	start := time.Now()
	_, err = conn.Exec(ctx, "SELECT pg_sleep(20)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "57014" {
		t.Fatalf("cancelled query: %v, want 57014 query_canceled", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("cancel took %v", time.Since(start))
	}
}

// TestPGMalformedClient: bytes that are not a client message get an
// error and the connection closed; nothing of them reaches the server,
// not even a valid query behind them.
func TestPGMalformedClient(t *testing.T) {
	dbURL := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	direct, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	if _, err := direct.Exec(ctx, "CREATE TABLE seen (x int)"); err != nil {
		t.Fatal(err)
	}
	_, through := pgEndpoint(t, dbURL, Options{})
	insert := []byte("Q\x00\x00\x00\x1eINSERT INTO seen VALUES (1)\x00")
	for name, garbage := range map[string][]byte{
		"unknown type":  []byte("Z\x00\x00\x00\x04"),
		"short length":  []byte("Q\x00\x00\x00\x02"),
		"huge length":   []byte("Q\x7f\xff\xff\xff"),
		"a TLS hello":   {0x16, 0x03, 0x01, 0x00, 0xa5},
		"binary noise":  {0xff, 0xfe, 0x00, 0x01, 0x02, 0x03},
		"an HTTP query": []byte("GET / HTTP/1.1\r\n\r\n"),
	} {
		t.Run(name, func(t *testing.T) {
			pc, err := pgconn.Connect(ctx, through)
			if err != nil {
				t.Fatal(err)
			}
			hc, err := pc.Hijack()
			if err != nil {
				t.Fatal(err)
			}
			c := hc.Conn
			defer c.Close()
			c.Write(append(append([]byte{}, garbage...), insert...))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil {
				t.Fatalf("connection not closed: %v", err)
			}
			if len(got) == 0 || got[0] != 'E' {
				t.Fatalf("want an ErrorResponse, got %q", got)
			}
			var n int
			if err := direct.QueryRow(ctx, "SELECT count(*) FROM seen").Scan(&n); err != nil || n != 0 {
				t.Fatalf("rows after malformed input: %d, %v", n, err)
			}
		})
	}
}

// TestPGMoveFails: a session that cannot open a session on the new
// server is told why and closed between transactions; others are not
// harmed and the count says so.
func TestPGMoveFails(t *testing.T) {
	dbURL := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, through := pgEndpoint(t, dbURL, Options{ConnectTimeout: time.Second})
	conn, err := pgx.Connect(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := l.Addr().String()
	l.Close()
	if err := e.Repoint(dead); err != nil {
		t.Fatal(err)
	}
	_, err = conn.Exec(ctx, "SELECT 1")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "08006" {
		t.Fatalf("query after a failed move: %v, want 08006", err)
	}
	if st := e.Stats(); st.MoveFailures != 1 {
		t.Fatalf("stats: %+v", st)
	}
}

// TestPGMaxConnections: the connection over the cap gets Postgres'
// "too many connections" error.
func TestPGMaxConnections(t *testing.T) {
	dbURL := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, through := pgEndpoint(t, dbURL, Options{MaxConnections: 1})
	a, err := pgx.Connect(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	_, err = pgx.Connect(ctx, through)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "53300" {
		t.Fatalf("second connection: %v, want 53300", err)
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestPGShutdownBetweenTransactions: Shutdown closes an idle connection
// at once, lets an open transaction commit, closes that connection after
// it, and returns once none is left.
func TestPGShutdownBetweenTransactions(t *testing.T) {
	dbURL := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, through := pgEndpoint(t, dbURL, Options{})
	idle, err := pgx.Connect(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close(ctx)
	busy, err := pgx.Connect(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close(ctx)
	tx, err := busy.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- e.Shutdown(ctx) }()
	waitFor(t, 5*time.Second, func() bool { return e.Stats().Connections == 1 })
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("the open transaction was cut: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("the open transaction could not commit: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("shutdown did not return once the transaction ended: %+v", e.Stats())
	}
}

// TestPGIdleTimeout: a connection idle between transactions past
// IdleTimeout is closed; one inside a transaction is not.
func TestPGIdleTimeout(t *testing.T) {
	dbURL := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, through := pgEndpoint(t, dbURL, Options{IdleTimeout: 300 * time.Millisecond})
	idle, err := pgx.Connect(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close(ctx)
	busy, err := pgx.Connect(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close(ctx)
	tx, err := busy.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return e.Stats().Connections == 1 })
	time.Sleep(500 * time.Millisecond)
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("a connection inside a transaction was closed: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	// Idle again after its queries, it is closed too.
	waitFor(t, 5*time.Second, func() bool { return e.Stats().Connections == 0 })
}

// TestPGShutdownPastItsDeadline: once Shutdown's ctx has ended, a
// connection kept busy is closed at its next transaction boundary, not
// inside its transaction.
func TestPGShutdownPastItsDeadline(t *testing.T) {
	dbURL := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, through := pgEndpoint(t, dbURL, Options{})
	conn, err := pgx.Connect(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer scancel()
	done := make(chan error, 1)
	go func() { done <- e.Shutdown(sctx) }()
	time.Sleep(500 * time.Millisecond) // past the deadline, within the grace
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatalf("the transaction was cut: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("the transaction could not commit: %v", err)
	}
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "1 connections closed at a transaction boundary") {
			t.Fatalf("shutdown: %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatalf("the connection was not closed at its boundary: %+v", e.Stats())
	}
}

// TestPGPauseHolders: the endpoint resumes once every holder that paused
// it has resumed; a holder whose pause ended at HoldMax lifts nobody
// else's pause with its late Resume.
func TestPGPauseHolders(t *testing.T) {
	dbURL := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, through := pgEndpoint(t, dbURL, Options{HoldMax: time.Second})
	conn, err := pgx.Connect(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// query runs one statement and says whether it was held for at least
	// 300 ms; resume is called 300 ms in.
	heldThrough := func(resume func()) bool {
		t.Helper()
		time.AfterFunc(300*time.Millisecond, resume)
		start := time.Now()
		if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
			t.Fatal(err)
		}
		return time.Since(start) >= 250*time.Millisecond
	}

	a, b := e.Holder(), e.Holder()
	if err := a.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	a.Resume()
	if !e.Stats().Paused {
		t.Fatal("one of two holders resumed: the endpoint resumed")
	}
	if !heldThrough(b.Resume) {
		t.Fatal("a transaction ran while the second holder still held the endpoint")
	}

	// a's pause ends at HoldMax; b pauses after; a's late Resume must not
	// lift b's pause.
	if err := a.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() bool { return !e.Stats().Paused })
	if err := b.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	a.Resume()
	if !e.Stats().Paused {
		t.Fatal("a Resume after HoldMax lifted another holder's pause")
	}
	if !heldThrough(b.Resume) {
		t.Fatal("a transaction ran while the endpoint was paused")
	}
	if e.Stats().Paused {
		t.Fatal("still paused after every holder resumed")
	}
}

// slowFirstWrite is a server connection whose first write returns 30 ms
// after its bytes went out, as on a busy host: pgconn's slow-write timer
// (15 ms) starts its background reader, which gets the login's answer
// before it is told to stop and reads again.
type slowFirstWrite struct {
	net.Conn
	once sync.Once
}

func (c *slowFirstWrite) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.once.Do(func() { time.Sleep(30 * time.Millisecond) })
	return n, err
}

// TestPGMoveAfterSlowLoginWrite: a session moved to a server whose login
// began with a slow write still gets every answer — its prepared
// statements' and its queries'. (Read from hc.Conn, the background
// reader's pending read took the next answer: the re-prepare timed out,
// or a query without prepared statements hung.)
func TestPGMoveAfterSlowLoginWrite(t *testing.T) {
	dbURL := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, through := pgEndpoint(t, dbURL, Options{ConnectTimeout: 2 * time.Second})
	prepared, err := pgx.Connect(ctx, through) // its statement cache prepares
	if err != nil {
		t.Fatal(err)
	}
	defer prepared.Close(ctx)
	plain, err := pgx.Connect(ctx, through+"&default_query_exec_mode=simple_protocol")
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close(ctx)
	var n int
	if err := prepared.QueryRow(ctx, "SELECT $1::int + 1", 1).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Exec(ctx, "SELECT 1"); err != nil {
		t.Fatal(err)
	}

	testWrapServerConn = func(c net.Conn) net.Conn { return &slowFirstWrite{Conn: c} }
	t.Cleanup(func() { testWrapServerConn = nil })
	if err := e.Repoint(e.Stats().Primary); err != nil { // the same server: every session moves
		t.Fatal(err)
	}
	qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
	defer qcancel()
	if err := prepared.QueryRow(qctx, "SELECT $1::int + 1", 2).Scan(&n); err != nil || n != 3 {
		t.Fatalf("prepared statement after the move: %d, %v", n, err)
	}
	if _, err := plain.Exec(qctx, "SELECT 1"); err != nil {
		t.Fatalf("query after the move: %v", err)
	}
	if st := e.Stats(); st.Moved < 2 {
		t.Fatalf("moved %d sessions, want 2", st.Moved)
	}
}
