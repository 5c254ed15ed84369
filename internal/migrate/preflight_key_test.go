package migrate

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
)

// A backfill keyed on a column no backfill can range over is refused before
// the expand runs, naming the file and line, and leaves no history behind.
func TestPreflightRefusesAnUnsupportedKey(t *testing.T) {
	url := "sqlite://" + filepath.Join(t.TempDir(), "app.db")
	dir := writeDir(t, map[string]string{"0001_norm.sql": "-- handoff:expand\nALTER TABLE items ADD COLUMN norm text;\n\n" +
		"-- handoff:backfill table=items key=price\nUPDATE items SET norm = lower(title) WHERE price >= :lo AND price < :hi;\n"})
	m := openM(t, url, dir)
	d := m.Dialect()
	if _, err := d.DB().Exec(`CREATE TABLE items (price REAL PRIMARY KEY, title TEXT)`); err != nil {
		t.Fatal(err)
	}
	err := m.Up(context.Background())
	if err == nil || !strings.Contains(err.Error(), "0001_norm.sql:4") || !strings.Contains(err.Error(), "integer, text or uuid") {
		t.Fatalf("up with a REAL key: %v", err)
	}
	if cols := columns(t, d, "items"); strings.Contains(cols, "norm") {
		t.Errorf("the expand ran before the refusal: %s", cols)
	}
	var n int
	if err := d.DB().QueryRow(`SELECT count(*) FROM handoff_migrations`).Scan(&n); err == nil && n != 0 {
		t.Errorf("%d history rows left behind", n)
	}
}

// A backfill of a table that does not exist, and that its expand does not
// create, is refused before anything runs: no history row is left running.
func TestPreflightRefusesAMissingTable(t *testing.T) {
	url := "sqlite://" + filepath.Join(t.TempDir(), "app.db")
	dir := writeDir(t, map[string]string{"0001_norm.sql": "-- handoff:expand\nCREATE TABLE other (id integer);\n\n" +
		"-- handoff:backfill table=itemz key=id\nUPDATE itemz SET x = 1 WHERE id >= :lo AND id < :hi;\n"})
	m := openM(t, url, dir)
	err := m.Up(context.Background())
	if err == nil || !strings.Contains(err.Error(), "0001_norm.sql:4") || !strings.Contains(err.Error(), "no such table") {
		t.Fatalf("up with a backfill of a missing table: %v", err)
	}
	var n int
	if err := m.Dialect().DB().QueryRow(`SELECT count(*) FROM handoff_migrations`).Scan(&n); err == nil && n != 0 {
		t.Errorf("%d history rows left behind", n)
	}
}
