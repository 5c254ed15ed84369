package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// binary is the real handoff, built once for the tests that run it.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "handoff-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, "make temp dir:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "handoff")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build handoff: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// handoff runs the binary and returns its stdout, stderr and exit code.
func handoff(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("handoff %s -> %d\n%s%s", strings.Join(args, " "), code, out.String(), errb.String())
	return out.String(), errb.String(), code
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMigrateCLI(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	m := filepath.Join(dir, "migrations")
	writeFile(t, filepath.Join(m, "0001_init.sql"), "CREATE TABLE items (id integer PRIMARY KEY, title text);\nINSERT INTO items VALUES (1, 'A'), (2, 'B');\n")
	writeFile(t, filepath.Join(m, "0002_lower.sql"), "-- handoff:expand\nALTER TABLE items ADD COLUMN t text;\n-- handoff:backfill table=items key=id\nUPDATE items SET t = lower(title) WHERE id >= :lo AND id < :hi;\n")

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"migrate"}, 2, "missing subcommand"},
		{[]string{"migrate", "status"}, 2, "no database"},
		{[]string{"migrate", "expand", "--db", db, "--dir", m, "--bogus"}, 2, "unknown flag"},
		{[]string{"evolve", "pause", "--db", db}, 2, "accepts 1 arg"},
		{[]string{"evolve", "set", "x", "--db", db}, 2, "give --batch"},
		{[]string{"migrate", "up", "--db", db, "--dir", m}, 0, "0002_lower: backfill run 1: 100.0%"},
		{[]string{"evolve", "pause", "nope", "--db", db}, 1, "no such backfill"},
	} {
		out, errs, code := handoff(t, c.args...)
		if code != c.code || !strings.Contains(out+errs, c.want) {
			t.Errorf("handoff %s: exit %d, want %d with %q", strings.Join(c.args, " "), code, c.code, c.want)
		}
	}
	out, _, code := handoff(t, "migrate", "status", "--db", db, "--dir", m, "--json")
	var st struct {
		Migrations []struct {
			Name    string
			Pending []string
			Phases  []struct{ Phase, State string }
		}
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || len(st.Migrations) != 2 || len(st.Migrations[1].Pending) != 0 {
		t.Fatalf("status --json: %d %s", code, out)
	}
	out, _, _ = handoff(t, "evolve", "status", "--db", db, "--json")
	var ev struct {
		Backfills []struct{ Name, State string }
	}
	if json.Unmarshal([]byte(out), &ev) != nil || len(ev.Backfills) != 1 || ev.Backfills[0].State != "done" {
		t.Fatalf("evolve status --json: %s", out)
	}

	// A broken file: exit 1, file and line on stderr, nothing changed.
	writeFile(t, filepath.Join(m, "0003_bad.sql"), "-- handoff:expand\nALTER TABLE items ADD COLUMN u text;\nALTER TABLE items ADD COLUMN v text,;\n")
	_, errs, code := handoff(t, "migrate", "expand", "--db", db, "--dir", m)
	if code != 1 || !strings.Contains(errs, "0003_bad.sql:3: syntax error") {
		t.Fatalf("bad file: exit %d: %s", code, errs)
	}
	out, _, _ = handoff(t, "migrate", "status", "--db", db, "--dir", m)
	if !strings.Contains(strings.Join(strings.Fields(out), " "), "0003_bad pending - - expand") {
		t.Fatalf("bad file changed the history: %s", out)
	}
}

// TestBackfillSurvivesKill runs a backfill of 1,000,000 rows with the real
// binary on each dialect, SIGKILLs it at three random points, resumes
// it to the end, then checks every row: each changed exactly once, nothing
// else changed. The backfill increments a counter, so a batch applied twice
// or never shows.
func TestBackfillSurvivesKill(t *testing.T) {
	cases := map[string]struct {
		rows int64
		url  func(*testing.T) string
		seed string
	}{
		"postgres": {1_000_000, func(t *testing.T) string { return testdb.Postgres(t) },
			`INSERT INTO items (id, title) SELECT g, 'Title ' || g FROM generate_series(1, %d) g;`},
		"sqlite": {1_000_000, func(t *testing.T) string { return testdb.SQLite(t) },
			`INSERT INTO items (id, title) WITH RECURSIVE s(g) AS (SELECT 1 UNION ALL SELECT g + 1 FROM s WHERE g < %d) SELECT g, 'Title ' || g FROM s;`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			u := c.url(t)
			rows := c.rows
			dir := filepath.Join(t.TempDir(), "migrations")
			// The binary seeds the table: SQLite compiled with -race into
			// the test would take minutes over it.
			writeFile(t, filepath.Join(dir, "0000_items.sql"), "CREATE TABLE items (id bigint PRIMARY KEY, title text NOT NULL, n int NOT NULL DEFAULT 0);\n"+
				fmt.Sprintf(c.seed, rows)+"\n")
			writeFile(t, filepath.Join(dir, "0001_title_lower.sql"), `-- handoff:expand
ALTER TABLE items ADD COLUMN title_lower text;

-- handoff:backfill table=items key=id batch=2000 workers=2
UPDATE items SET title_lower = lower(title), n = n + 1 WHERE id >= :lo AND id < :hi;
`)
			start := time.Now()
			if _, _, code := handoff(t, "migrate", "expand", "--db", u, "--dir", dir); code != 0 {
				t.Fatal("expand failed")
			}
			t.Logf("seeded %d rows in %v", rows, time.Since(start))
			d, err := dialect.Open(context.Background(), u, time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			points := []int64{rand.Int64N(rows * 8 / 10), rand.Int64N(rows * 8 / 10), rand.Int64N(rows * 8 / 10)}
			sort.Slice(points, func(i, j int) bool { return points[i] < points[j] })
			for i, at := range points {
				done := killAt(t, d.DB(), u, dir, at)
				t.Logf("kill %d: SIGKILL at %d rows checkpointed (aimed at %d)", i+1, done, at)
			}
			out, _, code := handoff(t, "migrate", "backfill", "--db", u, "--dir", dir, "--no-throttle")
			if code != 0 || !strings.Contains(out, "100.0%") {
				t.Fatalf("resume to the end: exit %d", code)
			}
			var wrongN, wrongLower, wrongTitle, total int64
			err = d.DB().QueryRow(`SELECT
				COALESCE(sum(CASE WHEN n <> 1 THEN 1 ELSE 0 END), 0),
				COALESCE(sum(CASE WHEN title_lower IS NULL OR title_lower <> lower(title) THEN 1 ELSE 0 END), 0),
				COALESCE(sum(CASE WHEN title <> 'Title ' || id THEN 1 ELSE 0 END), 0),
				count(*) FROM items`).Scan(&wrongN, &wrongLower, &wrongTitle, &total)
			if err != nil {
				t.Fatal(err)
			}
			if wrongN != 0 || wrongLower != 0 || wrongTitle != 0 || total != rows {
				t.Fatalf("after 3 kills and a resume: %d rows not changed exactly once, %d without title_lower, %d titles changed, %d rows",
					wrongN, wrongLower, wrongTitle, total)
			}
			out, _, _ = handoff(t, "evolve", "status", "0001_title_lower", "--db", u)
			if !strings.Contains(out, "done") {
				t.Fatalf("evolve status after the end: %s", out)
			}
		})
	}
}

