package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"time"

	"github.com/handoff-dev/handoff/internal/demo"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, demoCmd) }

func demoCmd(g *globals) *cobra.Command {
	var opts demo.Options
	var asJSON bool
	c := &cobra.Command{
		Use:   "demo",
		Short: "Watch a whole release under load, on a built-in sample app, with no setup",
		Long: `Run the whole story on an embedded sample app, in a temporary directory,
in about twenty seconds: handoff runs the sample app (3 instances and a worker with
long jobs) in front of a SQLite database of 200,000 rows, with real load
through the gateway (a load generator that never retries). Then release v2,
which needs a migration with all three phases: expand, a backfill with a
progress bar, a rollout brick by brick, and a contract that waits until the
old worker has finished its job. Then a canary rolled back, a read-only
window and a pause. The
summary says what the users saw: requests served, failed (zero), latency,
rows backfilled, time per phase, and the dashboard's address.`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			narration := os.Stdout
			if asJSON {
				narration = os.Stderr // the summary alone goes to stdout
			}
			pr := newPrinter(narration, false)
			opts.Say = func(line string) { pr.println("%s", line) }
			opts.Progress = func(p deploy.Progress) { printProgress(pr, p, time.Now()) }
			sum, err := demo.Run(ctx, opts)
			pr.close()
			if err != nil {
				return err
			}
			if asJSON {
				if err := printJSON(c.OutOrStdout(), sum); err != nil {
					return err
				}
			}
			if sum.Failed > 0 {
				return errors.New(fmt.Sprint(sum.Failed, " requests failed: that is a bug in handoff, please report it"))
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the summary as one JSON object (the narration goes to stderr at a terminal)")
	c.Flags().BoolVar(&opts.Keep, "keep", false, "keep serving after the story, until Ctrl-C")
	return c
}
