package deploy

import (
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/gateway"
)

func counts(release string, ok, redirects, errors int64, latency time.Duration) gateway.ReleaseCounts {
	c := gateway.ReleaseCounts{Release: release, Buckets: make([]int64, len(gateway.LatencyBounds())+1)}
	c.Classes[2], c.Classes[3], c.Classes[5] = ok, redirects, errors
	for i, b := range gateway.LatencyBounds() {
		if latency <= b {
			c.Buckets[i] = ok + redirects + errors
			return c
		}
	}
	c.Buckets[len(c.Buckets)-1] = ok + redirects + errors
	return c
}

func TestJudge(t *testing.T) {
	c := config.Canary{Max5xx: 2, MaxRedirects: 2, MaxP99: 2}
	for _, tc := range []struct {
		name     string
		old, cur gateway.ReleaseCounts
		breach   string
	}{
		{"as good", counts("v1", 990, 5, 5, 10*time.Millisecond), counts("v2", 99, 0, 1, 10*time.Millisecond), ""},
		{"one error against none is within the floor", counts("v1", 1000, 0, 0, 10*time.Millisecond), counts("v2", 199, 0, 1, 10*time.Millisecond), ""},
		{"errors", counts("v1", 995, 0, 5, 10*time.Millisecond), counts("v2", 90, 0, 10, 10*time.Millisecond), "5xx share"},
		{"logged out", counts("v1", 950, 50, 0, 10*time.Millisecond), counts("v2", 50, 50, 0, 10*time.Millisecond), "redirect share"},
		{"slow", counts("v1", 1000, 0, 0, 10*time.Millisecond), counts("v2", 100, 0, 0, 500*time.Millisecond), "p99"},
		{"slow but within the floor", counts("v1", 1000, 0, 0, 10*time.Millisecond), counts("v2", 100, 0, 0, 50*time.Millisecond), ""},
	} {
		verdict, breach := judge(c, "v1", tc.old, "v2", tc.cur)
		switch {
		case tc.breach == "" && breach:
			t.Errorf("%s: a breach: %s", tc.name, verdict)
		case tc.breach != "" && (!breach || !strings.Contains(verdict, tc.breach)):
			t.Errorf("%s: %v %s, want a breach of %s", tc.name, breach, verdict, tc.breach)
		}
	}
}

func TestCanaryPlanWithAnalysis(t *testing.T) {
	web := app(t, "    command: [bin/app]\n    instances: 2\n    canary: { steps: [10, 50] }\n")
	dep := &Deploy{From: &Release{Label: "v1"}, To: Release{Label: "v2"}, Strategy: Canary}
	if got := names(releasePlan(dep, web)); got != "start v2, check v2, analysis 10%, analysis 50%, switch, drain, stop v1" {
		t.Errorf("plan: %s", got)
	}
}

func TestRollingPlanWithBrickAnalysis(t *testing.T) {
	web := app(t, "    command: [bin/app]\n    instances: 2\n    canary: { bricks: true }\n")
	dep := &Deploy{From: &Release{Label: "v1"}, To: Release{Label: "v2"}, Strategy: Rolling}
	want := "start v2 (brick 1) [0], check v2 (brick 1) [0], shift (brick 1), analysis (brick 1), drain (brick 1), stop v1 (brick 1) [0], " +
		"start v2 (brick 2) [1], check v2 (brick 2) [1], shift (brick 2), drain (brick 2), stop v1 (brick 2)"
	if got := names(releasePlan(dep, web)); got != want {
		t.Errorf("plan: %s", got)
	}
}
