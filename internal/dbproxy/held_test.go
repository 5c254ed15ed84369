package dbproxy

import (
	"context"
	"fmt"
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
