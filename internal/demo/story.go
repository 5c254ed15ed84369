package demo

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/loadgen"
)

// deployV1 puts the first release of the app and of its worker in place.
func (d *demo) deployV1(ctx context.Context) error {
	for _, app := range []string{"web", "jobs"} {
		if _, err := d.client.Deploy(ctx, control.DeployRequest{App: app, Release: filepath.Join(d.dir, "releases", "v1"), Actor: "demo"}, nil); err != nil {
			return fmt.Errorf("demo: deploy v1 of %s: %w", app, err)
		}
	}
	d.say("handoff runs the sample app v1 (3 instances, one brick each) and its worker, in front of a database of %d rows", d.opts.Rows)
	d.say("  the app: http://%s/   the dashboard: http://%s/ (token %s)", d.gateway, d.admin, d.token)
	return nil
}

// release deploys v2 with its migration: expand, backfill, the rollout
// brick by brick, the catch-up, and the contract, which waits for the old
// worker to finish its job.
func (d *demo) release(ctx context.Context) error {
	v2 := filepath.Join(d.dir, "releases", "v2")
	d.say("$ handoff deploy web --release %s   (carries migrations/0001_title_lower.sql: expand, backfill, contract)", v2)
	dep, err := d.client.Deploy(ctx, control.DeployRequest{App: "web", Release: v2, Actor: "demo"}, d.progress)
	if err != nil {
		return fmt.Errorf("demo: deploy v2: %w", err)
	}
	d.say("  the contract waits: the old worker (v1) still writes legacy_title")
	d.say("$ handoff deploy jobs --release %s   (the new worker starts; the old one finishes its job, then exits)", v2)
	if _, err := d.client.Deploy(ctx, control.DeployRequest{App: "jobs", Release: v2, Actor: "demo"}, d.progress); err != nil {
		return fmt.Errorf("demo: deploy v2 of the worker: %w", err)
	}
	for dep.State == deploy.Waiting {
		time.Sleep(200 * time.Millisecond)
		st, err := d.client.Status(ctx, "web")
		if err != nil {
			return err
		}
		dep = st.Apps[0].Deploy
	}
	if dep.State != deploy.Done {
		return fmt.Errorf("demo: deploy %s ended %s: %s", dep.ID, dep.State, dep.Error)
	}
	d.say("  the old worker exited; the contract ran: legacy_title is gone, and only v2 runs")
	d.stepPhases(dep)
	return nil
}

// progress narrates the release's steps; a backfill goes to the bar.
func (d *demo) progress(p deploy.Progress) {
	if p.Backfill != nil {
		d.backfill = max(d.backfill, p.Backfill.Rows)
		if d.opts.Progress != nil {
			d.opts.Progress(p)
		}
		return
	}
	if p.Step != "" && p.State == deploy.Done && p.Message != "" {
		d.say("  %-20s %s", p.Step, p.Message)
	}
}

// stepPhases times the release's parts from its steps.
func (d *demo) stepPhases(dep *deploy.Deploy) {
	var rollFrom, rollTo time.Time
	for _, s := range dep.Steps {
		took := s.Finished.Sub(s.Started).Seconds()
		switch s.Name {
		case deploy.StepExpand, deploy.StepBackfill, deploy.StepCatchup:
			d.phases[string(s.Name)] = round(took)
		case deploy.StepContract:
			d.phases["contract"] = round(s.Finished.Sub(s.Started).Seconds())
		default:
			if rollFrom.IsZero() {
				rollFrom = s.Started
			}
			rollTo = s.Finished
		}
	}
	d.phases["rollout"] = round(rollTo.Sub(rollFrom).Seconds())
}

func round(s float64) float64 { return float64(int(s*100+0.5)) / 100 }

