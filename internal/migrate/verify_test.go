package migrate

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/testdb"
)

// A backfill that says what "done" means keeps its contract from running
// on rows it did not do, and says how many there are.
func TestContractRefusedUntilVerified(t *testing.T) {
	url := "sqlite://" + filepath.Join(t.TempDir(), "app.db")
	dir := writeDir(t, map[string]string{"0001_lower.sql": "-- handoff:expand\nALTER TABLE items ADD COLUMN title_lower text;\n\n" +
		"-- handoff:backfill table=items key=id verify=\"title_lower IS NULL\"\n" +
		"UPDATE items SET title_lower = lower(title) WHERE id >= :lo AND id < :hi AND id % 10 <> 0;\n\n" +
		"-- handoff:contract\nALTER TABLE items DROP COLUMN title;\n"})
	m := openM(t, url, dir)
	d := m.Dialect()
	if _, err := d.DB().Exec(`CREATE TABLE items (id INTEGER PRIMARY KEY, title TEXT NOT NULL)`); err != nil {
		t.Fatal(err)
	}
	if _, err := d.DB().Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 100) INSERT INTO items SELECT i, 'Title ' || i FROM n`); err != nil {
		t.Fatal(err)
	}
	err := m.Up(context.Background())
	if err == nil || !strings.Contains(err.Error(), "10 rows of items still match verify") || !strings.Contains(err.Error(), "0001_lower.sql:4") {
		t.Fatalf("up with 10 rows the backfill missed: %v", err)
	}
	if cols := columns(t, d, "items"); !strings.Contains(cols, "title,") && !strings.HasSuffix(cols, "title") {
		t.Fatalf("the contract ran: columns %s", cols)
	}
	if _, err := d.DB().Exec(`UPDATE items SET title_lower = lower(title) WHERE title_lower IS NULL`); err != nil {
		t.Fatal(err)
	}
	if err := m.Contract(context.Background()); err != nil {
		t.Fatalf("contract once every row is done: %v", err)
	}
	if cols := columns(t, d, "items"); cols != "id,title_lower" {
		t.Fatalf("columns after the contract: %s", cols)
	}
}

// A row inserted below the walked range by a transaction still open while
// the pass went by (ids are drawn at insert, rows seen at commit) is done
// by the contract's catch-up, which walks every key again: a catch-up from
// the last pass's end up would leave it out, and the contract would drop
// what it was to be filled from.
func TestContractCatchUpReachesRowsCommittedBehindThePass(t *testing.T) {
	url := testdb.Postgres(t)
	table := fmt.Sprintf("late_%d", time.Now().UnixNano())
	dir := writeDir(t, map[string]string{"0001_lower.sql": "-- handoff:expand\nALTER TABLE " + table + " ADD COLUMN title_lower text;\n\n" +
		"-- handoff:backfill table=" + table + " key=id\n" +
		"UPDATE " + table + " SET title_lower = lower(title) WHERE id >= :lo AND id < :hi;\n\n" +
		"-- handoff:contract\nALTER TABLE " + table + " DROP COLUMN title;\n"})
	m := openM(t, url, dir)
	db := m.Dialect().DB()
	if _, err := db.Exec(`CREATE TABLE ` + table + ` (id bigserial PRIMARY KEY, title text NOT NULL);
		INSERT INTO ` + table + ` (title) SELECT 'Title ' || g FROM generate_series(1, 100) g`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec("DROP TABLE IF EXISTS " + table) })
	ctx := context.Background()
	if err := m.Expand(ctx); err != nil {
		t.Fatal(err)
	}
	// The old release's insert: its id drawn, its transaction still open.
	late, err := db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Rollback()
	var lateID int
	if err := late.QueryRow(`INSERT INTO ` + table + ` (title) VALUES ('LATE') RETURNING id`).Scan(&lateID); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO ` + table + ` (title) VALUES ('after')`); err != nil {
		t.Fatal(err)
	}
	if err := m.Backfill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := late.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := m.Contract(ctx); err != nil {
		t.Fatal(err)
	}
	var lower sql.NullString
	if err := db.QueryRow(`SELECT title_lower FROM `+table+` WHERE id = $1`, lateID).Scan(&lower); err != nil || lower.String != "late" {
		t.Fatalf("the row committed behind the pass after the contract: title_lower %v (%v); want \"late\"", lower, err)
	}
}

