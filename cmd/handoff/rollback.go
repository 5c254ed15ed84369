package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, rollbackCmd) }

func rollbackCmd(g *globals) *cobra.Command {
	var asJSON bool
	var strategy string
	var force bool
	c := &cobra.Command{
		Use:   "rollback APP",
		Short: "Undo an open canary, or deploy the previous release again",
		Long: `Undo the last deploy of an app. An open canary is closed: all traffic goes
back to the old release and the canary's instances drain. Otherwise the
previous release is deployed again, with the same health check and drain
as any deploy, and the same strategy as the app's deploys (brick by brick
when it has several bricks) unless --strategy says otherwise. When the
current release's release_command ran (the app's own migrations, which
usually only go forward), the rollback is refused unless --force.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			out, start := c.OutOrStdout(), time.Now()
			pr := newPrinter(os.Stdout, false)
			dep, err := cl.Rollback(ctx, control.RollbackRequest{App: a[0], Actor: actor(), Strategy: deploy.Strategy(strategy), Force: force}, func(p deploy.Progress) {
				if !asJSON {
					printProgress(pr, p, start)
				}
			})
			pr.close()
			if ie := (*control.InterruptedError)(nil); errors.As(err, &ie) {
				dep, err = followHandedOver(ctx, g, out, ie)
			}
			return finishDeploy(out, dep, err, asJSON, start)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the finished rollback as JSON")
	c.Flags().StringVar(&strategy, "strategy", "", "all (blue/green) or rolling (brick by brick); default: as the app deploys")
	c.Flags().BoolVar(&force, "force", false, "roll back past a release whose release_command ran (its migrations usually only go forward)")
	return c
}
