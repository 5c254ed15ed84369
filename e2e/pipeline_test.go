package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/loadgen"
	"github.com/handoff-dev/handoff/internal/testdb"
	"github.com/jackc/pgx/v5"
)

// pipelineMigration is the demo's migration: v2 reads title_lower, which
// the expand adds and the backfill fills; the contract drops legacy_title,
// which only v1 writes.
const pipelineMigration = `-- handoff:expand
ALTER TABLE items ADD COLUMN title_lower text;

-- handoff:backfill table=items key=id batch=500
UPDATE items SET title_lower = lower(title) WHERE id >= :lo AND id < :hi AND title_lower IS NULL;

-- handoff:contract
ALTER TABLE items DROP COLUMN legacy_title;
`

// makeAppRelease writes a release of the database-backed sample app: bin/app
// serves schema n of the items table, bin/worker runs jobs.
func makeAppRelease(t *testing.T, root, label, db string, schema int, jobLog string, migration string) {
	t.Helper()
	dir := filepath.Join(root, label)
	os.MkdirAll(filepath.Join(dir, "bin"), 0o755)
	app := fmt.Sprintf("#!/bin/sh\nexec %s sampleapp --db '%s' --schema %d \"$@\"\n", bin, db, schema)
	worker := fmt.Sprintf("#!/bin/sh\nexec %s sampleapp --worker --job 6s --job-log %s\n", bin, jobLog)
	os.WriteFile(filepath.Join(dir, "bin", "app"), []byte(app), 0o755)
	os.WriteFile(filepath.Join(dir, "bin", "worker"), []byte(worker), 0o755)
	if migration != "" {
		os.MkdirAll(filepath.Join(dir, "migrations"), 0o755)
		os.WriteFile(filepath.Join(dir, "migrations", "0001_title_lower.sql"), []byte(migration), 0o644)
	}
}