// A rollback that stops part-way (its second statement refused: a view
// depends on the column) leaves the expand half undone. Until the
// rollback is run again to its end, status shows it and no phase goes
// forward on what is left.
func TestUnfinishedRollbackBlocksGoingForward(t *testing.T) {
	url := testdb.Postgres(t)
	table := fmt.Sprintf("rb_%d", time.Now().UnixNano())
	dir := writeDir(t, map[string]string{"0001_lower.sql": "-- handoff:expand\nALTER TABLE " + table + " ADD COLUMN title_lower text;\n" +
		"CREATE INDEX CONCURRENTLY " + table + "_tl ON " + table + " (title_lower);\n\n" +
		"-- handoff:contract\nALTER TABLE " + table + " DROP COLUMN title;\n\n" +
		"-- handoff:rollback\nDROP INDEX CONCURRENTLY IF EXISTS " + table + "_tl;\nALTER TABLE " + table + " DROP COLUMN title_lower;\n"})
	m := openM(t, url, dir)
	db := m.Dialect().DB()
	if _, err := db.Exec(`CREATE TABLE ` + table + ` (id bigint PRIMARY KEY, title text)`); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Exec("DROP TABLE IF EXISTS " + table + " CASCADE") })
	ctx := context.Background()
	if err := m.Expand(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`CREATE VIEW ` + table + `_v AS SELECT title_lower FROM ` + table); err != nil {
		t.Fatal(err)
	}
	if err := m.Rollback(ctx, ""); err == nil {
		t.Fatal("a rollback whose DROP COLUMN a view depends on succeeded")
	}
	if err := m.Up(ctx); err == nil || !strings.Contains(err.Error(), "rollback began and did not finish") {
		t.Fatalf("up with the rollback half done: %v", err)
	}
	st, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shown := false
	for _, s := range st {
		for _, p := range s.Phases {
			shown = shown || p.Phase == Rollback
		}
	}
	if !shown {
		t.Fatalf("status does not show the unfinished rollback: %+v", st)
	}
	if _, err := db.Exec(`DROP VIEW ` + table + `_v`); err != nil {
		t.Fatal(err)
	}
	if err := m.Rollback(ctx, ""); err != nil {
		t.Fatalf("the rollback run again: %v", err)
	}
	if err := m.Up(ctx); err != nil {
		t.Fatalf("up after the rollback finished: %v", err)
	}
	if cols := columns(t, m.Dialect(), table); cols != "id,title_lower" {
		t.Fatalf("columns: %s", cols)
	}
}

// A statement that runs outside a transaction is recorded after it runs:
// a run killed in between (simulated here by putting the history back to
// before the step) runs it again on resume. One whose effect is there
// already — the enum label added, the index dropped — counts as applied,
// where it would fail the phase for good ("enum label already exists").
func TestReplayedStatementWhoseEffectHoldsCountsAsApplied(t *testing.T) {
	url := testdb.Postgres(t)
	suffix := fmt.Sprintf("%d", time.Now().UnixNano())
	mood, table := "mood_"+suffix, "people_"+suffix
	dir := writeDir(t, map[string]string{"0001_mood.sql": "-- handoff:expand\nALTER TYPE " + mood + " ADD VALUE 'happy';\n" +
		"DROP INDEX CONCURRENTLY " + table + "_name;\n" +
		"ALTER TABLE " + table + " ADD COLUMN feeling " + mood + ";\n"})
	m := openM(t, url, dir)
	db := m.Dialect().DB()
	for _, q := range []string{"CREATE TYPE " + mood + " AS ENUM ('sad')", "CREATE TABLE " + table + " (id int PRIMARY KEY, name text)",
		"CREATE INDEX " + table + "_name ON " + table + " (name)"} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { db.Exec("DROP TABLE IF EXISTS " + table); db.Exec("DROP TYPE IF EXISTS " + mood) })
	ctx := context.Background()
	if err := m.Expand(ctx); err != nil {
		t.Fatal(err)
	}
	for _, step := range []int{0, 1} { // killed after the ADD VALUE ran, then after the DROP INDEX ran
		undo := []string{"ALTER TABLE " + table + " DROP COLUMN feeling"}
		if step == 0 {
			undo = append(undo, "CREATE INDEX "+table+"_name ON "+table+" (name)")
		}
		for _, q := range undo {
			if _, err := db.Exec(q); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.Exec(`UPDATE handoff_migrations SET state = 'running', step = $1, finished_at = '' WHERE name = '0001_mood' AND phase = 'expand'`, step); err != nil {
			t.Fatal(err)
		}
		if err := m.Expand(ctx); err != nil {
			t.Fatalf("resumed at step %d: %v", step, err)
		}
	}
	if cols := columns(t, m.Dialect(), table); cols != "feeling,id,name" {
		t.Fatalf("columns: %s", cols)
	}
}
