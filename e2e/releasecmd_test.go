package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/deploy"
)

// withMigrate gives a release a bin/migrate that records its run in ran
// and says so on its output, or fails with exit 3 when fail is set.
func withMigrate(t *testing.T, dir, ran string, fail bool) {
	t.Helper()
	script := fmt.Sprintf("#!/bin/sh\necho \"migrating $HANDOFF_APP to $HANDOFF_RELEASE\"\necho \"$HANDOFF_RELEASE\" >> %s\necho done migrating\n", ran)
	if fail {
		script = "#!/bin/sh\necho 'cannot reach the database' >&2\nexit 3\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "migrate"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// The release phase: the app's own release command runs once per
// release, before any instance of it starts, its output in the deploy's
// progress and in `handoff logs`; one that fails leaves the old release
// serving; a rollback past it needs --force.
func TestReleaseCommand(t *testing.T) {
	dir := t.TempDir()
	root, ran := filepath.Join(dir, "releases"), filepath.Join(dir, "ran")
	for _, r := range []struct {
		label string
		fail  bool
	}{{"v1", false}, {"v2", false}, {"v3", true}} {
		withMigrate(t, makeRelease(t, root, r.label, ""), ran, r.fail)
	}
	n := newNode(t, fmt.Sprintf("  web:\n    command: [bin/app]\n    release_command: [bin/migrate]\n    releases: %s\n    instances: 2\n    health: { path: /healthz, interval: 200ms }\n    drain_timeout: 1s\n", root))
	out := n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
	if !strings.Contains(out, "migrating web to v1") || !strings.Contains(out, "release v1") {
		t.Errorf("the release command's output should show in the deploy's progress:\n%s", out)
	}
	n.must("deploy", "web", "--release", filepath.Join(root, "v2"))
	checkRelease(t, n, "v2", 2)
	var ranAt, startedAt int64
	for _, e := range events(t, n) {
		switch {
		case ranAt == 0 && strings.Contains(e.Message, "release command of v2 ran"):
			ranAt = e.ID
			if !strings.Contains(e.Message, "done migrating") {
				t.Errorf("the event should carry the command's last lines: %s", e.Message)
			}
		case startedAt == 0 && strings.Contains(e.Message, "web-v2-") && strings.Contains(e.Message, "started"):
			startedAt = e.ID
		}
	}
	if ranAt == 0 || startedAt == 0 || ranAt > startedAt {
		t.Errorf("the release command of v2 (event %d) must run before its first instance starts (event %d)", ranAt, startedAt)
	}

	r := n.cli("deploy", "web", "--release", filepath.Join(root, "v3"))
	if r.code != 1 || !strings.Contains(r.stderr, "release command") || !strings.Contains(r.stderr, "exit status 3") || !strings.Contains(r.stderr, "cannot reach the database") {
		t.Errorf("a failing release command: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	checkRelease(t, n, "v2", 2)

	if r := n.cli("rollback", "web"); r.code == 0 || !strings.Contains(r.stderr, "--force") {
		t.Errorf("a rollback past a release command must ask for --force: exit %d\n%s", r.code, r.stderr)
	}
	n.must("rollback", "web", "--force")
	checkRelease(t, n, "v1", 2)
	n.must("deploy", "web", "--release", filepath.Join(root, "v2"))
	b, err := os.ReadFile(ran)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(string(b)); strings.Join(got, " ") != "v1 v2" {
		t.Errorf("release commands ran for %v, want once each for v1 and v2", got)
	}
	if logs := n.must("logs", "web"); !strings.Contains(logs, "migrating web to v2") {
		t.Errorf("handoff logs should show the release command's output:\n%s", logs)
	}
}

// `handoff migrate status` with only the config finds the migrations that
// live in the releases, as `handoff status` does.
func TestMigrateStatusFindsTheReleasesMigrations(t *testing.T) {
	dir := t.TempDir()
	root, db := filepath.Join(dir, "releases"), "sqlite://"+filepath.Join(dir, "app.db")
	rel := makeRelease(t, root, "v1", "")
	if err := os.MkdirAll(filepath.Join(rel, "migrations"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rel, "migrations", "0001_notes.sql"), []byte("-- handoff:expand\nCREATE TABLE notes (id integer PRIMARY KEY);\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	n := newNode(t, fmt.Sprintf("  web:\n    command: [bin/app]\n    releases: %s\n    instances: 1\n    health: { path: /healthz, interval: 200ms }\n", root))
	appendConfig(t, n, fmt.Sprintf("database:\n  url: %q\n", db))
	n.must("deploy", "web", "--release", rel)
	r := n.cli("migrate", "status")
	if r.code != 0 || !strings.Contains(r.stdout, "0001_notes") {
		t.Fatalf("migrate status from the config: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestReleaseCommandOutlivesAKilledHandoff: handoff is killed (-9) while
// the release command runs. The command goes on to its end (its output
// goes to its log, not to a pipe of the dead process, so it is not killed
// by SIGPIPE mid-migration), and the next handoff process, resuming the
// deploy, waits for it to end before it runs the command again: never two
// side by side (they were, racing each other's migrations).
func TestReleaseCommandOutlivesAKilledHandoff(t *testing.T) {
	dir := t.TempDir()
	root, ran := filepath.Join(dir, "releases"), filepath.Join(dir, "ran")
	for _, l := range []string{"v1", "v2"} {
		d := makeRelease(t, root, l, "")
		script := fmt.Sprintf("#!/bin/sh\necho \"start $$\" >> %[1]s\necho migrating; sleep 2; echo still migrating\necho \"end $$\" >> %[1]s\n", ran)
		if err := os.WriteFile(filepath.Join(d, "bin", "migrate"), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	n := newNode(t, fmt.Sprintf("  web:\n    command: [bin/app]\n    release_command: [bin/migrate]\n    releases: %s\n    instances: 1\n    health: { path: /healthz, interval: 200ms }\n    drain_timeout: 1s\n", root))
	n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
	os.Remove(ran)
	go n.cli("deploy", "web", "--release", filepath.Join(root, "v2"))
	waitUntil(t, 30*time.Second, "the release command of v2 to start", func() bool {
		b, _ := os.ReadFile(ran)
		return strings.Contains(string(b), "start")
	})
	n.kill9()
	n.start()
	waitUntil(t, 60*time.Second, "the resumed deploy to end", func() bool {
		d := n.appStatus("web").Deploy
		return d != nil && d.ID == "web-2" && d.State != deploy.Running
	})
	if d := n.appStatus("web").Deploy; d.State != deploy.Done {
		t.Fatalf("the resumed deploy: %s %s", d.State, d.Error)
	}
	b, _ := os.ReadFile(ran)
	lines := strings.Fields(strings.ReplaceAll(string(b), "\n", " "))
	t.Logf("release command runs: %q", lines)
	// start A, end A, start B, end B: the first ran to its end, the
	// second began after it.
	if len(lines) != 8 || lines[0] != "start" || lines[2] != "end" || lines[1] != lines[3] || lines[4] != "start" || lines[6] != "end" || lines[5] != lines[7] {
		t.Fatalf("want the killed handoff's command to end, then one more: %q", lines)
	}
	if out := n.must("logs", "web"); !strings.Contains(out, "still migrating") {
		t.Errorf("the command's output is in its log:\n%s", out)
	}
}
