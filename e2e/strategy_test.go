package e2e

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/supervisor"
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

// During a canary, status and /metrics show the two releases side by side
// by their own numbers.
func TestReleasesSideBySide(t *testing.T) {
	b1, b2 := startBackend(t, "v1"), startBackend(t, "v2")
	n := newNode(t, fmt.Sprintf("  web:\n    targets: [%q]\n    health: { path: /healthz, interval: 200ms }\n", b1.addr))
	n.must("deploy", "web", "--target", b2.addr, "--label", "v2", "--strategy", "canary", "--percent", "50")
	for range 100 {
		resp, err := http.Get("http://" + n.gateway + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	st := n.appStatus("web")
	got := map[string]int64{}
	for _, r := range st.Releases {
		got[r.Release] = r.Requests
	}
	if len(got) < 2 || got["v2"] == 0 || got["initial"]+got["v2"] < 100 {
		t.Errorf("status's releases: %+v", st.Releases)
	}
	if out := n.must("status"); !strings.Contains(out, "REQUESTS") || !strings.Contains(out, "P99") {
		t.Errorf("status shows no releases side by side:\n%s", out)
	}
	if m := adminGet(t, n, "/metrics"); !strings.Contains(m, `handoff_release_request_duration_seconds_count{app="web",release="v2"}`) {
		t.Errorf("/metrics:\n%s", grepLines(m, "handoff_release"))
	}
}

// A rollback goes back to instances that have run for a while: one of them
// restarted once before the deploy is as good as the others, and a canary
// whose own instance crashes is rolled back all the same, exit 0, all
// traffic on the old release (both used to fail the rollback, the route
// left split between the releases).
func TestRollbackToInstancesThatRestartedBefore(t *testing.T) {
	root := filepath.Join(t.TempDir(), "releases")
	makeRelease(t, root, "v1", "")
	makeRelease(t, root, "v2", "")
	n := newNode(t, fmt.Sprintf("  web:\n    command: [bin/app]\n    releases: %s\n    instances: 2\n    health: { path: /healthz, interval: 200ms }\n    drain_timeout: 1s\n", root))
	n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
	crash := func(release string) {
		t.Helper()
		var victim supervisor.Instance
		for _, i := range n.instances("web") {
			if i.Release == release {
				victim = i
			}
		}
		syscall.Kill(victim.PID, syscall.SIGKILL)
		waitUntil(t, 30*time.Second, victim.ID+" to run again", func() bool {
			for _, i := range n.instances("web") {
				if i.ID == victim.ID && i.Restarts == victim.Restarts+1 && i.State == supervisor.StateRunning {
					return true
				}
			}
			return false
		})
	}
	crash("v1")
	time.Sleep(50 * time.Millisecond) // the deploy starts after the restart, on any clock
	n.must("deploy", "web", "--release", filepath.Join(root, "v2"), "--strategy", "canary", "--percent", "50")
	crash("v2")
	if r := n.cli("rollback", "web"); r.code != 0 {
		t.Fatalf("rollback of the canary: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	checkRelease(t, n, "v1", 2)
	pools := n.appStatus("web").Pools
	if len(pools) != 1 || pools[0].Release != "v1" || pools[0].Weight != 100 {
		t.Fatalf("all traffic on v1 after the rollback: %+v", pools)
	}
}
