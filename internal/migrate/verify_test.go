package migrate

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
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
