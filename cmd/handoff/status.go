package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/tcpproxy"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, statusCmd) }

func statusCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status [APP]",
		Short: "Show apps, their releases and instances, modes, deploys and warnings",
		Long: `Show every app (or one): its mode and since when, held requests, the
current and previous release, the deploy in progress or the last one, and
each instance with its release, health and requests in flight. Warnings
name what needs an operator: read-only left on, a failing instance, an
open canary. A tcp app shows its listeners, its open connections (as IN
FLIGHT) and each target's connections, bytes and dial failures. --json
prints the same as the API's GET /api/status.`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			var st *control.Status
			err := g.call(30*time.Second, func(ctx context.Context, cl *control.Client) (err error) {
				st, err = cl.Status(ctx, optionalApp(a))
				return err
			})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), st)
			}
			printStatus(c.OutOrStdout(), st)
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print as JSON (stable; see docs/api.md)")
	return c
}

func printStatus(w io.Writer, st *control.Status) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for i, a := range st.Apps {
		if i > 0 {
			fmt.Fprintln(tw)
		}
		mode := a.Mode
		if since := modeSince(a); !since.IsZero() {
			mode += " since " + since.Local().Format(time.TimeOnly)
		}
		switch {
		case a.Kind == "worker":
			fmt.Fprintf(tw, "%s\tworker app\n", a.App)
		case a.TCP != nil:
			fmt.Fprintf(tw, "%s\ttcp app on %s, %d connections open\n", a.App, strings.Join(a.TCP.Listen, ", "), a.TCP.Open)
		default:
			fmt.Fprintf(tw, "%s\t%s app, %s\n", a.App, a.Kind, mode)
		}
		if a.Current != "" {
			line := "  release " + a.Current
			if a.Previous != "" {
				line += " (previous " + a.Previous + ")"
			}
			fmt.Fprintln(tw, line)
		}
		if d := a.Deploy; d != nil {
			fmt.Fprintf(tw, "  deploy %s: %s → %s, %s, %s\n", d.ID, fromLabel(d), d.To.Label, d.Strategy, d.State)
			if d.Error != "" {
				fmt.Fprintf(tw, "    error: %s\n", d.Error)
			}
		}
		if a.Held > 0 {
			fmt.Fprintf(tw, "  %d requests held\n", a.Held)
		}
		printInstances(tw, a)
		if len(a.Pools) > 0 {
			fmt.Fprintln(tw, "  RELEASE\tSHARE\tTARGET\tHEALTH\tIN FLIGHT")
		}
		for _, p := range a.Pools {
			for _, t := range p.Targets {
				health := "healthy"
				if !t.Healthy {
					health = "DOWN"
				}
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\n", p.Release, share(a.Pools, p), t.Addr, health, t.Inflight)
			}
		}
		for _, t := range a.Draining {
			fmt.Fprintf(tw, "  (draining)\t-\t%s\tfor %s\t%d\n", t.Addr, time.Since(t.Since).Round(time.Second), t.Inflight)
		}
		printReleaseHealth(tw, a.Releases)
		printTCP(tw, a.TCP)
	}
	tw.Flush()
	printMigrations(w, st.Migrations)
	if len(st.Nodes) > 0 {
		fmt.Fprintln(w, "\nnodes:")
		printNodes(w, st.Nodes)
	}
	if len(st.Warnings) > 0 {
		fmt.Fprintln(w, "\nwarnings:")
		for _, warn := range st.Warnings {
			fmt.Fprintln(w, "  ! "+strings.TrimSpace(warn))
		}
	}
}

func modeSince(a control.AppStatus) time.Time {
	switch {
	case a.Modes.Maintenance != nil:
		return a.Modes.Maintenance.Since
	case a.Modes.Pause != nil:
		return a.Modes.Pause.Since
	case a.Modes.ReadOnly != nil:
		return a.Modes.ReadOnly.Since
	}
	return time.Time{}
}

