package switchover

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/testdb"
)

// --reverse: after a logical switchover the old primary subscribes to the
// new one, so the writes made on the new primary reach it; a switch back
// then finds a caught-up subscriber and loses nothing.
func TestSwitchoverPostgresReverseThenBack(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	old := testdb.NewPG(t)
	old.Exec(t, "postgres", `CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL);
		CREATE TABLE tags (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v text)`)
	sub := testdb.NewPG(t)
	sub.Subscribe(t, old, "postgres", "handoff_move")
	ep := newAppDB(t, old.Addr(), pgOpen)
	l := startLoad(t, ep, pgInsert, 8)
	l.waitAcked(t, 200)

	switchTo := func(from, to *testdb.PG, reverse bool) Record {
		t.Helper()
		pair, err := OpenPostgres(ctx, from.URL("postgres"), to.URL("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		defer pair.Close()
		if pair.Kind() != "postgres-logical" {
			t.Fatalf("kind %s", pair.Kind())
		}
		rec, err := Run(ctx, pair, Options{Name: "main", Deadline: 10 * time.Second, Endpoint: ep, Gate: &gate{},
			Journal: &memJournal{}, From: from.URL("postgres"), To: to.URL("postgres"), Reverse: reverse})
		if err != nil {
			t.Fatalf("switchover to %s: %v (steps %v)", to.Addr(), err, rec.Steps)
		}
		if ep.current() != to.Addr() {
			t.Fatalf("endpoint at %s, want %s", ep.current(), to.Addr())
		}
		return rec
	}
	rec := switchTo(old, sub, true)
	if !slices.ContainsFunc(rec.Steps, func(s StepTime) bool { return s.Step == Reversing }) || !rec.Reverse {
		t.Fatalf("no reversing step: %v", rec.Steps)
	}
	l.waitAcked(t, l.ackedCount()+300) // written on the new primary
	if _, err := pgDB(t, sub.Addr()).Exec("INSERT INTO tags (v) VALUES ('on the new primary')"); err != nil {
		t.Fatal(err)
	}
	// Every write so far reaches the old server, which stays fenced.
	want := l.ackedCount()
	oldDB := pgDB(t, old.Addr())
	deadline := time.Now().Add(60 * time.Second)
	for {
		var n int
		if err := oldDB.QueryRow("SELECT count(*) FROM acks").Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the old server has %d rows of the %d acknowledged: reverse replication does not apply", n, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := oldDB.Exec("INSERT INTO acks (note) VALUES ('direct')"); err == nil {
		t.Fatal("the old server takes direct writes while it subscribes")
	}

	// And back, under the same load: nothing lost, the old server writable.
	switchTo(sub, old, false)
	l.waitAcked(t, l.ackedCount()+300)
	l.halt()
	l.checkNoFailures(t)
	l.checkAllOn(t, oldDB, "acks")
	var id int
	var v string
	if err := oldDB.QueryRow("SELECT id, v FROM tags ORDER BY id DESC LIMIT 1").Scan(&id, &v); err != nil || v != "on the new primary" {
		t.Fatalf("the tag written on the new primary: %d %q %v", id, v, err)
	}
	var next int
	if err := oldDB.QueryRow("INSERT INTO tags (v) VALUES ('back') RETURNING id").Scan(&next); err != nil || next <= id {
		t.Fatalf("first identity insert after the switch back: %d (%v); want > %d", next, err, id)
	}
	if _, err := oldDB.Exec("INSERT INTO acks (note) VALUES ('direct')"); err != nil {
		t.Fatalf("direct write on the old server after the switch back: %v", err)
	}
}

// A reverse replication that cannot start (here the old primary's libpq
// refuses a parameter of --to that only pgx knows; in the field, a
// pg_hba.conf or a network that does not let the old server reach the new
// one) fails after the promotion, when there is no going back: the
// switchover goes on to its end, the endpoint on the new primary, with a
// warning, and leaves no slot behind to hold the new primary's WAL.
func TestSwitchoverPostgresReverseThatFailsStillSwitches(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	old := testdb.NewPG(t)
	old.Exec(t, "postgres", `CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL)`)
	sub := testdb.NewPG(t)
	sub.Subscribe(t, old, "postgres", "handoff_move")
	ep := newAppDB(t, old.Addr(), pgOpen)
	l := startLoad(t, ep, pgInsert, 8)
	l.waitAcked(t, 200)
	from, to := old.URL("postgres")+"&description_cache_capacity=64", sub.URL("postgres")+"&description_cache_capacity=64"
	pair, err := OpenPostgres(ctx, from, to)
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	rec, err := Run(ctx, pair, Options{Name: "main", Deadline: 10 * time.Second, Endpoint: ep, Gate: &gate{},
		Journal: &memJournal{}, From: from, To: to, Reverse: true})
	if err != nil || rec.Step != Done {
		t.Fatalf("Run: %v at step %s; want done", err, rec.Step)
	}
	if !strings.Contains(rec.Warning, "reverse replication did not start") {
		t.Fatalf("warning %q", rec.Warning)
	}
	if ep.current() != sub.Addr() {
		t.Fatalf("endpoint at %s, want the new primary %s", ep.current(), sub.Addr())
	}
	l.waitAcked(t, l.ackedCount()+300)
	l.halt()
	l.checkNoFailures(t)
	l.checkAllOn(t, pgDB(t, sub.Addr()), "acks")
	var left int
	if err := pgDB(t, sub.Addr()).QueryRow(`SELECT (SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1)
		+ (SELECT count(*) FROM pg_publication WHERE pubname = $1)`, reverseName).Scan(&left); err != nil || left != 0 {
		t.Fatalf("left on the new primary: %d of the reverse slot and publication (%v)", left, err)
	}
}
