package switchover

import (
	"context"
	"database/sql"
	"errors"
	"strings"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/handoff-dev/handoff/internal/testdb"
)

const pgInsert = "INSERT INTO acks (note) VALUES ($1) RETURNING id"

func pgOpen(addr string) (*sql.DB, error) {
	db, err := sql.Open("pgx", "postgres://postgres@"+addr+"/postgres?sslmode=disable")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(16)
	return db, nil
}

func pgDB(t *testing.T, addr string) *sql.DB {
	t.Helper()
	db, err := pgOpen(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func pgServers(old, replica *testdb.PG) servers {
	return servers{oldAddr: old.Addr(), newAddr: replica.Addr(), open: pgOpen, insert: pgInsert,
		pair: func(ctx context.Context) (Pair, error) {
			return OpenPostgres(ctx, old.URL("postgres"), replica.URL("postgres"))
		}}
}

func TestSwitchoverPostgresPhysical(t *testing.T) {
	t.Parallel() // two at a time (GOMAXPROCS): most of each is waiting for servers
	old := testdb.NewPG(t)
	old.Exec(t, "postgres", "CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL)")
	standby := old.Standby(t)
	switchoverUnderLoad(t, pgServers(old, standby), "postgres-physical")
	var recovering bool
	if err := pgDB(t, standby.Addr()).QueryRow("SELECT pg_is_in_recovery()").Scan(&recovering); err != nil || recovering {
		t.Fatalf("new primary in recovery = %v (%v)", recovering, err)
	}
}

// The major-version path: a logical subscriber. Sequences are not
// replicated, so without the engine's sync the first insert on the new
// primary would collide with a replicated row.
func TestSwitchoverPostgresLogical(t *testing.T) {
	t.Parallel() // two at a time (GOMAXPROCS): most of each is waiting for servers
	old := testdb.NewPG(t)
	old.Exec(t, "postgres", `CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL);
		CREATE TABLE tags (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text);
		INSERT INTO tags (v) SELECT 't' || i FROM generate_series(1, 50) i`)
	sub := testdb.NewPG(t)
	sub.Subscribe(t, old, "postgres", "handoff_move")
	switchoverUnderLoad(t, pgServers(old, sub), "postgres-logical")

	db := pgDB(t, sub.Addr())
	var id int
	if err := db.QueryRow("INSERT INTO tags (v) VALUES ('new') RETURNING id").Scan(&id); err != nil || id <= 50 {
		t.Fatalf("first identity insert on the new primary: id %d, %v; want > 50", id, err)
	}
	var subs, slots int
	_ = db.QueryRow("SELECT count(*) FROM pg_subscription").Scan(&subs)
	_ = pgDB(t, old.Addr()).QueryRow("SELECT count(*) FROM pg_replication_slots").Scan(&slots)
	if subs != 0 || slots != 0 {
		t.Fatalf("after the switchover: %d subscriptions on the new primary, %d slots on the old; want 0 and 0", subs, slots)
	}
}

// A replica that stops applying after the fence: the deadline passes, the
// switchover rolls back, the old primary takes writes again, nothing is lost.
func TestSwitchoverPostgresRollsBackPastDeadline(t *testing.T) {
	t.Parallel() // two at a time (GOMAXPROCS): most of each is waiting for servers
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	old := testdb.NewPG(t)
	old.Exec(t, "postgres", "CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL)")
	standby := old.Standby(t)
	ep := newAppDB(t, old.Addr(), pgOpen)
	l := startLoad(t, ep, pgInsert, 16)
	l.waitAcked(t, 300)

	pair, err := OpenPostgres(ctx, old.URL("postgres"), standby.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	// The standby stops applying, and a client that bypasses the endpoint
	// writes one more row: the standby cannot catch up.
	stall := func(r Record) {
		if r.Step == Holding {
			standby.Exec(t, "postgres", "SELECT pg_wal_replay_pause()")
			old.Exec(t, "postgres", "INSERT INTO acks (note) VALUES ('bypass')")
		}
	}
	g := &gate{}
	const deadline = 2 * time.Second
	start := time.Now()
	rec, err := Run(ctx, pair, Options{Name: "main", Deadline: deadline, Endpoint: ep, Gate: g, Journal: &memJournal{}, From: "old", To: "new", OnStep: stall})
	var serr *Error
	// A loaded host can leave the standby behind the precondition (a
	// quarter of the deadline) before the stall: refused at checking,
	// nothing changed, so it is tried again.
	for try := 1; try < 5 && errors.As(err, &serr) && serr.Step == Checking && !serr.RolledBack; try++ {
		t.Logf("refused at checking (%v); again", err)
		time.Sleep(time.Second)
		start = time.Now()
		rec, err = Run(ctx, pair, Options{Name: "main", Deadline: deadline, Endpoint: ep, Gate: g, Journal: &memJournal{}, From: "old", To: "new", OnStep: stall})
	}
	took := time.Since(start)
	if !errors.As(err, &serr) || !serr.RolledBack || serr.Step != CatchingUp {
		t.Fatalf("switchover: %v; want rolled back at %s", err, CatchingUp)
	}
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "deadline 2s passed") {
		t.Fatalf("error %q does not say the deadline passed", err)
	}
	t.Logf("rolled back after %v: %v", took.Round(time.Millisecond), err)
	if took > deadline+5*time.Second {
		t.Fatalf("rollback took %v after a %v deadline", took, deadline)
	}
	if rec.Step != RolledBack || ep.current() != old.Addr() || g.releaseCall != 1 {
		t.Fatalf("step %s, endpoint at %s, gate released %d times", rec.Step, ep.current(), g.releaseCall)
	}
	acked := l.ackedCount()
	l.waitAcked(t, acked+300) // the old primary takes writes again
	l.halt()
	l.checkNoFailures(t)
	l.checkAllOn(t, pgDB(t, old.Addr()), "acks")
	// and not only through the endpoint: its fence is gone
	if _, err := pgDB(t, old.Addr()).Exec("INSERT INTO acks (note) VALUES ('direct')"); err != nil {
		t.Fatalf("direct write on the old primary after the rollback: %v", err)
	}
	var recovering bool
	if err := pgDB(t, standby.Addr()).QueryRow("SELECT pg_is_in_recovery()").Scan(&recovering); err != nil || !recovering {
		t.Fatalf("the standby left recovery (%v, %v): two primaries", recovering, err)
	}
}

// Preconditions refuse, changing nothing: a replica of another cluster, a
// long transaction on the primary.
func TestSwitchoverPostgresRefuses(t *testing.T) {
	t.Parallel() // two at a time (GOMAXPROCS): most of each is waiting for servers
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	old := testdb.NewPG(t)
	other := testdb.NewPG(t)
	if _, err := OpenPostgres(ctx, old.URL("postgres"), other.URL("postgres")); err == nil || !strings.Contains(err.Error(), "neither a standby") {
		t.Fatalf("a stranger as the replica: %v", err)
	}
	standby := old.Standby(t)
	pair, err := OpenPostgres(ctx, old.URL("postgres"), standby.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	long, err := pgDB(t, old.Addr()).BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer long.Rollback()
	if _, err := long.Exec("SELECT txid_current()"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	g := &gate{}
	_, err = Run(ctx, pair, Options{Name: "main", Deadline: 2 * time.Second, Gate: g})
	var serr *Error
	if !errors.As(err, &serr) || serr.RolledBack || !strings.Contains(err.Error(), "a transaction has been open") {
		t.Fatalf("with a long transaction open: %v; want refused", err)
	}
	if g.holds != 0 {
		t.Fatal("a refused switchover held HTTP")
	}
	if _, err := Run(ctx, pair, Options{Name: "main", Deadline: time.Hour}); err == nil || !strings.Contains(err.Error(), "at most") {
		t.Fatalf("a deadline of an hour: %v", err)
	}
}

// A subscriber that does not hold every table of the primary yet is
// refused before anything is fenced: a table the subscription does not
// take (created since, not refreshed), then one it takes but is still
// copying. Promoted, either would have left its rows on the old primary.
func TestSwitchoverPostgresLogicalRefusesTablesNotReplicated(t *testing.T) {
	t.Parallel() // two at a time (GOMAXPROCS): most of each is waiting for servers
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	old := testdb.NewPG(t)
	old.Exec(t, "postgres", "CREATE TABLE a (id int PRIMARY KEY); INSERT INTO a SELECT generate_series(1, 10)")
	sub := testdb.NewPG(t)
	sub.Subscribe(t, old, "postgres", "handoff_move")
	// Created since, the subscriber's first (its apply worker skips the
	// rows of a table the subscription has not taken).
	sub.Exec(t, "postgres", "CREATE TABLE b (id int PRIMARY KEY)")
	old.Exec(t, "postgres", "CREATE TABLE b (id int PRIMARY KEY); INSERT INTO b SELECT generate_series(1, 1000)")
	pair, err := OpenPostgres(ctx, old.URL("postgres"), sub.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	refused := func(want string) {
		t.Helper()
		g := &gate{}
		_, err := Run(ctx, pair, Options{Name: "main", Deadline: 5 * time.Second, Gate: g})
		var serr *Error
		if !errors.As(err, &serr) || serr.RolledBack || !strings.Contains(err.Error(), want) {
			t.Fatalf("Run: %v; want refused with %q", err, want)
		}
		if g.holds != 0 {
			t.Fatal("a refused switchover held HTTP")
		}
		var fenced string
		if err := pgDB(t, old.Addr()).QueryRow("SHOW " + pgFenceSetting).Scan(&fenced); err != nil || fenced != "off" {
			t.Fatalf("the old primary after a refusal: %s = %q (%v)", pgFenceSetting, fenced, err)
		}
	}
	refused("does not replicate public.b")

	// Taken now, but its copy waits for a lock held on the subscriber.
	lock, err := pgDB(t, sub.Addr()).BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Rollback()
	if _, err := lock.Exec("LOCK TABLE b IN SHARE MODE"); err != nil { // holds off the copy (ROW EXCLUSIVE), not the refresh
		t.Fatal(err)
	}
	sub.Exec(t, "postgres", "ALTER SUBSCRIPTION handoff_move REFRESH PUBLICATION")
	refused("still copying public.b")
}
