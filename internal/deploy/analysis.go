package deploy

import (
	"context"
	"fmt"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/gateway"
)

// StepAnalysis gives the new release a share of new clients and judges it
// by its own numbers against the old release's over the same time — 5xx
// share, redirect share, p99 — as Argo Rollouts' analysis and Flagger do,
// with no Prometheus or mesh: the gateway already knows which release
// answered every request. A breach fails the step, and the deploy rolls
// back by itself; a pass goes on to the next share, then to the promotion.
const StepAnalysis StepName = "analysis"

// analysisTick is how often a running analysis reads the numbers.
const analysisTick = 250 * time.Millisecond

// analyze runs one analysis step.
//
// A step with a percent gives the new release that share first (a
// canary); one without (a brick of a rolling deploy) judges the route as
// the brick's shift left it.
func (d *Deployer) analyze(ctx context.Context, app *config.App, dep *Deploy, rec *Record, s *Step, report func(Progress)) error {
	if s.Percent > 0 {
		if err := d.apply(ctx, app.Name, rec, d.canaryRoute(app, dep, s.Percent)); err != nil {
			return err
		}
	}
	c := app.Canary
	defer d.setLive(dep.ID, "")
	start := time.Now()
	base, canary := d.counts(app.Name, dep.From.Label, dep.To.Label)
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(analysisTick):
		}
		old, cur := d.counts(app.Name, dep.From.Label, dep.To.Label)
		old, cur = old.Minus(base), cur.Minus(canary)
		verdict, breach := judge(c, dep.From.Label, old, dep.To.Label, cur)
		enough := cur.Requests() >= int64(c.MinRequests)
		elapsed := time.Since(start)
		switch {
		case breach && enough:
			return fmt.Errorf("%s: %s", analysisName(s), verdict)
		case enough && elapsed >= c.Interval.D():
			s.Detail = verdict
			d.event(app.Name, "deploy", "", "deploy %s: %s passed: %s", dep.ID, analysisName(s), verdict)
			return nil
		case elapsed >= c.MaxWait.D():
			return fmt.Errorf("%s: %d requests to %s in %s, fewer than canary.min_requests %d: too little traffic to judge it",
				analysisName(s), cur.Requests(), dep.To.Label, elapsed.Round(time.Second), c.MinRequests)
		}
		if report != nil && time.Since(last) >= time.Second {
			last = time.Now()
			d.setLive(dep.ID, verdict)
			report(Progress{Time: now(), Deploy: dep.ID, Step: s.String(), State: Running, Message: verdict})
		}
	}
}

// counts reads the counters of the old and the new release at one moment
// (zero for one that has served nothing yet).
func (d *Deployer) counts(app, from, to string) (gateway.ReleaseCounts, gateway.ReleaseCounts) {
	old, cur := gateway.ReleaseCounts{Release: from}, gateway.ReleaseCounts{Release: to}
	for _, c := range d.gw.ReleaseStats(app) {
		switch c.Release {
		case from:
			old = c
		case to:
			cur = c
		}
	}
	return old, cur
}

// canaryRoute gives the new release percent of new clients and the old
// one the rest.
func (d *Deployer) canaryRoute(app *config.App, dep *Deploy, percent int) gateway.Route {
	return gateway.Route{Pools: nonEmpty(
		gateway.Pool{Release: dep.From.Label, Targets: d.members(app, *dep.From, nil), Weight: 100 - percent},
		gateway.Pool{Release: dep.To.Label, Targets: d.members(app, dep.To, nil), Weight: percent},
	)}
}

// judge compares the new release's window with the old one's and says
// what it saw, and whether a number crossed its threshold: a share more
// than its ratio times the old one's plus a floor (1 point of 5xx, 5 of
// redirects), or a p99 more than its ratio times the old one's plus 50 ms.
// The floors keep a single error against a perfect old release from
// counting as a breach.
func judge(c config.Canary, oldLabel string, old gateway.ReleaseCounts, newLabel string, cur gateway.ReleaseCounts) (string, bool) {
	type check struct {
		what             string
		got, base, limit float64
		unit             string
	}
	pct := func(f float64) float64 { return 100 * f }
	ms := func(t time.Duration) float64 { return float64(t.Microseconds()) / 1000 }
	checks := []check{
		{"5xx share", pct(cur.Share(5)), pct(old.Share(5)), c.Max5xx*pct(old.Share(5)) + 1, "%"},
		{"redirect share", pct(cur.Share(3)), pct(old.Share(3)), c.MaxRedirects*pct(old.Share(3)) + 5, "%"},
		{"p99", ms(cur.Quantile(0.99)), ms(old.Quantile(0.99)), c.MaxP99*ms(old.Quantile(0.99)) + 50, "ms"},
	}
	verdict := fmt.Sprintf("%s: %d requests", newLabel, cur.Requests())
	for _, ch := range checks {
		if ch.got > ch.limit {
			return fmt.Sprintf("%s %s %.1f%s crossed its threshold %.1f%s (%s: %.1f%s over the same time; %d requests to %s, %d to %s)",
				newLabel, ch.what, ch.got, ch.unit, ch.limit, ch.unit, oldLabel, ch.base, ch.unit, cur.Requests(), newLabel, old.Requests(), oldLabel), true
		}
		verdict += fmt.Sprintf(", %s %.1f%s (%s %.1f%s)", ch.what, ch.got, ch.unit, oldLabel, ch.base, ch.unit)
	}
	return verdict, false
}

func analysisName(s *Step) string {
	if s.Percent > 0 {
		return fmt.Sprintf("canary analysis at %d%%", s.Percent)
	}
	return fmt.Sprintf("analysis of brick %d", s.Brick)
}
