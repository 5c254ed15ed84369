package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/loadgen"
)

// A canary with an analysis judges the new release by its own numbers
// against the old one's, under real traffic: a release that logs everyone
// out (redirects to /login) or fails a path with 500 — while its health
// check passes — is rolled back by itself, with zero failed requests for
// the clients that the gateway did not send to it, and the event log says
// which number crossed which threshold; a good release is promoted.
func TestCanaryAnalysis(t *testing.T) {
	root := filepath.Join(t.TempDir(), "releases")
	for _, r := range []struct{ label, behaviour string }{{"v1", ""}, {"logout", "login"}, {"broken", "5xx"}, {"v2", ""}} {
		makeRelease(t, root, r.label, r.behaviour)
	}
	n := newNode(t, fmt.Sprintf(`  web:
    command: [bin/app]
    releases: %s
    instances: 2
    health: { path: /healthz, interval: 200ms }
    drain_timeout: 1s
    canary: { steps: [20, 50], bricks: true, interval: 1s, min_requests: 30, max_wait: 30s }
`, root))
	n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
	load, err := loadgen.Start(context.Background(), loadgen.Config{Addr: n.gateway, Fast: 24, Slow: 2, SlowDelay: 200 * time.Millisecond,
		Duration: 3 * time.Minute, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer load.Stop()
	for _, bad := range []struct{ label, number string }{{"logout", "redirect share"}, {"broken", "5xx share"}} {
		r := n.cli("deploy", "web", "--release", filepath.Join(root, bad.label), "--strategy", "canary")
		if r.code != 1 || !strings.Contains(r.stderr, bad.number) || !strings.Contains(r.stderr, "crossed its threshold") {
			t.Errorf("canary of %s: exit %d, want 1 naming %q\n%s%s", bad.label, r.code, bad.number, r.stdout, r.stderr)
		}
		checkRelease(t, n, "v1", 2)
		found := false
		for _, e := range events(t, n) {
			found = found || strings.Contains(e.Message, bad.label+" "+bad.number) && strings.Contains(e.Message, "crossed")
		}
		if !found {
			t.Errorf("the event log does not say which number of %s crossed its threshold", bad.label)
		}
	}
	// A rolling deploy judges its first brick the same way before the next.
	r := n.cli("deploy", "web", "--release", filepath.Join(root, "logout"))
	if r.code != 1 || !strings.Contains(r.stderr, "analysis of brick 1") || !strings.Contains(r.stderr, "redirect share") {
		t.Errorf("a rolling deploy of logout: exit %d, want 1 from the analysis of brick 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	checkRelease(t, n, "v1", 2)
	out := n.must("deploy", "web", "--release", filepath.Join(root, "v2"), "--strategy", "canary")
	if !strings.Contains(out, "analysis 20%") || !strings.Contains(out, "analysis 50%") || !strings.Contains(out, "done") {
		t.Errorf("a good canary should pass both steps and be promoted:\n%s", out)
	}
	checkRelease(t, n, "v2", 2)
	res := load.Stop()
	t.Logf("load:\n%s", res)
	// The bad releases' own answers — their 500s and redirects, which the
	// load generator counts as failures — are what the analysis judged;
	// nothing else may fail: no 502, no reset, no timeout.
	for _, e := range res.Errors {
		if !strings.HasSuffix(e.Error, "status 500") && !strings.HasSuffix(e.Error, "status 302") {
			t.Errorf("%d× a failure the bad releases did not cause: %s", e.Count, e.Error)
		}
	}
	if res.ForcedReconnects != 0 {
		t.Errorf("%d forced reconnects", res.ForcedReconnects)
	}
}
