package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/loadgen"
)

// lifecycleFaults are stops of handoff serve that production hosts see
// every month. Each is one row: how handoff goes down, and what it must
// come back to. After each, handoff serve is started again and must bring
// the app back to what it was (or to where its deploy leads), holding
// requests until the instances answer: load run from the moment it serves
// again sees no failed request.
var lifecycleFaults = []struct {
	name string
	// midDeploy starts a rolling deploy of v2 and applies the fault once
	// its first brick is running.
	midDeploy bool
	fault     func(t *testing.T, n *node)
	want      string // the release that must run on every instance after
}{
	{name: "SIGTERM (systemctl restart, Ctrl-C)", fault: sigterm, want: "v1"},
	{name: "SIGTERM mid rolling deploy", midDeploy: true, fault: sigterm, want: "v2"},
	{name: "reboot: kill -9 of handoff and every instance", fault: reboot, want: "v1"},
	{name: "kill -9 of handoff mid rolling deploy", midDeploy: true, fault: func(t *testing.T, n *node) { n.kill9() }, want: "v2"},
}

func sigterm(t *testing.T, n *node) {
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(60 * time.Second):
		t.Fatal("handoff serve did not stop within 60s of SIGTERM")
	}
}

// reboot kills handoff serve and every process it started, as a power cut
// does.
func reboot(t *testing.T, n *node) {
	pids := []int{}
	for _, inst := range n.instances("web") {
		pids = append(pids, inst.PID)
	}
	n.kill9()
	for _, pid := range pids {
		syscall.Kill(-pid, syscall.SIGKILL) // the instance's process group
	}
}

func TestRestartIsResume(t *testing.T) {
	for _, tc := range lifecycleFaults {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "releases")
			makeRelease(t, root, "v1", "")
			makeRelease(t, root, "v2", "slow") // 2 s to listen: a deploy has time to be cut
			n := newNode(t, fmt.Sprintf(`  web:
    command: [bin/app]
    releases: %s
    instances: 3
    health: { path: /healthz, interval: 200ms }
    drain_timeout: 2s
    start_timeout: 10s
    hold_max: 20s
`, root))
			n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
			ports := map[int]bool{}
			for _, inst := range n.instances("web") {
				ports[inst.Port] = true
			}
			if tc.midDeploy {
				deploying, _ := deployInBackground(t, n, "web", filepath.Join(root, "v2"))
				defer deploying.Wait()
				waitForInstanceOf(t, n, "web", "v2")
			}
			tc.fault(t, n)
			n.start()
			res := runLoad(t, n, 4*time.Second)
			if err := res.Err(); err != nil {
				t.Errorf("zero failed requests once handoff serves again: %v\n%s", err, res)
			}
			waitUntil(t, 60*time.Second, "the app to settle on "+tc.want, func() bool {
				st := n.appStatus("web")
				if st.Deploy != nil && st.Deploy.State == deploy.Running {
					return false
				}
				return st.Current == tc.want && len(st.Instances) == 3
			})
			checkRelease(t, n, tc.want, 3)
			if st := n.appStatus("web"); st.Deploy != nil && st.Deploy.State == deploy.Done && tc.midDeploy {
				for _, s := range st.Deploy.Steps {
					if s.State != deploy.Done {
						t.Errorf("the deploy says done with step %s %s", s.Name, s.State)
					}
				}
			}
			if !tc.midDeploy {
				for _, inst := range n.instances("web") {
					if !ports[inst.Port] {
						t.Errorf("instance %s came back on port %d, not one the route had", inst.ID, inst.Port)
					}
				}
			}
		})
	}
}

