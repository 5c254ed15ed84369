package fleet

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/testdb"
)

// TestOperationTakenOver: a leader's saved plan is listed as held; once
// its lease expires it is listed as orphaned, another node takes the
// lease and reads the plan where the leader left it, the old leader's late
// save is refused, and Finish deletes it.
func TestOperationTakenOver(t *testing.T) {
	dsn := testdb.Postgres(t)
	ctx := context.Background()
	a := openNode(t, dsn, "web-1")
	b := openNode(t, dsn, "web-2")
	type plan struct{ Done []string }
	la, err := a.acquire(ctx, "deploy/web") // no renewal: a leader that died
	if err != nil {
		t.Fatal(err)
	}
	if err := la.Save(ctx, plan{Done: []string{"web-1"}}); err != nil {
		t.Fatal(err)
	}
	ops, err := b.Operations(ctx)
	if err != nil || len(ops) != 1 || ops[0].Orphaned || ops[0].Holder != "web-1" {
		t.Fatalf("one operation, held by web-1: %+v %v", ops, err)
	}
	time.Sleep(700 * time.Millisecond) // lease is 600ms
	ops, err = b.Operations(ctx)
	if err != nil || len(ops) != 1 || !ops[0].Orphaned {
		t.Fatalf("the operation is orphaned once its lease expired: %+v %v", ops, err)
	}
	lb, err := b.Acquire(ctx, ops[0].Name)
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Release(ctx)
	var got plan
	if ok, err := lb.Load(ctx, &got); !ok || err != nil || len(got.Done) != 1 || got.Done[0] != "web-1" {
		t.Fatalf("the new leader reads the plan: %v %v %+v", ok, err, got)
	}
	if err := la.Save(ctx, plan{Done: []string{"web-1", "web-2"}}); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("the old leader's late save must be refused: %v", err)
	}
	if err := lb.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	if ops, err := a.Operations(ctx); err != nil || len(ops) != 0 {
		t.Fatalf("a finished operation is gone: %+v %v", ops, err)
	}
}

// TestOldCommandsArePruned: commands older than a day go, with their
// acknowledgements; newer ones stay.
func TestOldCommandsArePruned(t *testing.T) {
	dsn := testdb.Postgres(t)
	ctx := context.Background()
	a := openNode(t, dsn, "web-1")
	if _, err := a.pool.Exec(ctx, `INSERT INTO handoff_fleet_commands (kind, target, by_node, at) VALUES ('modes', '', 'web-1', now() - interval '25 hours'), ('modes', '', 'web-1', now() - interval '23 hours')`); err != nil {
		t.Fatal(err)
	}
	if _, err := a.pool.Exec(ctx, `INSERT INTO handoff_fleet_acks (command, node) SELECT id, 'web-1' FROM handoff_fleet_commands`); err != nil {
		t.Fatal(err)
	}
	if err := a.prune(ctx); err != nil {
		t.Fatal(err)
	}
	var commands, acks int
	a.pool.QueryRow(ctx, `SELECT count(*) FROM handoff_fleet_commands`).Scan(&commands)
	a.pool.QueryRow(ctx, `SELECT count(*) FROM handoff_fleet_acks`).Scan(&acks)
	if commands != 1 || acks != 1 {
		t.Fatalf("after the prune: %d commands, %d acks; want the day-old one gone", commands, acks)
	}
}
