package dbproxy

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/testdb"
	"github.com/jackc/pgx/v5"
)

// heldGiveUp runs the same story on either kind of endpoint: during a
// pause, one client gives up on its held INSERT (its driver's timeout
// cancels it or closes the connection) and another waits for its own.
// After Resume the waiting client's row is there and the other's is not:
// a message whose client left is not run, so an app that retries on the
// timeout does not write twice. connect opens a client connection (before
// the pause) and returns its INSERT of a value.
func heldGiveUp(t *testing.T, e *Endpoint, connect func() func(ctx context.Context, value int) error, count func(value int) int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	waiter, quitter := connect(), connect()
	if err := e.Pause(ctx); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- waiter(ctx, 2) }()
	qctx, qcancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := quitter(qctx, 1)
	qcancel()
	if err == nil {
		t.Fatal("an INSERT held by the pause returned before Resume")
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.Stats().Held != 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if st := e.Stats(); st.Held != 1 {
		t.Fatalf("held after one client gave up: %d, want 1 (%+v)", st.Held, st)
	}
	e.Resume()
	if err := <-waited; err != nil {
		t.Fatalf("the client that waited: %v", err)
	}
	if n := count(2); n != 1 {
		t.Errorf("the waiting client's row: %d, want 1", n)
	}
	if n := count(1); n != 0 {
		t.Errorf("the INSERT whose client gave up (%v) ran after Resume: %d rows", err, n)
	}
}

func TestPGHeldQueryOfAClientThatLeftDoesNotRun(t *testing.T) {
	dbURL := testdb.Postgres(t)
	ctx := context.Background()
	direct, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	table := fmt.Sprintf("held_%d", time.Now().UnixNano())
	if _, err := direct.Exec(ctx, "CREATE TABLE "+table+" (x int)"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Exec(context.Background(), "DROP TABLE "+table) })
	e, through := pgEndpoint(t, dbURL, Options{})
	heldGiveUp(t, e, func() func(context.Context, int) error {
		c, err := pgx.Connect(ctx, through)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close(context.Background()) })
		return func(ctx context.Context, v int) error {
			_, err := c.Exec(ctx, fmt.Sprintf("INSERT INTO %s VALUES (%d)", table, v))
			return err
		}
	}, func(v int) (n int) {
		if err := direct.QueryRow(ctx, fmt.Sprintf("SELECT count(*) FROM %s WHERE x = %d", table, v)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	})
}

func TestMySQLHeldQueryOfAClientThatLeftDoesNotRun(t *testing.T) {
	addr, db := mariaDB(t)
	direct := openMy(t, addr, db)
	if _, err := direct.Exec("CREATE TABLE held (x int)"); err != nil {
		t.Fatal(err)
	}
	e, through := myEndpoint(t, addr, Options{})
	heldGiveUp(t, e, func() func(context.Context, int) error {
		d := openMy(t, through, db)
		d.SetMaxOpenConns(1)
		if err := d.Ping(); err != nil {
			t.Fatal(err)
		}
		return func(ctx context.Context, v int) error {
			_, err := d.ExecContext(ctx, fmt.Sprintf("INSERT INTO held VALUES (%d)", v))
			return err
		}
	}, func(v int) (n int) {
		if err := direct.QueryRow(fmt.Sprintf("SELECT count(*) FROM held WHERE x = %d", v)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	})
}

// A server that accepts a connection and then says nothing (frozen,
// SIGSTOPped: its kernel still accepts) fails the client's login within
// StartupTimeout, frees its place, and does not hold Close up.
func TestLoginToASilentServerIsBounded(t *testing.T) {
	for _, kind := range []Kind{Postgres, MySQL} {
		t.Run(string(kind), func(t *testing.T) {
			silent, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer silent.Close()
			go func() {
				for {
					c, err := silent.Accept()
					if err != nil {
						return
					}
					defer c.Close()
				}
			}()
			e, addr := serveEndpoint(t, Options{Name: "x", Kind: kind, Primary: silent.Addr().String(), StartupTimeout: 300 * time.Millisecond})
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if kind == Postgres {
				startup := []byte{0, 0, 0, 0, 0, 3, 0, 0}
				startup = append(startup, "user\x00u\x00\x00"...)
				startup[3] = byte(len(startup))
				c.Write(startup)
			}
			deadline := time.Now().Add(3 * time.Second)
			for e.Stats().Starting != 1 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			time.Sleep(100 * time.Millisecond) // the login is under way, the server silent
			for e.Stats().Connections != 0 && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
			}
			if st := e.Stats(); st.Connections != 0 {
				t.Fatalf("a login to a silent server is still there 3 s on, with a startup timeout of 300 ms: %+v", st)
			}
			closed := make(chan struct{})
			go func() { e.Close(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(3 * time.Second):
				t.Fatal("Close has not returned after 3 s")
			}
		})
	}
}

// A server that ends a session between transactions (pg_terminate_backend
// here; idle_session_timeout, a restart of the old primary after a
// switchover) says FATAL first. The client is not using the session and
// keeps its connection, so it must not get that error: its next query runs
// on a new server session.
func TestPGServerEndingAnIdleSessionIsNotTheClientsError(t *testing.T) {
	dbURL := testdb.Postgres(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, through := pgEndpoint(t, dbURL, Options{})
	direct, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Close(ctx)
	c, err := pgx.Connect(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var pid, again int
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Exec(ctx, "SELECT pg_terminate_backend($1, 5000)", pid); err != nil {
		t.Fatal(err)
	}
	if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&again); err != nil || again == pid {
		t.Fatalf("the next query after the server ended the idle session: pid %d (was %d), %v", again, pid, err)
	}
}