// canary sends 30% of new clients to v3, pinned by a cookie, then rolls it back.
func (d *demo) canary(ctx context.Context) error {
	return d.timed("canary", func() error {
		v3 := filepath.Join(d.dir, "releases", "v3")
		d.say("$ handoff deploy web --release %s --strategy canary --percent 30", v3)
		if _, err := d.client.Deploy(ctx, control.DeployRequest{App: "web", Release: v3, Strategy: deploy.Canary, Percent: 30, Actor: "demo"}, nil); err != nil {
			return err
		}
		d.say("  30%% of new clients on v3, each pinned by a cookie to the release it first saw")
		time.Sleep(2 * time.Second)
		d.say("$ handoff rollback web")
		dep, err := d.client.Rollback(ctx, control.RollbackRequest{App: "web", Actor: "demo"}, nil)
		if err != nil {
			return err
		}
		d.say("  canary %s: every client back on v2", dep.State)
		return nil
	})
}

func (d *demo) readOnly(ctx context.Context) error {
	return d.timed("readonly", func() error {
		d.say("$ handoff readonly on --for 3s   (form posts get 503 + Retry-After; pages show a banner)")
		if _, err := d.client.SetMode(ctx, "readonly", control.ModeRequest{On: true, For: config.Duration(3 * time.Second), Actor: "demo"}); err != nil {
			return err
		}
		for {
			time.Sleep(250 * time.Millisecond)
			st, err := d.client.Status(ctx, "web")
			if err != nil {
				return err
			}
			if st.Apps[0].Mode == "normal" {
				d.say("  read-only switched itself off")
				return nil
			}
		}
	})
}

func (d *demo) pause(ctx context.Context) error {
	return d.timed("pause", func() error {
		d.say("$ handoff pause   (new requests wait instead of failing)")
		if _, err := d.client.SetMode(ctx, "pause", control.ModeRequest{On: true, Actor: "demo"}); err != nil {
			return err
		}
		time.Sleep(1500 * time.Millisecond)
		st, err := d.client.Status(ctx, "web")
		if err != nil {
			return err
		}
		d.say("  %d requests held", st.Apps[0].Held)
		d.say("$ handoff resume")
		_, err = d.client.SetMode(ctx, "resume", control.ModeRequest{Actor: "demo"})
		return err
	})
}

func (d *demo) summarise(s *Summary, res loadgen.Result) {
	say := d.opts.Say
	say("")
	say(fmt.Sprintf("  requests served    %d", s.Requests))
	say(fmt.Sprintf("  failed             %d", s.Failed))
	say(fmt.Sprintf("  latency            p99 %.1f ms, max %.1f ms (the max includes requests held by the pause)", s.P99MS, s.MaxLatencyMS))
	say(fmt.Sprintf("  rows backfilled    %d", s.RowsBackfilled))
	say(fmt.Sprintf("  served by          %s", counts(s.Releases)))
	if len(s.Refused) > 0 {
		say(fmt.Sprintf("  refused on purpose %s (writes during read-only)", counts(s.Refused)))
	}
	say(fmt.Sprintf("  forced reconnects  %d", res.ForcedReconnects))
	names := make([]string, 0, len(s.Phases))
	for n := range s.Phases {
		names = append(names, n)
	}
	order := map[string]int{"expand": 1, "backfill": 2, "rollout": 3, "catchup": 4, "contract": 5, "canary": 6, "readonly": 7, "pause": 8}
	sort.Slice(names, func(i, j int) bool { return order[names[i]] < order[names[j]] })
	var phases []string
	for _, n := range names {
		phases = append(phases, fmt.Sprintf("%s %.2fs", n, s.Phases[n]))
	}
	say(fmt.Sprintf("  phases             %s", strings.Join(phases, ", ")))
	say(fmt.Sprintf("  dashboard          %s (token %s; keep it running with --keep)", s.Dashboard, d.token))
}

func counts(m map[string]int64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		name := k
		if name == "" {
			name = "(gateway)"
		}
		parts = append(parts, fmt.Sprintf("%s=%d", name, m[k]))
	}
	return strings.Join(parts, " ")
}
