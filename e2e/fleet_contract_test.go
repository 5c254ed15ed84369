package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/testdb"
	"github.com/jackc/pgx/v5"
)

// TestFleetContractWaitsForOtherNodes: two nodes of a fleet run v1 of an
// app that uses the database. v2, whose migration drops a column v1
// writes, deployed on web-1 alone: its contract waits, naming web-2's v1
// instance; with web-2 killed (-9) and lost, it waits naming web-2 lost;
// once web-2 is back and runs v2 too, the contract runs — and not before.
func TestFleetContractWaitsForOtherNodes(t *testing.T) {
	state, appDB := testdb.Postgres(t), testdb.Postgres(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, appDB)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE items (id bigserial PRIMARY KEY, title text NOT NULL, legacy_title text);
		INSERT INTO items (title, legacy_title) SELECT 'Item ' || g, 'Item ' || g FROM generate_series(1, 200) g`); err != nil {
		t.Fatal(err)
	}
	legacyThere := func() bool {
		var n int
		if err := conn.QueryRow(ctx, `SELECT count(*) FROM information_schema.columns WHERE table_name = 'items' AND column_name = 'legacy_title'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
	var nodes []*node
	var roots []string
	for i := 1; i <= 2; i++ {
		dir := t.TempDir()
		root := filepath.Join(dir, "releases")
		makeAppRelease(t, root, "v1", appDB, 1, filepath.Join(dir, "jobs.log"), "")
		makeAppRelease(t, root, "v2", appDB, 2, filepath.Join(dir, "jobs.log"), pipelineMigration)
		app := fmt.Sprintf("{ command: [bin/app], releases: %s, instances: 1, health: { path: /healthz, interval: 200ms }, drain_timeout: 1s, start_timeout: 20s }", root)
		n := newFleetNode(t, fleetSpec{name: fmt.Sprintf("web-%d", i), gateway: freeAddr(t), state: state, app: app,
			extra: fmt.Sprintf("database: { url: %q }\n", appDB)})
		n.must("deploy", "web", "--release", filepath.Join(root, "v1"), "--this-node")
		nodes = append(nodes, n)
		roots = append(roots, root)
	}
	n1, n2 := nodes[0], nodes[1]

	waitingFor := func(n *node) string {
		for _, m := range n.status().Migrations {
			return strings.Join(m.WaitingFor, "; ")
		}
		return ""
	}
	go n1.cli("deploy", "web", "--release", filepath.Join(roots[0], "v2"), "--this-node")
	waitUntil(t, 2*time.Minute, "web-1's contract to wait for web-2's v1", func() bool {
		d := n1.appStatus("web").Deploy
		if d != nil && d.State == "failed" {
			t.Fatalf("deploy %s failed: %s", d.ID, d.Error)
		}
		return d != nil && d.ID == "web-2" && d.State == "waiting" && strings.Contains(waitingFor(n1), "node web-2: app web release v1 (1 instances)")
	})
	t.Logf("web-1's contract waits for: %s", waitingFor(n1))
	if !legacyThere() {
		t.Fatal("the contract ran while web-2 still runs v1")
	}

	n2.kill9() // its v1 instance goes on running: it may still write legacy_title
	waitUntil(t, 30*time.Second, "web-1's contract to wait for web-2, lost", func() bool {
		return strings.Contains(waitingFor(n1), "node web-2, lost")
	})
	t.Logf("with web-2 lost: %s", waitingFor(n1))
	time.Sleep(2 * time.Second) // monitorWaiting looks every second: it must still wait
	if !legacyThere() {
		t.Fatal("the contract ran while web-2 is lost")
	}

	n2.start()
	n2.must("deploy", "web", "--release", filepath.Join(roots[1], "v2"), "--this-node")
	waitUntil(t, 2*time.Minute, "the contract to run once both nodes run v2", func() bool { return !legacyThere() })
	for _, n := range nodes {
		if got := n.appStatus("web").Current; got != "v2" {
			t.Fatalf("%s runs %s", n.gateway, got)
		}
	}
}
