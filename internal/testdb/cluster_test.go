package testdb

import (
	"context"
	"database/sql"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The helpers give what they promise: a standby that replays the primary's
// writes and is read-only, a subscriber that receives them, a GTID replica
// that applies them.
func TestClusterPostgresStandbyAndSubscriber(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := NewPG(t)
	p.Exec(t, "postgres", "CREATE TABLE items (id bigserial PRIMARY KEY, v text); INSERT INTO items (v) VALUES ('a')")
	s := p.Standby(t)
	sub := NewPG(t)
	sub.Subscribe(t, p, "postgres", "handoff_test")
	p.Exec(t, "postgres", "INSERT INTO items (v) VALUES ('b')")

	for _, c := range []*PG{s, sub} {
		conn, err := pgx.Connect(ctx, c.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		waitRows(t, ctx, func() (int, error) {
			var n int
			err := conn.QueryRow(ctx, "SELECT count(*) FROM items").Scan(&n)
			return n, err
		}, 2)
	}
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var recovering bool
	if err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&recovering); err != nil || !recovering {
		t.Fatalf("standby: in recovery = %v, %v; want true", recovering, err)
	}

	// A killed cluster restarts on its port with its data.
	p.Kill()
	p.Start(t)
	p.Exec(t, "postgres", "INSERT INTO items (v) VALUES ('c')")
}

func TestClusterMariaDBReplica(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m := NewMariaDB(t)
	m.Exec(t, "", "CREATE DATABASE app", "CREATE TABLE app.items (id bigint AUTO_INCREMENT PRIMARY KEY, v text)",
		"INSERT INTO app.items (v) VALUES ('a')")
	r := m.Replica(t)
	m.Exec(t, "app", "INSERT INTO items (v) VALUES ('b')")
	db, err := sql.Open("mysql", r.DSN("app"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	waitRows(t, ctx, func() (int, error) {
		var n int
		err := db.QueryRowContext(ctx, "SELECT count(*) FROM items").Scan(&n)
		return n, err
	}, 2)
	var ro int
	if err := db.QueryRowContext(ctx, "SELECT @@read_only").Scan(&ro); err != nil || ro != 1 {
		t.Fatalf("replica read_only = %d, %v; want 1", ro, err)
	}
	if m.ServerID == r.ServerID {
		t.Fatalf("primary and replica share server_id %d", m.ServerID)
	}
}

func waitRows(t *testing.T, ctx context.Context, count func() (int, error), want int) {
	t.Helper()
	for {
		n, err := count()
		if err == nil && n == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("rows = %d (%v); want %d", n, err, want)
		case <-time.After(20 * time.Millisecond):
		}
	}
}
