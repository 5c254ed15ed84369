package migrate

import (
	"context"
	"errors"
	"testing"
)

// TestBackfillFinishedOneRecord: whether a backfill is finished is read
// from evolve's record only. A history written by the version that also
// wrote it in handoff_migrations reads the same — whether its rows say
// done, or running (killed between its two writes) — and is rewritten to
// say only that the backfill started; a history that says done while
// evolve's record does not is not believed: the contract is refused.
func TestBackfillFinishedOneRecord(t *testing.T) {
	for name, url := range backends {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			dir := writeDir(t, map[string]string{"0001_init.sql": initSQL, "0007_title_lower.sql": sample})
			u := url(t)
			m := openM(t, u, dir)
			d := m.Dialect()
			if err := m.Expand(ctx); err != nil {
				t.Fatal(err)
			}
			for i := 1; i <= 30; i++ {
				if _, err := d.DB().Exec(`INSERT INTO items (id, title) VALUES (`+d.Param(1)+`, 'Title ABC')`, i); err != nil {
					t.Fatal(err)
				}
			}
			if err := m.Backfill(ctx); err != nil {
				t.Fatal(err)
			}
			state := func() string {
				var s string
				if err := d.DB().QueryRow(`SELECT state FROM handoff_migrations WHERE phase = 'backfill'`).Scan(&s); err != nil {
					t.Fatal(err)
				}
				return s
			}
			if s := state(); s != stateStarted {
				t.Fatalf("history row of a finished backfill says %q, want %q", s, stateStarted)
			}
			if got := pending(t, m); got != "0001_init= 0007_title_lower=contract" {
				t.Fatalf("status after the backfill: %s", got)
			}

			// The old version's two writes, both orders of a kill between them.
			for _, old := range []string{"done", "running"} {
				mustExecM(t, m, `UPDATE handoff_migrations SET state = '`+old+`', finished_at = '2026-11-01T00:00:00Z' WHERE phase = 'backfill'`)
				m2 := openM(t, u, dir)
				if got := pending(t, m2); got != "0001_init= 0007_title_lower=contract" {
					t.Fatalf("old history saying %s: status %s", old, got)
				}
				if s := state(); s != stateStarted {
					t.Fatalf("old history saying %s rewritten to %q, want %q", old, s, stateStarted)
				}
				if ok, err := m2.BackfillFinished(ctx, "0007_title_lower"); !ok || err != nil {
					t.Fatalf("old history saying %s: finished %v %v", old, ok, err)
				}
			}

			// The history cannot make an unfinished backfill finished.
			mustExecM(t, m, `UPDATE handoff_migrations SET state = 'done' WHERE phase = 'backfill'`)
			mustExecM(t, m, `UPDATE handoff_evolve SET finished_once = 0, state = 'failed'`)
			m3 := openM(t, u, dir)
			if got := pending(t, m3); got != "0001_init= 0007_title_lower=backfill+contract" {
				t.Fatalf("history done, evolve unfinished: status %s", got)
			}
			st, err := m3.Status(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range st[1].Phases {
				if p.Phase == Backfill && (p.State != PhaseRunning || !p.FinishedAt.IsZero()) {
					t.Fatalf("backfill phase %+v, want running without a finish time", p)
				}
			}
			if err := m3.Contract(ctx); !errors.Is(err, ErrBackfillUnfinished) {
				t.Fatalf("contract on an unfinished backfill: %v", err)
			}
		})
	}
}

func mustExecM(t *testing.T, m *Migrator, query string) {
	t.Helper()
	if _, err := m.Dialect().DB().Exec(query); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
}
