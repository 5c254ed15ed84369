package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/testdb"
)

// TestFleetDeployLeaderKilled: a fleet deploy of v2 led by web-1; web-1's
// handoff is killed (-9) while web-2 deploys. Once web-1's lease expires
// another node takes the fleet deploy over and reverts it: web-2's
// deploy, which goes on without its leader, is waited for and rolled
// back; web-2 and web-3 serve v1, in rotation, within lease + margin; the
// status says the deploy is unfinished and that web-1, lost, is not yet
// reverted. Restarted, web-1 (which finished v2 before it died) is
// reverted too, and the fleet runs v1 across the board with no fleet
// deploy left.
func TestFleetDeployLeaderKilled(t *testing.T) {
	dsn := testdb.Postgres(t)
	const lease = 3 * time.Second
	var nodes []*node
	for i := 1; i <= 3; i++ {
		root := filepath.Join(t.TempDir(), "releases")
		makeRelease(t, root, "v1", "")
		makeRelease(t, root, "v2", "slow") // 2 s to start: web-2's deploy is under way for a while
		app := fmt.Sprintf("{ command: [bin/app], releases: %s, instances: 2, health: { path: /healthz, interval: 200ms }, drain_timeout: 1s, start_timeout: 20s }", root)
		n := newFleetNode(t, fleetSpec{name: fmt.Sprintf("web-%d", i), gateway: freeAddr(t), state: dsn, app: app,
			fleet: defaultFleetKeys + fmt.Sprintf(", wait: 200ms, lease: %s", lease)})
		n.must("deploy", "web", "--release", filepath.Join(root, "v1"), "--this-node")
		nodes = append(nodes, n)
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]

	done := make(chan result, 1)
	go func() { done <- n1.cli("deploy", "web", "--release", "v2") }()
	waitUntil(t, 2*time.Minute, "web-2's own deploy of v2 to be under way", func() bool {
		d := n2.appStatus("web").Deploy
		return d != nil && d.ID == "web-2" && d.State == "running"
	})
	if got := n1.appStatus("web").Current; got != "v2" {
		t.Fatalf("web-1, done before web-2, runs %s", got)
	}
	n1.kill9()
	killed := time.Now()
	r := <-done
	t.Logf("the CLI of the killed leader: exit %d %s%s", r.code, r.stdout, r.stderr)

	// settled: the nodes named run v1 alone (their record, their routes as
	// the fleet sees them) and are in rotation, with no deploy running.
	settled := func(names ...string) bool {
		want := map[string]bool{}
		for _, name := range names {
			want[name] = true
			a := nodes[name[len(name)-1]-'1'].appStatus("web")
			if a.Current != "v1" || (a.Deploy != nil && a.Deploy.State == "running") {
				return false
			}
		}
		for _, fnode := range fleetStatus(t, n3).Nodes {
			if want[fnode.Name] && (fnode.Drain != "ready" || strings.Join(fnode.Releases["web"], ",") != "v1") {
				return false
			}
		}
		return true
	}
	waitUntil(t, lease+90*time.Second, "web-2 and web-3 back on v1, in rotation", func() bool { return settled("web-2", "web-3") })
	took := time.Since(killed)
	t.Logf("web-2 and web-3 reverted and in rotation %s after the leader's kill (lease %s)", took.Round(time.Millisecond), lease)
	// The revert records web-1 as not yet reverted once it has settled
	// what it can.
	var out string
	waitUntil(t, 30*time.Second, "status to name the unfinished fleet deploy and web-1 not yet reverted", func() bool {
		out = n2.must("status")
		return strings.Contains(out, "fleet deploy of web v2 (started on node web-1) is reverting") && strings.Contains(out, "not yet reverted: web-1")
	})
	if out := n3.must("fleet", "status"); !strings.Contains(out, "fleet deploy of web v2 (started on node web-1) is reverting") {
		t.Fatalf("fleet status names the unfinished fleet deploy:\n%s", out)
	}
	if !strings.Contains(n2.output()+n3.output(), "takes over the fleet deploy of web v2") {
		t.Fatal("no node says it took the fleet deploy over")
	}

	n1.start() // adopts its v2 instances: the fleet reverts it now
	waitUntil(t, 90*time.Second, "web-1 reverted to v1 and the fleet deploy gone", func() bool {
		if !settled("web-1", "web-2", "web-3") {
			return false
		}
		return !strings.Contains(n1.must("status"), "fleet deploy of web")
	})
	for _, fnode := range fleetStatus(t, n1).Nodes {
		if fnode.Drain != "ready" || strings.Join(fnode.Releases["web"], ",") != "v1" {
			t.Fatalf("%s: want in rotation on v1 alone: %+v", fnode.Name, fnode)
		}
	}
}
