package main

import (
	"context"
	"os"
	"os/signal"

	"github.com/spf13/cobra"
)

func init() { commands = append(commands, logsCmd) }

func logsCmd(g *globals) *cobra.Command {
	var lines int
	var follow bool
	c := &cobra.Command{
		Use:   "logs APP",
		Short: "Show (and follow) the output of an app's instances",
		Long: `Print the last lines of each of the app's logs (stdout and stderr, one file
per instance under logs:, and its release commands'), each line prefixed
with its instance (or release command), the logs last written longest ago first — stopped releases
before running ones, the newest lines at the bottom — then with --follow
keep printing what they write until Ctrl-C. handoff's own lines in them
("--- handoff: …") say when each process started and how it ended.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			cl, err := g.client()
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			return apiError(cl.Logs(ctx, c.OutOrStdout(), a[0], lines, follow))
		},
	}
	c.Flags().IntVarP(&lines, "lines", "n", 20, "how many of each log's last lines to show")
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new lines")
	return c
}
