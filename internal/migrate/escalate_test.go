package migrate

import (
	"context"
	"database/sql"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// The decision: five lost locks in a row escalate, a conflict that is not
// a lost lock counts for nothing, and a statement escalates at most three
// times.
func TestEscalationDecision(t *testing.T) {
	var e escalation
	var got []int
	for attempt := 1; attempt <= 40; attempt++ {
		class := dialect.LockTimeout
		switch {
		case attempt%7 == 0:
			class = dialect.Serialization // not a lock lost to traffic
		case attempt%5 == 0:
			class = dialect.Deadlock
		}
		if e.lose(class) {
			got = append(got, attempt)
		}
	}
	// Attempts 1-6 lose five locks (7 is a serialization failure) by 5;
	// then 6, 8, 9, 10, 11; then 12, 13, 15, 16, 17; then never again.
	want := []int{5, 11, 17}
	if len(got) != len(want) {
		t.Fatalf("escalated at attempts %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("escalated at attempts %v, want %v", got, want)
		}
	}
	var p escalation
	for range escalateAfter - 1 {
		if p.lose(dialect.Permanent) || p.lose(dialect.LockTimeout) {
			t.Fatal("escalated before five lost locks")
		}
	}
}

// gate stands for the gateway in front of a workload: while it holds, new
// requests wait to start; inflight counts those running.
type gate struct {
	mu       sync.Mutex
	cond     *sync.Cond
	held     bool
	inflight int
	holds    int
}

func newGate() *gate {
	g := &gate{}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *gate) enter() {
	g.mu.Lock()
	for g.held {
		g.cond.Wait()
	}
	g.inflight++
	g.mu.Unlock()
}

func (g *gate) leave() {
	g.mu.Lock()
	g.inflight--
	g.mu.Unlock()
}

func (g *gate) open() {
	g.mu.Lock()
	g.held = false
	g.cond.Broadcast()
	g.mu.Unlock()
}

// escalate is a Migrator's Escalate as the gateway's Quiesce keeps it:
// the hold ends after hold whatever the caller does, and the wait for
// requests in flight takes at most half of it.
func (g *gate) escalate(ctx context.Context, hold time.Duration) (func(), error) {
	g.mu.Lock()
	g.held = true
	g.holds++
	g.mu.Unlock()
	var once sync.Once
	release := func() { once.Do(g.open) }
	bound := time.AfterFunc(hold, release)
	deadline := time.Now().Add(hold / 2)
	for {
		g.mu.Lock()
		n := g.inflight
		g.mu.Unlock()
		if n == 0 {
			return func() { bound.Stop(); release() }, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			bound.Stop()
			release()
			return nil, errors.New("requests still in flight")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// requestLoad runs clients that each make requests back to back through
// g, every request a transaction that reads items and keeps it for
// txTime (an app that renders inside its transaction). It returns a
// function that stops them and reports the longest wait at the gate.
func requestLoad(t *testing.T, db *sql.DB, g *gate, clients int, txTime time.Duration) func() time.Duration {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var worst time.Duration
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				g.enter()
				mu.Lock()
				worst = max(worst, time.Since(start))
				mu.Unlock()
				err := func() error {
					defer g.leave()
					tx, err := db.Begin()
					if err != nil {
						return err
					}
					defer tx.Rollback()
					var s string
					if err := tx.QueryRow(`SELECT title FROM items WHERE id = $1`, 1+rand.IntN(1000)).Scan(&s); err != nil {
						return err
					}
					// Each transaction's length varies (txTime ± 50 %): the
					// clients a lock queue released together must not stay in
					// step, or their transactions end together and a DDL
					// statement's lock wait can fall into the common gap — the
					// "never lets it through" this load stands for would pass
					// by chance (it did, 415 ms in, on a quiet CI host).
					time.Sleep(txTime/2 + rand.N(txTime))
					return tx.Commit()
				}()
				if err != nil {
					t.Errorf("request: %v", err)
					return
				}
			}
		}()
	}
	return func() time.Duration {
		close(stop)
		wg.Wait()
		return worst
	}
}

// TestEscalationEndsStarvation: requests whose transactions each keep
// items for 250 ms, 24 at a time, starve an ALTER TABLE under a 50 ms lock
// timeout: without escalation it loses every retry for as long as it may
// retry. With it, the sixth attempt runs while the gate holds new requests
// and none is in flight, takes its lock and is done in about a second; no
// request waits at the gate longer than the hold's bound.
func TestEscalationEndsStarvation(t *testing.T) {
	url := testdb.Postgres(t)
	dir := writeDir(t, map[string]string{"0001_add.sql": "-- handoff:expand\nALTER TABLE items ADD COLUMN title_lower text;\n"})
	ctx := context.Background()
	const hold = time.Second
	var ev events
	var first time.Time // of the ALTER's first attempt: the lint's first parse before it is slow under -race
	open := func(escalate func(context.Context, time.Duration) (func(), error)) *Migrator {
		m, err := Open(ctx, url, Options{Dirs: []string{dir}, LockTimeout: 50 * time.Millisecond, DDLRetryFor: 3 * time.Second,
			Escalate: escalate, EscalateHold: hold, Progress: func(e Event) {
				ev.add(e)
				if e.Kind == EventStatement && first.IsZero() {
					first = time.Now()
				}
				if e.Kind == EventEscalate {
					t.Logf("%s: %s", e.Kind, EscalationMessage(e))
				}
			}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	off := open(nil)
	seedItems(t, off.Dialect().DB())
	app, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer app.Close()
	g := newGate()
	stop := requestLoad(t, app, g, 24, 250*time.Millisecond)
	time.Sleep(300 * time.Millisecond) // the load at full flow

	err = off.Expand(ctx)
	var se *StatementError
	if !errors.As(err, &se) || off.Dialect().Classify(err) != dialect.LockTimeout {
		stop()
		t.Fatalf("without escalation the ALTER should starve and fail on its lock timeout after 3s; it returned %v after %v", err, time.Since(first))
	}
	t.Logf("without escalation: gave up after %v and %d lock retries", time.Since(first), ev.count(EventLockRetry))

	on := open(g.escalate)
	retries := ev.count(EventLockRetry)
	first = time.Time{}
	err = on.Expand(ctx)
	took := time.Since(first)
	worst := stop()
	if err != nil {
		t.Fatalf("with escalation: %v", err)
	}
	t.Logf("with escalation: done in %v after %d lock retries and %d holds; the longest wait at the gate %v", took, ev.count(EventLockRetry)-retries, g.holds, worst)
	if took > 2500*time.Millisecond {
		t.Errorf("with escalation the ALTER took %v, want about a second", took)
	}
	if ev.count(EventEscalate) == 0 || ev.seen[len(ev.seen)-2].Kind != EventEscalate || ev.seen[len(ev.seen)-2].Reason != EscalateTook {
		t.Errorf("the statement should have taken its lock under a hold; events: %+v", ev.seen[len(ev.seen)-3:])
	}
	if worst > hold+200*time.Millisecond {
		t.Errorf("a request waited %v at the gate, longer than the hold's bound %v plus a margin", worst, hold)
	}
	if got := columns(t, on.Dialect(), "items"); got != "id,title,title_lower" {
		t.Fatalf("columns: %s", got)
	}
}
