package migrate

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/handoff-dev/handoff/internal/dialect"
	"github.com/handoff-dev/handoff/internal/evolve"
	"github.com/handoff-dev/handoff/internal/testdb"
)

var backends = map[string]func(t *testing.T) string{
	"sqlite":   func(t *testing.T) string { return testdb.SQLite(t) },
	"postgres": func(t *testing.T) string { return testdb.Postgres(t) },
}

const initSQL = `CREATE TABLE items (id bigint PRIMARY KEY, title text NOT NULL, legacy_title text);
`

// writeDir writes migration files into a new directory.
func writeDir(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func openM(t *testing.T, url string, dirs ...string) *Migrator {
	t.Helper()
	s := evolve.DefaultSettings().Unthrottled()
	s.Batch = 7
	m, err := Open(context.Background(), url, Options{Dirs: dirs, Backfill: &s, Progress: func(e Event) {
		if e.Kind != EventBackfill {
			t.Logf("%s %s %s:%d %s %v", e.Kind, e.Phase, filepath.Base(e.File), e.Line, e.Reason, e.Err)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// columns lists a table's columns, in either dialect.
func columns(t *testing.T, d dialect.Dialect, table string) string {
	t.Helper()
	query := `SELECT name FROM pragma_table_info('` + table + `') ORDER BY name`
	if d.Name() == "postgres" {
		query = `SELECT column_name FROM information_schema.columns WHERE table_name = '` + table + `' ORDER BY column_name`
	}
	rows, err := d.DB().Query(query)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var c string
		rows.Scan(&c)
		cols = append(cols, c)
	}
	return strings.Join(cols, ",")
}

func pending(t *testing.T, m *Migrator) string {
	t.Helper()
	st, err := m.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, s := range st {
		var ps []string
		for _, p := range s.Pending {
			ps = append(ps, string(p))
		}
		out = append(out, s.Name+"="+strings.Join(ps, "+"))
	}
	return strings.Join(out, " ")
}

// TestLifecycle drives the sample migration expand → rollback → expand →
// backfill → contract on every dialect, checking the schema, the data and
// the status after each phase.
func TestLifecycle(t *testing.T) {
	for name, url := range backends {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			dir := writeDir(t, map[string]string{"0001_init.sql": initSQL, "0007_title_lower.sql": sample})
			u := url(t)
			m := openM(t, u, dir)
			d := m.Dialect()

			if err := m.Contract(ctx); err != nil {
				t.Fatalf("contract with nothing expanded does nothing: %v", err)
			}
			if err := m.Expand(ctx); err != nil {
				t.Fatal(err)
			}
			if got := columns(t, d, "items"); got != "id,legacy_title,title,title_lower" {
				t.Fatalf("after expand: %s", got)
			}
			if got := pending(t, m); got != "0001_init= 0007_title_lower=backfill+contract" {
				t.Fatalf("status after expand: %s", got)
			}
			for i := 1; i <= 100; i++ {
				if _, err := d.DB().Exec(`INSERT INTO items (id, title) VALUES (`+d.Param(1)+`, 'Title ABC')`, i); err != nil {
					t.Fatal(err)
				}
			}
			if err := m.Contract(ctx); !errors.Is(err, ErrBackfillUnfinished) {
				t.Fatalf("contract before backfill: %v", err)
			}

			if err := m.Rollback(ctx, ""); err != nil {
				t.Fatal(err)
			}
			if got := columns(t, d, "items"); got != "id,legacy_title,title" {
				t.Fatalf("after rollback: %s", got)
			}
			if got := pending(t, m); got != "0001_init= 0007_title_lower=expand+backfill+contract" {
				t.Fatalf("status after rollback: %s", got)
			}

			if err := m.Expand(ctx); err != nil {
				t.Fatal(err)
			}
			if err := m.Backfill(ctx); err != nil {
				t.Fatal(err)
			}
			var n int
			d.DB().QueryRow(`SELECT count(*) FROM items WHERE title_lower = 'title abc'`).Scan(&n)
			if n != 100 {
				t.Fatalf("backfilled %d rows of 100", n)
			}
			if ok, err := m.BackfillFinished(ctx, "0007_title_lower"); !ok || err != nil {
				t.Fatalf("finished: %v %v", ok, err)
			}
			// A row the old release writes after the backfill: contract covers it first.
			d.DB().Exec(`INSERT INTO items (id, title) VALUES (101, 'Late')`)
			if err := m.Contract(ctx); err != nil {
				t.Fatal(err)
			}
			if got := columns(t, d, "items"); got != "id,title,title_lower" {
				t.Fatalf("after contract: %s", got)
			}
			var late string
			d.DB().QueryRow(`SELECT title_lower FROM items WHERE id = 101`).Scan(&late)
			if late != "late" {
				t.Fatalf("a row written after the backfill was not covered before contract: %q", late)
			}
			if got := pending(t, m); got != "0001_init= 0007_title_lower=" {
				t.Fatalf("status after contract: %s", got)
			}
			if err := m.Rollback(ctx, "0007_title_lower"); err == nil {
				t.Fatal("a contracted migration cannot be rolled back")
			}

			// Editing an applied phase is an error naming the file and line.
			edited := strings.Replace(sample, "lower(title)", "upper(title)", 1)
			os.WriteFile(filepath.Join(dir, "0007_title_lower.sql"), []byte(edited), 0o644)
			m2 := openM(t, u, dir)
			err := m2.Expand(ctx)
			if err == nil || !strings.Contains(err.Error(), "0007_title_lower.sql:5: phase backfill was applied") {
				t.Fatalf("edited after apply: %v", err)
			}
			if st, _ := m2.Status(ctx); st[1].Phases[1].State != PhaseEdited {
				t.Fatalf("status of an edited phase: %+v", st[1].Phases[1])
			}
		})
	}
}

// TestBadFilesChangeNothing: a syntax error, an unknown phase, or a lint
// finding anywhere stops expand before any statement runs.
func TestBadFilesChangeNothing(t *testing.T) {
	for name, url := range backends {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			u := url(t)
			good := "CREATE TABLE a (id int);\n"
			dir := writeDir(t, map[string]string{"0001_a.sql": good, "0002_b.sql": "-- handoff:expand\nCREATE TABLE b (id int);\nALTER TABLE b\n  ADD COLUMN x int,\n  ADD COLUM y int;\n"})
			m := openM(t, u, dir)
			err := m.Expand(ctx)
			if err == nil || !strings.Contains(err.Error(), "0002_b.sql:") || !strings.Contains(err.Error(), "syntax error") {
				t.Fatalf("syntax error: %v", err)
			}
			if name == "postgres" && !strings.Contains(err.Error(), "0002_b.sql:5:") {
				t.Errorf("syntax error on line 5: %v", err)
			}
			if got := columns(t, m.Dialect(), "a"); got != "" {
				t.Fatalf("a bad file elsewhere still let 0001 run: %s", got)
			}
			if got := pending(t, m); got != "0001_a=expand 0002_b=expand" {
				t.Fatalf("history changed: %s", got)
			}

			dir2 := writeDir(t, map[string]string{"0001_a.sql": "-- handoff:expand\nCREATE TABLE a (id int);\n-- handoff:cleanup\nDROP TABLE a;\n"})
			if _, err := Open(ctx, u, Options{Dirs: []string{dir2}}); err == nil || !strings.Contains(err.Error(), "0001_a.sql:3: unknown phase \"cleanup\"") {
				t.Fatalf("unknown phase: %v", err)
			}

			if name == "postgres" {
				dir3 := writeDir(t, map[string]string{"0001_a.sql": good, "0002_i.sql": "CREATE INDEX a_id ON a (id);\n", "0000_base.sql": "CREATE TABLE base (id int);\nCREATE INDEX base_id ON base (id);\n"})
				m3 := openM(t, u, dir3)
				err := m3.Expand(ctx)
				var f *Finding
				if !errors.As(err, &f) || f.Rule != "create-index" || !strings.Contains(err.Error(), "0002_i.sql:1") || !strings.Contains(f.Safe, "CONCURRENTLY") {
					t.Fatalf("lint before expand: %v", err)
				}
				if got := columns(t, m3.Dialect(), "base"); got != "" {
					t.Fatalf("lint finding still let expand run: %s", got)
				}
				m3.opts.Allow = []string{"0002_i.sql:1"}
				if err := m3.Expand(ctx); err != nil {
					t.Fatalf("allowed: %v", err)
				}
			}
		})
	}
}

func TestLint(t *testing.T) {
	m, err := Parse("m/0009_x.sql", `-- handoff:expand
CREATE TABLE fresh (id int, v int);
CREATE INDEX fresh_v ON fresh (v);
CREATE INDEX items_t ON items (title);
CREATE INDEX CONCURRENTLY items_u ON items (title);
ALTER TABLE items ALTER COLUMN title SET NOT NULL;
ALTER TABLE items ALTER COLUMN score TYPE bigint;
ALTER TABLE items ADD COLUMN token uuid DEFAULT gen_random_uuid();
ALTER TABLE items ADD COLUMN added timestamptz DEFAULT now();
ALTER TABLE items ADD CONSTRAINT items_owner_fk FOREIGN KEY (owner) REFERENCES owners (id);
ALTER TABLE items ADD CONSTRAINT items_score_ck CHECK (score > 0) NOT VALID;
UPDATE items SET title = lower(title);
-- handoff:allow whole-table-update
DELETE FROM items;
-- handoff:contract
ALTER TABLE items VALIDATE CONSTRAINT items_t_nn;
ALTER TABLE items ALTER COLUMN title SET NOT NULL;
`)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range Lint([]*Migration{m}, "postgres", []string{"m/0009_x.sql:7"}) {
		got = append(got, f.Rule+"@"+strings.TrimPrefix(f.Error()[:strings.Index(f.Error(), ": ")], "m/0009_x.sql:"))
	}
	want := "create-index@4 set-not-null@6 volatile-default@8 add-constraint@10 whole-table-update@12"
	if strings.Join(got, " ") != want {
		t.Fatalf("findings:\n got %s\nwant %s", strings.Join(got, " "), want)
	}
	f := Lint([]*Migration{m}, "postgres", nil)[1]
	if !strings.Contains(f.Safe, "CHECK (title IS NOT NULL) NOT VALID") || !strings.Contains(f.Safe, "VALIDATE CONSTRAINT") {
		t.Errorf("safe form of SET NOT NULL: %s", f.Safe)
	}
	if n := len(Lint([]*Migration{m}, "sqlite", nil)); n != 2 {
		t.Errorf("sqlite has no CONCURRENTLY or NOT VALID: want 2 findings, got %d", n)
	}
}

// TestStandaloneBackfill: a migration with only a backfill phase (an
// evolve job of its own) runs with `backfill` and needs no expand.
func TestStandaloneBackfill(t *testing.T) {
	ctx := context.Background()
	dir := writeDir(t, map[string]string{
		"0001_init.sql":  "CREATE TABLE items (id bigint PRIMARY KEY, title text NOT NULL, n int NOT NULL DEFAULT 0);\nINSERT INTO items (id, title) VALUES (1, 'a'), (2, 'b'), (30, 'c');\n",
		"0002_count.sql": "-- handoff:backfill table=items key=id batch=2\nUPDATE items SET n = n + 1 WHERE id >= :lo AND id < :hi;\n",
	})
	m := openM(t, testdb.SQLite(t), dir)
	if err := m.Expand(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m.Backfill(ctx); err != nil {
		t.Fatal(err)
	}
	var n int
	m.Dialect().DB().QueryRow(`SELECT sum(n) FROM items`).Scan(&n)
	if n != 3 {
		t.Fatalf("standalone backfill changed %d rows, want 3", n)
	}
	if got := pending(t, m); got != "0001_init= 0002_count=" {
		t.Fatalf("status: %s", got)
	}
}
