package deploy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/handoff-dev/handoff/internal/config"
)

func app(t *testing.T, yaml string) *config.App {
	t.Helper()
	cfg, err := config.Parse("t.yaml", []byte("apps:\n  web:\n"+yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Apps.Get("web")
}

// names renders a plan as one line, e.g. "start v2 (brick 1) [0], shift (brick 1)".
func names(steps []*Step) string {
	var out []string
	for _, s := range steps {
		n := s.String()
		if s.Indexes != nil {
			n += " " + strings.ReplaceAll(fmt.Sprint(s.Indexes), " ", ",")
		}
		out = append(out, n)
	}
	return strings.Join(out, ", ")
}

func TestPlans(t *testing.T) {
	v1, v2 := &Release{Label: "v1", Dir: "/r/v1"}, Release{Label: "v2", Dir: "/r/v2"}
	cases := []struct {
		name     string
		app      string
		strategy Strategy
		from     *Release
		want     string
	}{
		{"first release, brick by brick", "    command: [bin/app]\n    instances: 2\n", "", nil,
			"start v2 (brick 1) [0], check v2 (brick 1) [0], shift (brick 1), start v2 (brick 2) [1], check v2 (brick 2) [1], shift (brick 2)"},
		{"first release, all at once", "    command: [bin/app]\n    instances: 2\n", All, nil,
			"start v2, check v2, switch"},
		{"first release of one brick", "    command: [bin/app]\n    instances: 2\n    bricks: 1\n", "", nil,
			"start v2, check v2, switch"},
		{"first release as a canary", "    command: [bin/app]\n    instances: 2\n", Canary, nil,
			"start v2, check v2, switch"},
		{"blue/green", "    command: [bin/app]\n    instances: 2\n", All, v1,
			"start v2, check v2, switch, drain, stop v1"},
		{"rolling over 3 bricks by default", "    command: [bin/app]\n    instances: 3\n", "", v1,
			"start v2 (brick 1) [0], check v2 (brick 1) [0], shift (brick 1), drain (brick 1), stop v1 (brick 1) [0], " +
				"start v2 (brick 2) [1], check v2 (brick 2) [1], shift (brick 2), drain (brick 2), stop v1 (brick 2) [1], " +
				"start v2 (brick 3) [2], check v2 (brick 3) [2], shift (brick 3), drain (brick 3), stop v1 (brick 3)"},
		{"two bricks of two", "    command: [bin/app]\n    instances: 4\n    bricks: 2\n", "", v1,
			"start v2 (brick 1) [0,1], check v2 (brick 1) [0,1], shift (brick 1), drain (brick 1), stop v1 (brick 1) [0,1], " +
				"start v2 (brick 2) [2,3], check v2 (brick 2) [2,3], shift (brick 2), drain (brick 2), stop v1 (brick 2)"},
		{"canary", "    command: [bin/app]\n    instances: 2\n", Canary, v1,
			"start v2, check v2, canary"},
		{"worker", "    kind: worker\n    command: [bin/app]\n", "", v1,
			"start v2, check v2, switch, stop v1"},
		{"external targets", "    targets: [\"127.0.0.1:1\"]\n", "", v1,
			"check v2, switch, drain"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := &Deployer{}
			rec := &Record{Current: c.from}
			dep := d.plan(rec, app(t, c.app), Request{Strategy: c.strategy, Percent: 10}, v2)
			if got := names(dep.Steps); got != c.want {
				t.Errorf("plan:\n got %s\nwant %s", got, c.want)
			}
			if dep.ID != "web-1" || rec.Seq != 1 {
				t.Errorf("deploy id %s, seq %d", dep.ID, rec.Seq)
			}
		})
	}
}

func TestRollbackAndPromoteSteps(t *testing.T) {
	dep := &Deploy{From: &Release{Label: "v1"}, To: Release{Label: "v2"}}
	web := app(t, "    command: [bin/app]\n    instances: 2\n")
	if got := names(rollbackSteps(dep, web)); got != "start v1, check v1, revert, drain, stop v2" {
		t.Errorf("rollback of a supervised deploy: %s", got)
	}
	if got := names(promoteSteps(dep, web)); got != "switch, drain, stop v1" {
		t.Errorf("promote: %s", got)
	}
	ext := app(t, "    targets: [\"127.0.0.1:1\"]\n")
	if got := names(rollbackSteps(dep, ext)); got != "revert, drain" {
		t.Errorf("rollback of external targets: %s", got)
	}
	first := &Deploy{To: Release{Label: "v1"}}
	if got := names(rollbackSteps(first, web)); got != "revert, drain, stop v1" {
		t.Errorf("rollback of a first release: %s", got)
	}
}
