package switchover

import (
	"context"
	"database/sql"
	"strings"
	"testing"
	"time"
)

// servers is one primary/replica pair as a test drives it.
type servers struct {
	oldAddr, newAddr string
	open             func(addr string) (*sql.DB, error)
	insert           string // one parameter, returns the new id
	pair             func(context.Context) (Pair, error)
}

// switchoverUnderLoad runs a switchover from the old primary to the replica
// while 16 writers go through the endpoint, then checks what the issue
// promises: no failed write, every acknowledged write on the new primary,
// the write pause within the deadline, the old primary fenced.
func switchoverUnderLoad(t *testing.T, s servers, wantKind string) (*appDB, *load) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ep := newAppDB(t, s.oldAddr, s.open)
	l := startLoad(t, ep, s.insert, 16)
	l.waitAcked(t, 300)

	pair, err := s.pair(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	if pair.Kind() != wantKind {
		t.Fatalf("kind %s, want %s", pair.Kind(), wantKind)
	}
	g, j := &gate{}, &memJournal{}
	const deadline = 5 * time.Second
	rec, err := Run(ctx, pair, Options{Name: "main", Deadline: deadline, Endpoint: ep, Gate: g, Journal: j, From: "old", To: "new"})
	if err != nil {
		t.Fatalf("switchover: %v (steps %v)", err, rec.Steps)
	}
	acked := l.ackedCount()
	l.waitAcked(t, acked+300)
	l.halt()

	if rec.Step != Done || ep.current() != s.newAddr {
		t.Fatalf("step %s, endpoint at %s; want done at %s", rec.Step, ep.current(), s.newAddr)
	}
	var saved Record
	if ok, _ := j.Get(ctx, JournalKind, "main", &saved); !ok || saved.Step != Done {
		t.Fatalf("journal: %+v", saved)
	}
	if g.holds != 1 || g.releaseCall != 1 {
		t.Fatalf("gate held %d times, released %d; want 1 and 1", g.holds, g.releaseCall)
	}
	l.checkNoFailures(t)
	newDB, err := s.open(s.newAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer newDB.Close()
	l.checkAllOn(t, newDB, "acks")
	first, ok := l.firstCommitOn(s.newAddr)
	if !ok {
		t.Fatal("no commit on the new primary")
	}
	pause := first.Sub(ep.pausedAt)
	t.Logf("%s: write pause %v (endpoint paused → first commit on the new primary); steps %v", wantKind, pause.Round(time.Millisecond), rec.Steps)
	if pause > deadline {
		t.Fatalf("write pause %v exceeds the deadline %v", pause, deadline)
	}
	// The old primary takes no more writes, from anyone.
	oldDB, err := s.open(s.oldAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer oldDB.Close()
	_, err = oldDB.Exec(strings.Replace(s.insert, "RETURNING id", "", 1), "after")
	if err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("write on the old primary after the switchover: %v; want a read-only error", err)
	}
	return ep, l
}
