package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/testdb"
	"github.com/jackc/pgx/v5"
)

// DDL that waits for its lock says so while it waits: a transaction holds
// the table for a few seconds; the deploy's expand retries under its lock
// timeout, and the CLI's progress, status (the step's detail) and /metrics
// show the wait as it happens; the event log sums it.
func TestDDLWaitsAreShown(t *testing.T) {
	url := testdb.Postgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE items (id bigserial PRIMARY KEY, title text NOT NULL, legacy_title text)`); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	root, jobLog := filepath.Join(dir, "releases"), filepath.Join(dir, "jobs.log")
	makeAppRelease(t, root, "v1", url, 1, jobLog, "")
	makeAppRelease(t, root, "v2", url, 1, jobLog, "-- handoff:expand\nALTER TABLE items ADD COLUMN title_lower text;\n")
	n := newNode(t, fmt.Sprintf("  web:\n    command: [bin/app]\n    releases: %s\n    instances: 1\n    health: { path: /healthz, interval: 200ms }\n", root))
	appendConfig(t, n, fmt.Sprintf("database:\n  url: %q\n  lock_timeout: 100ms\n", url))
	n.must("deploy", "web", "--release", filepath.Join(root, "v1"))

	holder, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(ctx)
	tx, err := holder.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE items IN ACCESS SHARE MODE`); err != nil {
		t.Fatal(err)
	}
	deploying, out := deployInBackground(t, n, "web", filepath.Join(root, "v2"))
	var seen string
	waitUntil(t, 30*time.Second, "status to show the expand waiting for its lock", func() bool {
		d := n.appStatus("web").Deploy
		if d == nil {
			return false
		}
		for _, s := range d.Steps {
			if s.Name == "expand" && strings.Contains(s.Detail, "waiting for a lock") {
				seen = s.Detail
				return true
			}
		}
		return false
	})
	metrics := adminGet(t, n, "/metrics")
	if !strings.Contains(metrics, `handoff_migration_lock_retries_total{app="web"}`) {
		t.Errorf("/metrics has no lock retries:\n%s", grepLines(metrics, "lock"))
	}
	time.Sleep(time.Second)
	tx.Rollback(ctx)
	if err := deploying.Wait(); err != nil {
		t.Fatalf("the deploy: %v\n%s", err, out)
	}
	if !strings.Contains(out.String(), "waiting for a lock") {
		t.Errorf("the CLI's progress should show the lock wait:\n%s", out)
	}
	found := false
	for _, e := range events(t, n) {
		found = found || strings.Contains(e.Message, "waited") && strings.Contains(e.Message, "for locks")
	}
	if !found {
		t.Error("the event log does not sum the lock wait")
	}
	t.Logf("status showed: %s", seen)
	if !strings.Contains(out.String(), "the oldest open transaction") || !strings.Contains(out.String(), "LOCK TABLE items") {
		t.Errorf("the progress should name what the DDL waits for (the holder's query):\n%s", out)
	}
}

// adminGet reads a path of the admin listener with the node's token.
func adminGet(t *testing.T, n *node, path string) string {
	t.Helper()
	token := strings.TrimSpace(readFile(filepath.Join(n.dir, "admin.token")))
	req, _ := http.NewRequest(http.MethodGet, "http://"+n.admin+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grepLines(s, word string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, word) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
