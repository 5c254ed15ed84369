package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/evolve"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, deployCmd) }

func deployCmd(g *globals) *cobra.Command {
	var req control.DeployRequest
	var strategy string
	var asJSON, thisNode bool
	c := &cobra.Command{
		Use:   "deploy APP (--target HOST:PORT ... | --release DIR | --promote)",
		Short: "Move an app to a new release with zero failed requests",
		Long: `Move an app's traffic to a new release.

With --target, the new release is a set of instances you run yourself: handoff
checks their health, switches new requests to them at once, and drains the
old ones (in-flight requests and WebSockets finish there, bounded by
drain_timeout). If they never become healthy, the deploy fails and the old
instances keep serving.

With --strategy canary --percent N, N% of new clients go to the new release
and stay pinned to it by a cookie; finish with --promote, or undo with
'handoff rollback APP'.

The command returns when the old release has drained.

On a node of a fleet of several nodes (a shared postgres:// state, see
docs/fleet.md), --release rolls the release over every host, as 'handoff
fleet deploy': the release (the directory's name) must be in each host's
releases: directory; fleet.batch hosts at a time are drained at the load
balancer, deployed, and put back; a failure reverts the hosts done. It
goes on to its end if this command is interrupted ('handoff fleet status'
shows it). --this-node deploys on this host alone. --target, --promote and canaries
are one host's: they name this host's instances. A fleet deploy's --json is
each host's outcome, as 'handoff fleet deploy --json' prints it.`,
		Example: `  handoff deploy web --target 127.0.0.1:9002
  handoff deploy web --target 127.0.0.1:9002 --strategy canary --percent 10
  handoff deploy web --promote
  handoff deploy web --release /srv/web/releases/v42               # every host of a fleet
  handoff deploy web --release /srv/web/releases/v42 --this-node   # this host alone`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			req.App, req.Strategy, req.Actor = a[0], deploy.Strategy(strategy), actor()
			if req.Release != "" {
				abs, err := filepath.Abs(req.Release)
				if err != nil {
					return err
				}
				req.Release = abs
			}
			if !req.Promote && len(req.Targets) == 0 && req.Release == "" {
				return usagef("give --target HOST:PORT, --release DIR or --promote")
			}
			cl, err := g.client()
			if err != nil {
				return err
			}
			if !thisNode && req.Release != "" && !req.Promote && len(req.Targets) == 0 && req.Strategy != deploy.Canary {
				fleetWide, err := inFleet(cl)
				if err != nil {
					return err
				}
				if fleetWide {
					if req.Label != "" {
						return usagef("--label with a fleet deploy: the release's name (%s) is its label on every host; or deploy this host alone with --this-node", filepath.Base(req.Release))
					}
					return runFleetDeploy(c, g, control.FleetDeployRequest{App: req.App, Release: req.Release, Strategy: req.Strategy, Actor: req.Actor}, asJSON)
				}
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			out := c.OutOrStdout()
			start := time.Now()
			pr := newPrinter(os.Stdout, false)
			progress := func(p deploy.Progress) {
				if !asJSON {
					printProgress(pr, p, start)
				}
			}
			dep, err := cl.Deploy(ctx, req, progress)
			pr.close()
			if ie := (*control.InterruptedError)(nil); errors.As(err, &ie) {
				dep, err = followHandedOver(ctx, g, out, ie)
			}
			return finishDeploy(out, dep, err, asJSON, start)
		},
	}
	f := c.Flags()
	f.StringArrayVar(&req.Targets, "target", nil, "a new instance's HOST:PORT (repeat for several)")
	f.StringVar(&req.Release, "release", "", "a release directory to run (supervised apps)")
	f.StringVar(&req.Label, "label", "", "the new release's label (default: the directory's name, or r<N>)")
	f.StringVar(&strategy, "strategy", "", "all (blue/green), rolling (brick by brick) or canary")
	f.IntVar(&req.Percent, "percent", 0, "with --strategy canary: the share of new clients, 1-99")
	f.BoolVar(&req.Promote, "promote", false, "send all traffic to the open canary and drain the old release")
	f.BoolVar(&asJSON, "json", false, "print the finished deploy as JSON")
	f.BoolVar(&thisNode, "this-node", false, "on a node of a fleet: deploy --release on this host alone, not host by host over the fleet")
	return c
}

// inFleet says whether the server is a node of a fleet of more than one
// node: then a deploy of a release goes over every host.
func inFleet(cl *control.Client) (bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := cl.Status(ctx, "")
	if err != nil {
		return false, apiError(err)
	}
	return st.Node != "" && len(st.Nodes) > 1, nil
}

// printProgress shows one step of a deploy as a line, and a backfill's
// progress as a bar at a terminal (a line a second otherwise).
func printProgress(pr *printer, p deploy.Progress, start time.Time) {
	if b := p.Backfill; b != nil {
		kind := evolve.EventBatch
		if b.Total > 0 && b.Rows >= b.Total {
			kind = evolve.EventDone
		}
		pr.backfill(b.Migration, evolve.Event{Kind: kind, Run: b.Run, Batch: b.Batch, Rows: b.Rows, Total: b.Total, Percent: b.Percent,
			Rate: b.RowsPerSec, ETA: time.Duration(b.ETASeconds * float64(time.Second))})
		return
	}
	elapsed := time.Since(start).Seconds()
	if p.Step == "" {
		pr.println("%6.2fs  %s", elapsed, p.Message)
		return
	}
	msg := p.Message
	if msg == "" {
		msg = string(p.State)
	}
	pr.println("%6.2fs  %-18s %s", elapsed, p.Step, msg)
}

// finishDeploy prints a deploy's outcome; a failed deploy is an error.
func finishDeploy(w io.Writer, dep *deploy.Deploy, err error, asJSON bool, start time.Time) error {
	if asJSON && dep != nil {
		if perr := printJSON(w, dep); perr != nil {
			return perr
		}
	}
	if err != nil {
		return apiError(err)
	}
	if !asJSON {
		fmt.Fprintf(w, "deploy %s %s in %s: %s serves %s\n", dep.ID, dep.State, time.Since(start).Round(time.Millisecond), servingLabel(dep), dep.App)
		if dep.State == deploy.Waiting {
			fmt.Fprintln(w, "its contract phase runs by itself once nothing it waits for is left; 'handoff status' shows what it waits for")
		}
	}
	return nil
}

func servingLabel(dep *deploy.Deploy) string {
	switch dep.State {
	case deploy.RolledBack:
		if dep.From != nil {
			return dep.From.Label
		}
	case deploy.CanaryWait:
		return fmt.Sprintf("%s (%d%% of new clients) beside %s", dep.To.Label, dep.Percent, dep.From.Label)
	}
	return dep.To.Label
}

func fromLabel(d *deploy.Deploy) string {
	if d.From == nil {
		return "(nothing)"
	}
	return d.From.Label
}
