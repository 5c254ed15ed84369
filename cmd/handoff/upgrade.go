package main

import (
	"context"
	"fmt"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, upgradeCmd) }

func upgradeCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "upgrade",
		Short: "Replace the running handoff with the binary now on disk, dropping no connection",
		Long: `Replace the running handoff server with the handoff binary now at its path
(install the new binary there first). The new process is handed the
listening sockets, adopts the running instances and workers and any deploy
in progress, and serves; then the old one stops accepting and finishes its
own connections — each keep-alive connection is closed only after a
response that says Connection: close, or at its idle timeout — and exits.
The new process reads the config file again, so an upgrade also applies a
changed config. If the new binary or the config fails (an invalid config,
a port in use, a bad token file), the new process adopts nothing and
exits, this command prints its reason, and the old one goes on serving
with its instances as before. SIGHUP to 'handoff serve' does the same
(systemd: ExecReload=/bin/kill -HUP $MAINPID).`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			var up *control.Upgrade
			err := g.call(2*time.Minute, func(ctx context.Context, cl *control.Client) (err error) {
				up, err = cl.Upgrade(ctx)
				return err
			})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), up)
			}
			fmt.Fprintf(c.OutOrStdout(), "handoff upgraded: pid %d → %d (%s); the old process finishes its connections and exits\n", up.OldPID, up.NewPID, up.Binary)
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return c
}
