package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/loadgen"
	"github.com/handoff-dev/handoff/internal/supervisor"
)

// newNodeTop is newNode with top-level config keys (YAML, unindented)
// before the apps.
func newNodeTop(t *testing.T, top, apps string) *node {
	t.Helper()
	return newNodeTopWith(t, bin, top, apps)
}

// newNodeTopWith is newNodeTop served by the handoff binary (or a wrapper
// of it) at exe.
func newNodeTopWith(t *testing.T, exe, top, apps string) *node {
	t.Helper()
	return startNode(t, exe, func(n *node) string {
		return fmt.Sprintf("listen: [%q]\nsocket: %s\nstate: %s\nlogs: %s\nadmin: { listen: %q }\naccess_log: false\n%sapps:\n%s",
			n.gateway, n.socket, filepath.Join(n.dir, "handoff.db"), filepath.Join(n.dir, "logs"), n.admin, top, apps)
	})
}

// TestHungInstanceIsRestarted: an instance whose process lives but answers
// nothing (SIGSTOP: its socket accepts, nothing reads) is taken out of
// rotation and, after health.restart_after, restarted on its port — under
// load, with no failed request except those already sent to it, which end
// with 504 after gateway.response_timeout.
func TestHungInstanceIsRestarted(t *testing.T) {
	root := filepath.Join(t.TempDir(), "releases")
	makeRelease(t, root, "v1", "")
	n := newNodeTop(t, "gateway: { response_timeout: 1s }\n", fmt.Sprintf(`  web:
    command: [bin/app]
    releases: %s
    instances: 3
    health: { path: /healthz, interval: 200ms, timeout: 300ms, restart_after: 2s }
    stop: { timeout: 1s }
`, root))
	n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
	before := n.instances("web")
	if len(before) != 3 {
		t.Fatalf("instances: %+v", before)
	}
	hung := before[1]

	const clients = 24
	var restarted atomic.Bool
	var servedAfter atomic.Int64 // by the restarted instance
	record := func(r loadgen.Record) {
		if restarted.Load() && r.Err == nil && r.Instance == hung.Addr() {
			servedAfter.Add(1)
		}
	}
	load, err := loadgen.Start(context.Background(), loadgen.Config{Addr: n.gateway, Fast: clients, Duration: 2 * time.Minute, Timeout: 30 * time.Second, Record: record})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			load.Stop()
		}
	}()
	time.Sleep(time.Second)
	stoppedAt := time.Now()
	if err := syscall.Kill(hung.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(hung.PID, syscall.SIGCONT) })

	var now supervisor.Instance
	waitUntil(t, 30*time.Second, "the hung instance to be restarted and healthy", func() bool {
		st := n.appStatus("web")
		for _, inst := range st.Instances {
			if inst.ID == hung.ID {
				now = inst
			}
		}
		if now.PID == hung.PID || now.PID == 0 || now.State != supervisor.StateRunning {
			return false
		}
		for _, p := range st.Pools {
			for _, tg := range p.Targets {
				if tg.Addr == hung.Addr() {
					return tg.Healthy
				}
			}
		}
		return false
	})
	restartedIn := time.Since(stoppedAt)
	restarted.Store(true)
	time.Sleep(time.Second) // the restarted instance serves again
	res := load.Stop()
	stopped = true
	t.Logf("load while an instance hung and was restarted (in %s):\n%s", restartedIn.Round(100*time.Millisecond), res)

	if now.Port != hung.Port || now.Restarts != hung.Restarts+1 {
		t.Errorf("restarted instance: port %d (was %d), restarts %d (was %d)", now.Port, hung.Port, now.Restarts, hung.Restarts)
	}
	if restartedIn < 2*time.Second {
		t.Errorf("restarted %s after SIGSTOP, before health.restart_after (2s)", restartedIn)
	}
	timedOut := res.Status[504]
	if res.Failures != timedOut {
		t.Errorf("%d requests failed, of which %d with 504: only requests already sent to the hung instance may fail, with 504: %v", res.Failures, timedOut, res.Err())
	}
	if timedOut == 0 || timedOut > clients {
		t.Errorf("%d requests ended with 504; want those in flight on the hung instance when it stopped (1 to %d, one per client at most)", timedOut, clients)
	}
	if res.ForcedReconnects != 0 {
		t.Errorf("%d connections were closed under their clients", res.ForcedReconnects)
	}
	if servedAfter.Load() == 0 {
		t.Errorf("the restarted instance served nothing: %v", res.Instances)
	}
	t.Logf("%d requests in flight on the hung instance ended with 504; %d requests in all", timedOut, res.Requests)
}
