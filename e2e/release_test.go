package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/loadgen"
	"github.com/handoff-dev/handoff/internal/supervisor"
)

// makeRelease writes releases/<label>/bin/app: the sample app as a release
// of the app under test. behaviour is "" (healthy), "unhealthy" (never
// passes its health check), "slow" (listens after 2s), "crash" (exits
// at once), or "login"/"5xx" (healthy, but every other page redirects to
// /login or answers 500).
func makeRelease(t *testing.T, root, label, behaviour string) string {
	t.Helper()
	dir := filepath.Join(root, label)
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\nexec %s sampleapp \"$@\"\n", bin)
	switch behaviour {
	case "unhealthy":
		script = fmt.Sprintf("#!/bin/sh\nexec %s sampleapp --unhealthy \"$@\"\n", bin)
	case "slow":
		script = fmt.Sprintf("#!/bin/sh\nexec %s sampleapp --start-delay 2s \"$@\"\n", bin)
	case "crash":
		script = "#!/bin/sh\necho 'release crash: cannot open its database' >&2\nexit 3\n"
	case "login", "5xx": // healthy, but bad under real traffic
		script = fmt.Sprintf("#!/bin/sh\nexec %s sampleapp --bad %s \"$@\"\n", bin, behaviour)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "app"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// instances returns an app's supervised instances from status.
func (n *node) instances(app string) []supervisor.Instance {
	for _, a := range n.status().Apps {
		if a.App == app {
			return a.Instances
		}
	}
	return nil
}

func (n *node) appStatus(app string) control.AppStatus {
	for _, a := range n.status().Apps {
		if a.App == app {
			return a
		}
	}
	n.t.Fatalf("no app %s in status", app)
	return control.AppStatus{}
}

// TestReleasesUnderLoad deploys releases of a supervised app under ≥ 64
// clients with slow requests and WebSockets: brick by brick over 3 bricks,
// then blue/green, then a release that never becomes healthy and one that
// crashes (both rolled back automatically), then one instance is killed.
// No request may fail.
func TestReleasesUnderLoad(t *testing.T) {
	root := filepath.Join(t.TempDir(), "releases")
	for _, r := range []struct{ label, behaviour string }{{"v1", ""}, {"v2", ""}, {"v3", ""}, {"sick", "unhealthy"}, {"broken", "crash"}} {
		makeRelease(t, root, r.label, r.behaviour)
	}
	n := newNode(t, fmt.Sprintf(`  web:
    command: [bin/app]
    releases: %s
    instances: 3
    health: { path: /healthz, interval: 200ms }
    drain_timeout: 3s
    start_timeout: 5s
`, root))
	n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
	load, err := loadgen.Start(context.Background(), loadgen.Config{
		Addr: n.gateway, Fast: 40, Slow: 8, SlowDelay: 2 * time.Second, Uploaders: 8, UploadSize: 32 << 10,
		Streams: 4, WebSockets: 4, Cookies: true, Duration: 5 * time.Minute, Timeout: 60 * time.Second,
	})
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

	out := n.must("deploy", "web", "--release", filepath.Join(root, "v2"))
	if !strings.Contains(out, "shift (brick 3)") || !strings.Contains(out, "rolling") && !strings.Contains(out, "done") {
		t.Errorf("a 3-instance app should roll brick by brick:\n%s", out)
	}
	checkRelease(t, n, "v2", 3)
	n.must("deploy", "web", "--release", filepath.Join(root, "v3"), "--strategy", "all")
	checkRelease(t, n, "v3", 3)

	for _, bad := range []struct{ label, why string }{{"sick", "never became healthy"}, {"broken", "crashed"}} {
		r := n.cli("deploy", "web", "--release", filepath.Join(root, bad.label))
		if r.code != 1 || !strings.Contains(r.stderr, bad.why) || !strings.Contains(r.stderr, "v3 still serves") {
			t.Errorf("deploy of %s: exit %d, want 1 and %q:\n%s%s", bad.label, r.code, bad.why, r.stdout, r.stderr)
		}
		checkRelease(t, n, "v3", 3)
		if st := n.appStatus("web"); st.Deploy == nil || st.Deploy.State != "failed" || st.Deploy.Error == "" {
			t.Errorf("status should say why the deploy of %s failed: %+v", bad.label, st.Deploy)
		}
	}

	res := load.Stop()
	stopped = true
	t.Logf("load during the deploys:\n%s", res)
	if err := res.Err(); err != nil {
		t.Errorf("zero failed requests promised: %v", err)
	}
	if res.ForcedReconnects != 0 {
		t.Errorf("%d keep-alive connections were closed under their clients", res.ForcedReconnects)
	}
	for _, rel := range []string{"v1", "v2", "v3"} {
		if res.Releases[rel] == 0 {
			t.Errorf("release %s served nothing: %v", rel, res.Releases)
		}
	}
	if res.Releases["sick"]+res.Releases["broken"] > 0 {
		t.Errorf("a release that failed its deploy served requests: %v", res.Releases)
	}

	// A crash of one instance: it restarts on its port; requests go on.
	// Event streams are left out of this load on purpose: a response
	// already under way from a process that dies cannot be rescued by any
	// proxy. Slow requests (nothing sent yet) are retried on another
	// instance; a WebSocket gets Close 1012 and reconnects.
	load, err = loadgen.Start(context.Background(), loadgen.Config{
		Addr: n.gateway, Fast: 48, Slow: 8, SlowDelay: 2 * time.Second, Uploaders: 4, UploadSize: 32 << 10,
		WebSockets: 4, Duration: time.Minute, Timeout: 60 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	victim := n.instances("web")[0]
	if victim.PID <= 0 {
		t.Fatalf("instance %s has no process: %+v", victim.ID, victim)
	}
	syscall.Kill(victim.PID, syscall.SIGKILL)
	waitUntil(t, 30*time.Second, "the killed instance to be restarted", func() bool {
		for _, inst := range n.instances("web") {
			if inst.ID == victim.ID {
				return inst.Restarts >= 1 && inst.State == supervisor.StateRunning && inst.PID != victim.PID
			}
		}
		return false
	})
	time.Sleep(time.Second)
	res = load.Stop()
	t.Logf("load during the crash of %s:\n%s", victim.ID, res)
	if err := res.Err(); err != nil {
		t.Errorf("zero failed requests promised when an instance crashes: %v", err)
	}
}

// checkRelease asserts that exactly want instances run, all of release,
// each slot once, and that the route lists exactly them.
func checkRelease(t *testing.T, n *node, release string, want int) {
	t.Helper()
	st := n.appStatus("web")
	slots := map[int]bool{}
	for _, inst := range st.Instances {
		if inst.Release != release || inst.State != supervisor.StateRunning || slots[inst.Index] {
			t.Errorf("after deploying %s: instance %s of %s is %s", release, inst.ID, inst.Release, inst.State)
		}
		slots[inst.Index] = true
	}
	if len(st.Instances) != want || st.Current != release {
		t.Errorf("want %d instances of current release %s, have %d (current %s)", want, release, len(st.Instances), st.Current)
	}
	if len(st.Pools) != 1 || st.Pools[0].Release != release || len(st.Pools[0].Targets) != want {
		t.Errorf("the route should list the %d instances of %s: %+v", want, release, st.Pools)
	}
}

// TestWorkerFinishesItsJobOnItsRelease: a worker in the middle of a
// 20-second job during a deploy finishes the job on its old release, whose
// directory stays until the worker exits; the new release's worker starts
// first; and the old directory is removed only once nothing runs from it.
func TestWorkerFinishesItsJobOnItsRelease(t *testing.T) {
	dir := t.TempDir()
	root, jobLog := filepath.Join(dir, "releases"), filepath.Join(dir, "jobs.log")
	for _, l := range []string{"v1", "v2", "v3"} {
		makeRelease(t, root, l, "")
	}
	n := newNode(t, fmt.Sprintf(`  jobs:
    kind: worker
    command: [bin/app, --worker, --job, 20s, --job-log, %s]
    releases: %s
    keep_releases: 1
`, jobLog, root))
	n.must("deploy", "jobs", "--release", filepath.Join(root, "v1"))
	waitUntil(t, 30*time.Second, "the v1 worker to start a job", func() bool { return strings.Contains(readFile(jobLog), "start v1 1 ") })
	time.Sleep(2 * time.Second) // well inside the job
	n.must("deploy", "jobs", "--release", filepath.Join(root, "v2"))

	rels := n.must("releases", "jobs")
	if !strings.Contains(rels, "v1") || !strings.Contains(rels, "draining") {
		t.Errorf("v1 should be draining while its worker finishes:\n%s", rels)
	}
	if _, err := os.Stat(filepath.Join(root, "v1")); err != nil {
		t.Fatalf("v1's directory must stay while its worker runs: %v", err)
	}
	waitUntil(t, 40*time.Second, "the v1 worker to finish its job and exit", func() bool {
		for _, inst := range n.instances("jobs") {
			if inst.Release == "v1" {
				return false
			}
		}
		return true
	})
	log := readFile(jobLog)
	if !strings.Contains(log, "done v1 1 ") {
		t.Errorf("the v1 job was not finished:\n%s", log)
	}
	if strings.Contains(log, "start v1 2 ") {
		t.Errorf("the draining v1 worker started another job:\n%s", log)
	}
	if strings.Index(log, "start v2 1 ") > strings.Index(log, "done v1 1 ") {
		t.Errorf("the new worker should start before the old one finishes:\n%s", log)
	}
	// v3's cleanup removes v1 (unused, beyond keep_releases: 1), never v2.
	n.must("deploy", "jobs", "--release", filepath.Join(root, "v3"))
	if _, err := os.Stat(filepath.Join(root, "v1")); !os.IsNotExist(err) {
		t.Errorf("unused v1 should have been removed after the next deploy: %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "v2")); err != nil {
		t.Errorf("v2 (previous, still draining) must not be removed: %v", err)
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
