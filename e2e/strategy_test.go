package e2e

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// A first deploy and a rollback follow the app's strategy: brick by brick
// for an app of several bricks, unless --strategy says otherwise.
func TestFirstDeployAndRollbackFollowTheStrategy(t *testing.T) {
	root := filepath.Join(t.TempDir(), "releases")
	for _, l := range []string{"v1", "v2"} {
		makeRelease(t, root, l, "")
	}
	n := newNode(t, fmt.Sprintf("  web:\n    command: [bin/app]\n    releases: %s\n    instances: 3\n    health: { path: /healthz, interval: 200ms }\n    drain_timeout: 1s\n", root))
	out := n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
	if !strings.Contains(out, "start v1 (brick 3)") || !strings.Contains(out, "shift (brick 3)") {
		t.Errorf("a first deploy of 3 bricks should go brick by brick:\n%s", out)
	}
	checkRelease(t, n, "v1", 3)
	n.must("deploy", "web", "--release", filepath.Join(root, "v2"), "--strategy", "all")
	checkRelease(t, n, "v2", 3)
	if out := n.must("rollback", "web"); !strings.Contains(out, "shift (brick 3)") {
		t.Errorf("a rollback of an app of 3 bricks should go brick by brick:\n%s", out)
	}
	checkRelease(t, n, "v1", 3)
	if out := n.must("rollback", "web", "--strategy", "all"); !strings.Contains(out, "switch") || strings.Contains(out, "brick") {
		t.Errorf("rollback --strategy all should switch at once:\n%s", out)
	}
	checkRelease(t, n, "v2", 3)
	if r := n.cli("rollback", "web", "--strategy", "canary"); r.code == 0 || !strings.Contains(r.stderr, "all or rolling") {
		t.Errorf("a canary rollback: exit %d\n%s", r.code, r.stderr)
	}
}

// A `handoff upgrade` in the middle of a deploy: the new process finishes
// the deploy, and the CLI that started it follows it there and reports it
// done (it used to exit 1, "interrupted by shutdown").
func TestDeployFollowedAcrossAnUpgrade(t *testing.T) {
	root := filepath.Join(t.TempDir(), "releases")
	makeRelease(t, root, "v1", "")
	makeRelease(t, root, "v2", "slow")
	n := newNode(t, fmt.Sprintf("  web:\n    command: [bin/app]\n    releases: %s\n    instances: 2\n    health: { path: /healthz, interval: 200ms }\n    drain_timeout: 1s\n    start_timeout: 10s\n", root))
	n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
	deploying, out := deployInBackground(t, n, "web", filepath.Join(root, "v2"))
	waitForInstanceOf(t, n, "web", "v2")
	n.must("upgrade")
	if err := deploying.Wait(); err != nil || !strings.Contains(out.String(), "following it on the new process") || !strings.Contains(out.String(), "done") {
		t.Fatalf("the deploy's CLI across an upgrade: %v\n%s", err, out.String())
	}
	checkRelease(t, n, "v2", 2)
}
