package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/loadgen"
	"github.com/handoff-dev/handoff/internal/supervisor"
)

// ownBinary gives a test its own copy of the handoff binary, which the test
// may replace on disk as an operator installing a new version would.
func ownBinary(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "handoff")
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// replaceBinary installs new content at path the way installers do:
// write aside, then rename over, so the running binary's inode is untouched.
func replaceBinary(t *testing.T, path string, data []byte) {
	t.Helper()
	tmp := path + ".new"
	if err := os.WriteFile(tmp, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestUpgradeUnderLoad: three back-to-back `handoff upgrade`s, each while
// the previous old process may still be draining, under ≥ 64 clients with
// slow requests and WebSockets: no request fails, no keep-alive connection
// is closed under its client, and the instances are adopted, not restarted.
// Then a new binary that cannot start leaves the old one serving.
func TestUpgradeUnderLoad(t *testing.T) {
	exe := ownBinary(t)
	root := filepath.Join(t.TempDir(), "releases")
	makeRelease(t, root, "v1", "")
	n := newNodeWith(t, exe, fmt.Sprintf(`  web:
    command: [bin/app]
    releases: %s
    instances: 2
    health: { path: /healthz, interval: 200ms }
    drain_timeout: 3s
`, root))
	n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
	before := n.instances("web")

	load, err := loadgen.Start(context.Background(), loadgen.Config{
		Addr: n.gateway, Fast: 48, Slow: 8, SlowDelay: 2 * time.Second, Uploaders: 4, UploadSize: 16 << 10,
		WebSockets: 4, Duration: 5 * time.Minute, Timeout: 60 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	pids := map[string]bool{}
	for i := range 3 {
		out := n.must("upgrade", "--json")
		if !strings.Contains(out, `"new_pid"`) {
			t.Fatalf("upgrade %d: %s", i+1, out)
		}
		pids[out] = true
		time.Sleep(300 * time.Millisecond)
	}
	time.Sleep(2 * time.Second)
	res := load.Stop()
	t.Logf("load during three upgrades:\n%s", res)
	if err := res.Err(); err != nil {
		t.Errorf("zero failed requests promised across upgrades: %v", err)
	}
	if res.ForcedReconnects != 0 {
		t.Errorf("%d keep-alive connections were closed under their clients", res.ForcedReconnects)
	}
	if res.GracefulReconnects == 0 {
		t.Error("no client was told to reconnect: did the old processes keep serving?")
	}
	after := n.instances("web")
	if len(after) != len(before) {
		t.Fatalf("instances before %v, after %v", before, after)
	}
	for i := range before {
		if before[i].PID != after[i].PID || after[i].State != supervisor.StateRunning {
			t.Errorf("instance %s: pid %d before, %d (%s) after: it should have been adopted", before[i].ID, before[i].PID, after[i].PID, after[i].State)
		}
	}

	// A new binary that cannot start: the upgrade fails, the old one serves.
	good, _ := os.ReadFile(exe)
	replaceBinary(t, exe, []byte("#!/bin/sh\necho 'this is not handoff' >&2\nexit 1\n"))
	r := n.cli("upgrade")
	if r.code != 1 || !strings.Contains(r.stderr, "the old process goes on serving") {
		t.Errorf("upgrade to a broken binary: exit %d, %s", r.code, r.stderr)
	}
	replaceBinary(t, exe, good)
	res, err = loadgen.Run(context.Background(), loadgen.Config{Addr: n.gateway, Fast: 8, MaxRequests: 200, Duration: 30 * time.Second})
	if err != nil || res.Err() != nil || res.Requests < 200 {
		t.Errorf("after a failed upgrade the old process should serve: %v %v (%d requests)", err, res.Err(), res.Requests)
	}
	// The old process still supervises: a deploy works.
	makeRelease(t, root, "v2", "")
	n.must("deploy", "web", "--release", filepath.Join(root, "v2"))
	n.must("upgrade")
	if st := n.appStatus("web"); st.Current != "v2" || len(st.Instances) != 2 {
		t.Errorf("after the failed upgrade, a deploy and a good upgrade: %+v", st)
	}
}

// TestUpgradeCarriesOnADeploy: an upgrade in the middle of a rolling deploy
// hands the deploy over; the new process finishes it.
func TestUpgradeCarriesOnADeploy(t *testing.T) {
	exe := ownBinary(t)
	root := filepath.Join(t.TempDir(), "releases")
	makeRelease(t, root, "v1", "")
	makeRelease(t, root, "v2", "")
	n := newNodeWith(t, exe, fmt.Sprintf(`  web:
    command: [bin/app]
    releases: %s
    instances: 3
    health: { path: /healthz, interval: 200ms }
    drain_timeout: 4s
`, root))
	n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
	// WebSockets keep each brick's drain going until drain_timeout.
	load, err := loadgen.Start(context.Background(), loadgen.Config{Addr: n.gateway, Fast: 16, WebSockets: 6, Duration: 2 * time.Minute, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer load.Stop()
	done := make(chan result, 1)
	go func() { done <- n.cli("deploy", "web", "--release", filepath.Join(root, "v2")) }()
	waitUntil(t, 30*time.Second, "the deploy to be draining a brick", func() bool {
		d := n.appStatus("web").Deploy
		return d != nil && d.ID == "web-2" && strings.Contains(fmt.Sprint(runningStep(d.Steps)), "drain")
	})
	n.must("upgrade")
	<-done // the CLI's stream ended with the old process; the deploy goes on
	waitUntil(t, 60*time.Second, "the new process to finish the deploy", func() bool {
		st := n.appStatus("web")
		return st.Deploy != nil && st.Deploy.ID == "web-2" && st.Deploy.State == "done"
	})
	checkRelease(t, n, "v2", 3)
	res := load.Stop()
	if err := res.Err(); err != nil {
		t.Errorf("zero failed requests promised: %v", err)
	}
}

// runningStep returns the name of the deploy's running step, if any.
func runningStep(steps []*deploy.Step) string {
	for _, s := range steps {
		if s.State == deploy.Running {
			return s.String()
		}
	}
	return ""
}

// A stop (SIGTERM) that comes while an upgrade (SIGHUP) hands over: the
// stop is the service's, so once the hand-over is through it goes on to
// the new process, and no handoff is left serving. The old process used
// to close and unlink the control socket it had just handed over, and
// exit, leaving the new one serving unreachable by any CLI, a stray that
// held the instances' lock. A stop that reaches the old process only once
// the hand-over is through (it retires, or has exited) is not the
// service's, and the new one serves on, with its socket: what is never
// left is a handoff serving without it.
func TestStopDuringUpgrade(t *testing.T) {
	b := startBackend(t, "v1")
	for _, delay := range []time.Duration{0, 5 * time.Millisecond, 15 * time.Millisecond, 50 * time.Millisecond} {
		n := newNode(t, fmt.Sprintf("  web:\n    targets: [%s]\n    health: { path: /healthz, interval: 200ms }\n", b.addr))
		n.cmd.Process.Signal(syscall.SIGHUP)
		time.Sleep(delay)
		n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.exited:
		case <-time.After(60 * time.Second):
			t.Fatalf("delay %s: the first process did not exit", delay)
		}
		var left []int
		waitUntil(t, 30*time.Second, fmt.Sprintf("delay %s: handoff stopped, or serving with its socket", delay), func() bool {
			left = servesOf(n.config)
			_, err := os.Stat(n.socket)
			return len(left) == 0 && err != nil || len(left) == 1 && err == nil
		})
		if delay == 0 && len(left) > 0 {
			t.Fatalf("a stop right after the SIGHUP stops the service; pid %v serves on", left)
		}
		if len(left) == 1 && n.status().PID != left[0] {
			t.Fatalf("delay %s: the control socket answers for the serving process %d", delay, left[0])
		}
	}
}

// servesOf lists the processes that run `handoff serve --config config`.
func servesOf(config string) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		stat, _ := os.ReadFile("/proc/" + e.Name() + "/stat")
		if strings.Contains(string(cmdline), "serve\x00--config\x00"+config+"\x00") && !strings.Contains(string(stat), ") Z ") {
			pids = append(pids, pid)
		}
	}
	return pids
}