// runLoad runs keep-alive clients that never retry, slow ones among them,
// for d, and returns what they saw.
func runLoad(t *testing.T, n *node, d time.Duration) loadgen.Result {
	t.Helper()
	load, err := loadgen.Start(context.Background(), loadgen.Config{
		Addr: n.gateway, Fast: 32, Slow: 4, SlowDelay: 500 * time.Millisecond, Uploaders: 4, UploadSize: 16 << 10,
		Duration: time.Minute, Timeout: 60 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(d)
	res := load.Stop()
	t.Logf("load:\n%s", res)
	return res
}

// A handoff serve that cannot start (its port is taken) stops nothing: the
// instances it would have adopted run on, and the next serve adopts them.
func TestFailedStartStopsNothing(t *testing.T) {
	root := filepath.Join(t.TempDir(), "releases")
	makeRelease(t, root, "v1", "")
	n := newNode(t, fmt.Sprintf("  web:\n    command: [bin/app]\n    releases: %s\n    instances: 2\n    health: { path: /healthz, interval: 200ms }\n", root))
	n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
	before := n.instances("web")
	n.kill9()
	taken := takenAddr(t)
	badPath := filepath.Join(n.dir, "bad.yaml")
	rewriteConfig(t, n, badPath, n.adminLine(n.admin), n.adminLine(taken))
	out, err := exec.Command(bin, "serve", "--config", badPath).CombinedOutput()
	if err == nil || !strings.Contains(string(out), taken) {
		t.Fatalf("serve with its admin port taken: %v\n%s", err, out)
	}
	for _, inst := range before {
		if syscall.Kill(inst.PID, 0) != nil {
			t.Errorf("instance %s (pid %d) was stopped by a serve that failed to start:\n%s", inst.ID, inst.PID, out)
		}
	}
	n.start()
	for _, inst := range n.instances("web") {
		found := false
		for _, b := range before {
			found = found || (b.ID == inst.ID && b.PID == inst.PID)
		}
		if !found {
			t.Errorf("instance %s runs as %d: not adopted", inst.ID, inst.PID)
		}
	}
}

// newRelativeNode is an installation as the README writes one: paths
// relative to the directory, and `cd dir && handoff serve`.
func newRelativeNode(t *testing.T, apps string) *node {
	t.Helper()
	return startNode(t, bin, func(n *node) string {
		n.cwd, n.config = n.dir, "handoff.yaml"
		return fmt.Sprintf("listen: [%q]\nsocket: ./handoff.sock\nstate: ./handoff.db\nlogs: ./logs\nadmin: { listen: %q }\naccess_log: false\napps:\n%s",
			n.gateway, n.admin, apps)
	})
}

// Two installations on one host, each with the same relative paths and the
// same app: restarting, killing and upgrading one never touches the
// other's instances, and the other serves on without a failed request.
func TestTwoInstallationsSideBySide(t *testing.T) {
	root := filepath.Join(t.TempDir(), "releases")
	makeRelease(t, root, "v1", "")
	apps := fmt.Sprintf("  web:\n    command: [bin/app]\n    releases: %s\n    instances: 2\n    health: { path: /healthz, interval: 200ms }\n    hold_max: 20s\n", root)
	a := newRelativeNode(t, apps)
	a.must("deploy", "web", "--release", filepath.Join(root, "v1"))
	b := newRelativeNode(t, apps)
	b.must("deploy", "web", "--release", filepath.Join(root, "v1"))
	pids := func(n *node) map[string]int {
		out := map[string]int{}
		for _, inst := range n.instances("web") {
			out[inst.ID] = inst.PID
		}
		return out
	}
	before := pids(a)
	load, err := loadgen.Start(context.Background(), loadgen.Config{Addr: a.gateway, Fast: 16, Slow: 2, SlowDelay: 300 * time.Millisecond, Duration: 2 * time.Minute, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	sigterm(t, b)
	b.start()
	b.kill9()
	b.start()
	b.must("upgrade")
	res := load.Stop()
	if err := res.Err(); err != nil {
		t.Errorf("the first installation failed requests while the second restarted: %v\n%s", err, res)
	}
	if after := pids(a); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the first installation's instances changed: %v, were %v\n%s", after, before, a.output())
	}
	for id, pid := range before {
		if syscall.Kill(pid, 0) != nil {
			t.Errorf("instance %s (pid %d) of the first installation is gone", id, pid)
		}
	}
	if got := len(b.instances("web")); got != 2 {
		t.Errorf("the second installation runs %d instances, want 2", got)
	}
}

// unusableStores spoil a node's state store while handoff serve is down,
// as a crash, a disk or an operator can. Each row makes the store unusable
// in its own way; serve must refuse to start, say why, and kill nothing.
var unusableStores = []struct {
	name  string
	spoil func(t *testing.T, state string)
	says  string
}{
	{"zero-length file", func(t *testing.T, state string) { writeState(t, state, nil) }, "empty"},
	{"corrupt file", func(t *testing.T, state string) { writeState(t, state, []byte(strings.Repeat("not a database ", 300))) }, "not a database"},
	{"read-only file system", func(t *testing.T, state string) {
		out, err := exec.Command("mount", "-o", "remount,ro", filepath.Dir(state)).CombinedOutput()
		if err != nil {
			t.Fatalf("remount read-only: %v %s", err, out)
		}
	}, "read"},
}

func writeState(t *testing.T, state string, data []byte) {
	t.Helper()
	for _, f := range []string{state, state + "-wal", state + "-shm"} {
		os.Remove(f)
	}
	if err := os.WriteFile(state, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestUnusableStateStore(t *testing.T) {
	for _, tc := range unusableStores {
		t.Run(tc.name, func(t *testing.T) {
			disk := filepath.Join(t.TempDir(), "state")
			smallDisk(t, disk, 16<<20)
			root := filepath.Join(t.TempDir(), "releases")
			makeRelease(t, root, "v1", "")
			n := newNode(t, fmt.Sprintf("  web:\n    command: [bin/app]\n    releases: %s\n    instances: 2\n", root))
			n.stop()
			state := filepath.Join(disk, "handoff.db")
			moveState(t, n, state)
			n.start()
			n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
			before := n.instances("web")
			n.kill9()
			tc.spoil(t, state)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, bin, "serve", "--config", n.config).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.says) {
				t.Errorf("serve on a %s: %v, want a refusal that says %q\n%s", tc.name, err, tc.says, out)
			}
			for _, inst := range before {
				if syscall.Kill(inst.PID, 0) != nil {
					t.Errorf("instance %s (pid %d) was killed", inst.ID, inst.PID)
				}
				syscall.Kill(-inst.PID, syscall.SIGKILL) // the test's own cleanup: nothing else knows them now
			}
		})
	}
}

// An upgrade whose new process cannot start — its config now names a port
// in use, or is invalid — changes nothing: the old process serves on with
// its instances, no request fails, and the CLI prints the reason.
func TestFailedUpgradeChangesNothing(t *testing.T) {
	root := filepath.Join(t.TempDir(), "releases")
	makeRelease(t, root, "v1", "")
	n := newNode(t, fmt.Sprintf("  web:\n    command: [bin/app]\n    releases: %s\n    instances: 2\n    health: { path: /healthz, interval: 200ms }\n", root))
	n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
	before := n.instances("web")
	good, err := os.ReadFile(n.config)
	if err != nil {
		t.Fatal(err)
	}
	taken := takenAddr(t)
	load, err := loadgen.Start(context.Background(), loadgen.Config{Addr: n.gateway, Fast: 16, Slow: 2, SlowDelay: 300 * time.Millisecond, Duration: 2 * time.Minute, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct{ name, config, reason string }{
		{"admin port in use", strings.Replace(string(good), n.adminLine(n.admin), n.adminLine(taken), 1), taken},
		{"invalid config", string(good) + "gatway: {}\n", "gatway"},
	} {
		if err := os.WriteFile(n.config, []byte(bad.config), 0o644); err != nil {
			t.Fatal(err)
		}
		r := n.cli("upgrade")
		if r.code != 1 || !strings.Contains(r.stderr, bad.reason) || !strings.Contains(r.stderr, "old process goes on serving") {
			t.Errorf("%s: upgrade exit %d, want 1 with the reason %q:\n%s%s", bad.name, r.code, bad.reason, r.stdout, r.stderr)
		}
	}
	if err := os.WriteFile(n.config, good, 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	res := load.Stop()
	if err := res.Err(); err != nil {
		t.Errorf("failed requests during the failed upgrades: %v\n%s", err, res)
	}
	after := n.instances("web")
	if len(after) != len(before) {
		t.Fatalf("instances after: %v, before: %v", after, before)
	}
	for i := range before {
		if after[i].PID != before[i].PID || after[i].State != "running" {
			t.Errorf("instance %s: %d %s after, %d before", after[i].ID, after[i].PID, after[i].State, before[i].PID)
		}
	}
	n.must("upgrade") // and a good one still works
}

// A new binary that starts but never serves: the old process gives up on
// it after 15 s, kills it, takes its instances back and serves on; the CLI
// says why; no request fails.
func TestNeverReadyUpgrade(t *testing.T) {
	exe := ownBinary(t)
	good, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(t.TempDir(), "releases")
	makeRelease(t, root, "v1", "")
	n := newNodeWith(t, exe, fmt.Sprintf("  web:\n    command: [bin/app]\n    releases: %s\n    instances: 2\n    health: { path: /healthz, interval: 200ms }\n", root))
	n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
	before := n.instances("web")
	load, err := loadgen.Start(context.Background(), loadgen.Config{Addr: n.gateway, Fast: 16, Slow: 2, SlowDelay: 300 * time.Millisecond, Duration: 2 * time.Minute, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	replaceBinary(t, exe, []byte("#!/bin/sh\nexec sleep 120\n"))
	start := time.Now()
	r := n.cli("upgrade")
	if r.code != 1 || !strings.Contains(r.stderr, "did not serve within") {
		t.Errorf("upgrade to a binary that never serves: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if took := time.Since(start); took > 25*time.Second {
		t.Errorf("the old process waited %v for it", took)
	}
	replaceBinary(t, exe, good)
	res := load.Stop()
	if err := res.Err(); err != nil {
		t.Errorf("failed requests during the failed upgrade: %v\n%s", err, res)
	}
	for i, inst := range n.instances("web") {
		if inst.PID != before[i].PID {
			t.Errorf("instance %s: pid %d, was %d", inst.ID, inst.PID, before[i].PID)
		}
	}
	n.must("readonly", "on") // modes work again
	n.must("readonly", "off")
	n.must("upgrade")
}

// A graceful stop stops accepting at once — a client's new connection is
// refused, so that a load balancer sends it elsewhere — and lets the
// requests in flight finish.
func TestGracefulStopStopsAcceptingAtOnce(t *testing.T) {
	b := startBackend(t, "v1")
	n := newNode(t, fmt.Sprintf("  web:\n    targets: [%q]\n    drain_timeout: 10s\n", b.addr))
	type result struct {
		status int
		err    error
	}
	inflight := make(chan result, 4)
	for range 4 {
		go func() {
			resp, err := http.Get("http://" + n.gateway + "/slow?ms=2000")
			if err != nil {
				inflight <- result{err: err}
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			inflight <- result{status: resp.StatusCode}
		}()
	}
	time.Sleep(300 * time.Millisecond) // the slow requests are in flight
	n.cmd.Process.Signal(syscall.SIGTERM)
	refused := false
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", n.gateway, 100*time.Millisecond)
		if err != nil {
			refused = true
			break
		}
		c.Close()
		time.Sleep(10 * time.Millisecond)
	}
	if !refused {
		t.Error("the gateway still accepted new connections a second after SIGTERM")
	}
	for range 4 {
		if r := <-inflight; r.err != nil || r.status != http.StatusOK {
			t.Errorf("a request in flight at the stop: %d %v", r.status, r.err)
		}
	}
	<-n.exited
}