// printInstances lists an app's supervised processes: release, brick,
// state and for how long, restarts; draining workers say since when.
func printInstances(w io.Writer, a control.AppStatus) {
	if len(a.Instances) == 0 {
		return
	}
	fmt.Fprintln(w, "  INSTANCE\tRELEASE\tBRICK\tPID\tSTATE\tRESTARTS")
	for _, inst := range a.Instances {
		state := fmt.Sprintf("%s for %s", inst.State, time.Since(inst.Since).Round(time.Second))
		if !inst.DrainingSince.IsZero() {
			state = fmt.Sprintf("%s for %s", inst.State, time.Since(inst.DrainingSince).Round(time.Second))
		}
		fmt.Fprintf(w, "  %s\t%s\t%d\t%d\t%s\t%d\n", inst.ID, inst.Release, inst.Brick, inst.PID, state, inst.Restarts)
	}
}

// printMigrations lists each migration's phases, its backfill's progress,
// and what a pending contract waits for.
func printMigrations(w io.Writer, ms []control.Migration) {
	if len(ms) == 0 {
		return
	}
	fmt.Fprintln(w, "\nmigrations:")
	for _, m := range ms {
		var phases []string
		for _, p := range m.Phases {
			phase := p.Name + " " + p.State
			if p.Name == "backfill" && m.Backfill != nil && p.State != "done" {
				phase += fmt.Sprintf(" (%d/%d rows, %.0f rows/s)", m.Backfill.Rows, m.Backfill.Total, m.Backfill.RowsPerSec)
			}
			phases = append(phases, phase)
		}
		fmt.Fprintf(w, "  %s: %s\n", m.ID, strings.Join(phases, ", "))
		if len(m.WaitingFor) > 0 {
			fmt.Fprintf(w, "    contract waits for %s\n", strings.Join(m.WaitingFor, ", "))
		}
	}
}

// printReleaseHealth shows the releases that served side by side, by their
// own numbers (since this handoff process began to route to them).
func printReleaseHealth(w io.Writer, rs []control.ReleaseHealth) {
	if len(rs) == 0 {
		return
	}
	fmt.Fprintln(w, "  RELEASE\tREQUESTS\t2XX\t3XX\t4XX\t5XX\tFAILED\tP50\tP99")
	pct := func(f float64) string { return fmt.Sprintf("%.1f%%", 100*f) }
	for _, r := range rs {
		fmt.Fprintf(w, "  %s\t%d\t%s\t%s\t%s\t%s\t%d\t%gms\t%gms\n", r.Release, r.Requests, pct(r.Share2xx), pct(r.Share3xx),
			pct(r.Share4xx), pct(r.Share5xx), r.Failed, r.P50Ms, r.P99Ms)
	}
}

// share is a pool's share of new clients, as a percent of the route's
// weights (weights are relative: a blue/green route and a rolling one
// weigh their pools differently, and the share is what they mean).
func share(pools []gateway.PoolStatus, p gateway.PoolStatus) string {
	total := 0
	for _, q := range pools {
		total += q.Weight
	}
	if total == 0 {
		return "pinned only"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(p.Weight)/float64(total))
}

// printTCP shows a tcp app's counts by target: the pools above show its
// open connections as IN FLIGHT.
func printTCP(w io.Writer, st *tcpproxy.Stats) {
	if st == nil {
		return
	}
	if st.Refused > 0 || st.Cut > 0 {
		fmt.Fprintf(w, "  %d connections closed unanswered (no target within hold_max, or over the cap); %d cut at drain_timeout\n", st.Refused, st.Cut)
	}
	if len(st.Targets) == 0 {
		return
	}
	fmt.Fprintln(w, "  TARGET\tOPEN\tCONNECTIONS\tTO TARGET\tTO CLIENT\tDIAL FAILURES")
	for _, t := range st.Targets {
		fmt.Fprintf(w, "  %s\t%d\t%d\t%s\t%s\t%d\n", t.Addr, t.Open, t.Connections, bytesOf(t.BytesToTarget), bytesOf(t.BytesToClient), t.DialFailures)
	}
}

// bytesOf writes a byte count for people: 512 B, 1.5 MiB.
func bytesOf(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
