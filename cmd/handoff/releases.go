package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, releasesCmd) }

func releasesCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "releases [APP]",
		Short: "List releases, their state, and every process still running from each",
		Long: `List each app's recorded releases, newest first, with their state — current,
previous, draining (processes still run from it: workers finishing their
jobs, instances being stopped) or unused — and every process running from
each. A release directory is never removed while a process runs from it;
unused releases beyond keep_releases are removed after each deploy.`,
		Args: args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			var rel *control.Releases
			err := g.call(30*time.Second, func(ctx context.Context, cl *control.Client) (err error) {
				rel, err = cl.Releases(ctx, optionalApp(a))
				return err
			})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), rel)
			}
			tw := tabwriter.NewWriter(c.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "APP\tRELEASE\tSTATE\tDEPLOYED\tDIRECTORY\tPROCESSES")
			for _, r := range rel.Releases {
				var procs []string
				for _, p := range r.Processes {
					procs = append(procs, fmt.Sprintf("%s (pid %d, %s)", p.ID, p.PID, p.State))
				}
				dir := r.Dir
				if dir == "" {
					dir = strings.Join(r.Targets, ",")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.App, r.Label, r.State, r.Created.Local().Format(time.DateTime), dir, strings.Join(procs, ", "))
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return c
}
