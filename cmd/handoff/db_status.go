package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/spf13/cobra"
)

func init() { dbCommands = append(dbCommands, dbStatusCmd) }

func dbStatusCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status [--json]",
		Short: "Show each database endpoint: its primary, that server's role, the app's connections",
		Long: `Show each database endpoint (databases: in the config): where the app
connects, the primary it points at and that server's own answer about its
role (primary, standby, read-only; unknown when it cannot be asked, with
why), and the app's connections: idle between transactions, in a
transaction, held by a switchover's pause, logging in; how many sessions
were moved to another server and how many could not be.

--json prints {"databases": [...]} with the same fields (see docs/databases.md).`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			var st *control.DBStatus
			err := g.call(30*time.Second, func(ctx context.Context, cl *control.Client) (err error) {
				st, err = cl.DBStatus(ctx)
				return err
			})
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(c.OutOrStdout(), st)
			}
			printDBStatus(c.OutOrStdout(), st)
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the status as JSON")
	return c
}

func printDBStatus(w io.Writer, st *control.DBStatus) {
	if len(st.Databases) == 0 {
		fmt.Fprintln(w, "no database endpoints (databases: in the config; see docs/databases.md)")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tLISTEN\tPRIMARY\tROLE\tCONNECTIONS\tIDLE\tIN TX\tHELD\tMOVED\tMOVE FAILED")
	for _, d := range st.Databases {
		role := d.Role
		if d.Paused {
			role += " (paused)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", d.Name, d.Kind, d.Listen, d.Primary, role,
			d.Connections, d.Idle, d.InTransaction, d.Held, d.Moved, d.MoveFailures)
	}
	tw.Flush()
	for _, d := range st.Databases {
		if d.RoleError != "" {
			fmt.Fprintf(w, "%s: cannot ask %s for its role: %s\n", d.Name, d.Primary, d.RoleError)
		}
	}
}