// TestReleasePipelineOnPostgres deploys a release whose migration has all
// three phases, under load, against a real Postgres: handoff serve is
// killed with SIGKILL once during the backfill and once during the rollout;
// each time the restarted server resumes and completes. After each restart
// no request fails (requests in the gaps are counted and reported). The
// contract runs only after the last old worker has exited, and every row
// is right.
func TestReleasePipelineOnPostgres(t *testing.T) {
	url := testdb.Postgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	const rows = 300000
	if _, err := conn.Exec(ctx, `CREATE TABLE items (id bigserial PRIMARY KEY, title text NOT NULL, legacy_title text)`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO items (title, legacy_title) SELECT 'Item Number ' || g, 'Item Number ' || g FROM generate_series(1, $1::int) g`, rows); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root, jobLog := filepath.Join(dir, "releases"), filepath.Join(dir, "jobs.log")
	makeAppRelease(t, root, "v1", url, 1, jobLog, "")
	makeAppRelease(t, root, "v2", url, 2, jobLog, pipelineMigration)
	n := newNode(t, fmt.Sprintf(`  web:
    command: [bin/app]
    releases: %[1]s
    instances: 3
    health: { path: /healthz, interval: 200ms }
    drain_timeout: 3s
  jobs:
    kind: worker
    command: [bin/worker]
    releases: %[1]s
`, root))
	appendConfig(t, n, fmt.Sprintf("database:\n  url: %q\n  backfill: { rate: 20000 }\n", url))
	n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
	n.must("deploy", "jobs", "--release", filepath.Join(root, "v1"))

	mix := loadgen.Config{Addr: n.gateway, Fast: 32, Writers: 8, Slow: 4, SlowDelay: time.Second, WebSockets: 4,
		Cookies: true, Duration: 5 * time.Minute, Timeout: 30 * time.Second}
	load, err := loadgen.Start(ctx, mix)
	if err != nil {
		t.Fatal(err)
	}
	go n.cli("deploy", "web", "--release", filepath.Join(root, "v2"))
	// The second kill lands in the rollout's later bricks: a drain of one
	// brick can be over between two looks (no slow request was on it), so
	// any step of brick 2 or 3 will do.
	for _, at := range []string{"backfill", "brick 2 or 3"} {
		waitUntil(t, 2*time.Minute, "the pipeline to reach "+at, func() bool {
			d := n.appStatus("web").Deploy
			if d != nil && d.State == "failed" {
				t.Fatalf("deploy %s failed: %s", d.ID, d.Error)
			}
			if d == nil || d.ID != "web-2" {
				return false
			}
			step := runningStep(d.Steps)
			if at == "backfill" {
				return step == at && backfilling(n)
			}
			return strings.HasSuffix(step, "(brick 2)") || strings.HasSuffix(step, "(brick 3)")
		})
		if res := load.Stop(); res.Err() != nil {
			t.Errorf("before the kill during %q: %v", at, res.Err())
		}
		gap, err := loadgen.Start(ctx, mix)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		n.kill9()
		n.start()
		res := gap.Stop()
		t.Logf("kill -9 during %q: %d of %d requests failed while no handoff served (expected; not a promise)", at, res.Failures, res.Requests)
		if load, err = loadgen.Start(ctx, mix); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 2*time.Minute, "the rollout to finish and the contract to wait for the old worker", func() bool {
		d := n.appStatus("web").Deploy
		return d != nil && d.ID == "web-2" && d.State == "waiting"
	})
	if st := n.status(); len(st.Migrations) != 1 || len(st.Migrations[0].WaitingFor) == 0 {
		t.Errorf("status should say what the contract waits for: %+v", st.Migrations)
	}
	n.must("deploy", "jobs", "--release", filepath.Join(root, "v2")) // the v1 worker drains: its job ends on v1
	waitUntil(t, 2*time.Minute, "the contract to run once the old worker has exited", func() bool {
		d := n.appStatus("web").Deploy
		return d != nil && d.ID == "web-2" && d.State == "done"
	})
	res := load.Stop()
	t.Logf("load after the last restart:\n%s", res)
	if err := res.Err(); err != nil {
		t.Errorf("after a restart no request may fail: %v", err)
	}

	// The order, from the event log: the old worker's exit, then the contract.
	var workerGone, contracted int64
	for _, e := range events(t, n) {
		switch {
		case e.Kind == "instance" && strings.HasPrefix(e.Message, "jobs-v1-0:") && strings.Contains(e.Message, "drained"):
			workerGone = e.ID
		case e.Kind == "migration" && strings.Contains(e.Message, "contract 0001_title_lower"):
			contracted = e.ID
		}
	}
	if workerGone == 0 || contracted == 0 || contracted < workerGone {
		t.Errorf("the contract (event %d) must come after the old worker's exit (event %d)", contracted, workerGone)
	}
	// Row by row: every title has its lower-case copy; legacy_title is gone.
	var wrong, total int64
	if err := conn.QueryRow(ctx, `SELECT count(*) FILTER (WHERE title_lower IS DISTINCT FROM lower(title)), count(*) FROM items`).Scan(&wrong, &total); err != nil {
		t.Fatal(err)
	}
	if wrong != 0 || total < rows {
		t.Errorf("%d of %d rows lack a right title_lower", wrong, total)
	}
	var legacy bool
	conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'legacy_title')`).Scan(&legacy)
	if legacy {
		t.Error("the contract did not drop legacy_title")
	}
	if log := readFile(jobLog); !strings.Contains(log, "done v1 ") {
		t.Errorf("the old worker's job should have finished on v1:\n%s", log)
	}
}

// backfilling reports whether the migration's backfill has made progress.
func backfilling(n *node) bool {
	for _, m := range n.status().Migrations {
		if m.Backfill != nil && m.Backfill.Rows > 0 {
			return true
		}
	}
	return false
}

// appendConfig adds top-level keys to a node's config and restarts it.
func appendConfig(t *testing.T, n *node, yaml string) {
	t.Helper()
	f, err := os.OpenFile(n.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(yaml)
	f.Close()
	n.stop()
	n.start()
}

// events reads the node's whole event log.
func events(t *testing.T, n *node) []storeEvent {
	t.Helper()
	var out []storeEvent
	var after int64
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ev, err := control.Dial(n.socket).Events(ctx, after, 1000)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if len(ev.Events) == 0 {
			return out
		}
		for _, e := range ev.Events {
			out = append(out, storeEvent{ID: e.ID, Kind: e.Kind, Message: e.Message})
		}
		after = ev.Events[len(ev.Events)-1].ID
	}
}

type storeEvent struct {
	ID            int64
	Kind, Message string
}