// killAt starts a backfill and SIGKILLs it once at least at rows are
// checkpointed; it returns the rows checkpointed when it was killed.
func killAt(t *testing.T, db *sql.DB, url, dir string, at int64) int64 {
	t.Helper()
	cmd := exec.Command(binary, "migrate", "backfill", "--db", url, "--dir", dir, "--no-throttle")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	var done int64
	for time.Now().Before(deadline) {
		err := db.QueryRow(`SELECT COALESCE(sum(rows), 0) FROM handoff_evolve_parts`).Scan(&done)
		if err == nil && done >= at {
			break
		}
		time.Sleep(time.Duration(rand.IntN(10)) * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill: %v (output: %s)", err, out.String())
	}
	cmd.Wait()
	if done < at {
		t.Fatalf("backfill did not reach %d rows: %s", at, out.String())
	}
	return done
}

// TestEvolveControlFromAnotherTerminal pauses, re-rates and resumes a
// backfill run by one handoff process from another, as an operator would.
func TestEvolveControlFromAnotherTerminal(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	m := filepath.Join(dir, "migrations")
	writeFile(t, filepath.Join(m, "0001_init.sql"), "CREATE TABLE items (id integer PRIMARY KEY, title text);\n"+
		"INSERT INTO items WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 3000) SELECT i, 'T' || i FROM s;\n")
	writeFile(t, filepath.Join(m, "0002_lower.sql"), "-- handoff:expand\nALTER TABLE items ADD COLUMN t text;\n-- handoff:backfill table=items key=id batch=50\nUPDATE items SET t = lower(title) WHERE id >= :lo AND id < :hi;\n")
	if _, _, code := handoff(t, "migrate", "expand", "--db", db, "--dir", m); code != 0 {
		t.Fatal("expand failed")
	}
	run := exec.Command(binary, "migrate", "backfill", "--db", db, "--dir", m, "--rate", "300", "--json")
	var out bytes.Buffer
	run.Stdout, run.Stderr = &out, &out
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	defer run.Process.Kill()
	status := func() (string, float64) {
		o, _, _ := handoff(t, "evolve", "status", "0002_lower", "--db", db, "--json")
		var s struct {
			Backfills []struct {
				State   string
				Percent float64
			}
		}
		if json.Unmarshal([]byte(o), &s) != nil || len(s.Backfills) != 1 {
			return "", 0
		}
		return s.Backfills[0].State, s.Backfills[0].Percent
	}
	waitUntil := func(what string, cond func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; backfill output:\n%s", what, out.String())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitUntil("the backfill to start", func() bool { st, _ := status(); return st == "running" })
	if _, _, code := handoff(t, "evolve", "pause", "0002_lower", "--db", db); code != 0 {
		t.Fatal("pause failed")
	}
	waitUntil("paused", func() bool { st, _ := status(); return st == "paused" })
	_, p1 := status()
	time.Sleep(time.Second)
	if _, p2 := status(); p2 != p1 || p1 >= 100 {
		t.Fatalf("paused backfill moved from %.1f%% to %.1f%%", p1, p2)
	}
	if _, _, code := handoff(t, "evolve", "set", "0002_lower", "--rate", "0", "--batch", "500", "--db", db); code != 0 {
		t.Fatal("set failed")
	}
	if _, _, code := handoff(t, "evolve", "resume", "0002_lower", "--db", db); code != 0 {
		t.Fatal("resume failed")
	}
	if err := run.Wait(); err != nil {
		t.Fatalf("backfill: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), `"event":"pause"`) || !strings.Contains(out.String(), `"batch":500`) {
		t.Fatalf("the run did not report the pause and the new batch size:\n%s", out.String())
	}
}
