package main

import (
	"context"
	"fmt"
	"io"
	"strings"
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
		Short: "Show each database endpoint: its primary, that server's role, replicas and lag, connections, switchover",
		Long: `Show each database endpoint (databases: in the config): where the app
connects, the primary it points at and that server's own answer about its
role (primary, standby, read-only; unknown when it cannot be asked, with
why), and the app's connections: idle between transactions, in a
transaction, held by a switchover's pause, logging in; how many sessions
were moved to another server and how many could not be.

Below the table, for each endpoint: the replicas the primary knows and
their lag (Postgres: pg_stat_replication's write, flush and replay lag and
the bytes still to replay; MySQL/MariaDB: the primary's SHOW SLAVE HOSTS,
which has no lag, and the replica the last switchover named, asked its own
Seconds_Behind_Master), and the switchover in progress or the last one:
each step with its time since the start, and its error. Each server is
given 2 s to answer; one that does not shows its error in place.

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
		fmt.Fprintf(w, "\n%s:\n", d.Name)
		if d.RoleError != "" {
			fmt.Fprintf(w, "  cannot ask %s for its role: %s\n", d.Primary, d.RoleError)
		}
		printReplicas(w, d)
		printDBSwitchover(w, d)
	}
}

// printReplicas lists the replicas the primary knows, with their lag.
func printReplicas(w io.Writer, d control.DatabaseStatus) {
	switch {
	case d.ReplicasError != "":
		fmt.Fprintf(w, "  replicas: cannot read them: %s\n", d.ReplicasError)
	case len(d.Replicas) == 0:
		fmt.Fprintln(w, "  replicas: none connected to the primary")
	default:
		fmt.Fprintln(w, "  replicas:")
		for _, r := range d.Replicas {
			fmt.Fprintf(w, "    %s", r.Addr)
			if r.Name != "" {
				fmt.Fprintf(w, " (%s)", r.Name)
			}
			if r.State != "" {
				fmt.Fprintf(w, " %s", r.State)
			}
			if lag := replicaLag(r); lag != "" {
				fmt.Fprintf(w, ", lag %s", lag)
			}
			if r.Error != "" {
				fmt.Fprintf(w, ": %s", r.Error)
			}
			fmt.Fprintf(w, " [%s]\n", r.Source)
		}
	}
}

// replicaLag says a replica's lag in words: what its source measured.
func replicaLag(r control.Replica) string {
	var parts []string
	for _, l := range []struct {
		name string
		d    *time.Duration
	}{{"write", r.WriteLag}, {"flush", r.FlushLag}, {"replay", r.ReplayLag}} {
		if l.d != nil {
			parts = append(parts, l.name+" "+l.d.Round(time.Microsecond).String())
		}
	}
	if r.LagBytes != nil {
		parts = append(parts, fmt.Sprintf("%d bytes to replay", *r.LagBytes))
	}
	if r.SecondsBehind != nil {
		parts = append(parts, fmt.Sprintf("%d s behind", *r.SecondsBehind))
	}
	if len(parts) == 0 && r.Source == "pg_stat_replication" && r.Error == "" {
		return "not measured (idle)"
	}
	return strings.Join(parts, ", ")
}

// printDBSwitchover shows the running or last switchover, step by step.
func printDBSwitchover(w io.Writer, d control.DatabaseStatus) {
	if d.SwitchoverError != "" {
		fmt.Fprintf(w, "  switchover: %s\n", d.SwitchoverError)
	}
	sw := d.Switchover
	if sw == nil {
		return
	}
	state := "running"
	if !sw.Running {
		state = sw.Step
	}
	limit := fmt.Sprintf("deadline %v", sw.Deadline)
	if sw.Migrate != "" {
		limit = fmt.Sprintf("migrations from %s on a copy, read-only window %v", sw.Migrate, sw.Window)
	}
	if sw.Reverse {
		limit += ", reverse replication"
	}
	fmt.Fprintf(w, "  switchover (%s): %s -> %s, started %s, %s: %s\n", sw.Kind, sw.FromAddr, sw.ToAddr,
		sw.Started.Local().Format(time.DateTime), limit, state)
	for i, s := range sw.Steps {
		took := s.Took.Round(time.Millisecond).String()
		switch {
		case i == len(sw.Steps)-1 && sw.Running:
			took = "running for " + (time.Since(sw.Started) - s.At).Round(time.Millisecond).String()
		case i == len(sw.Steps)-1:
			took = ""
		}
		fmt.Fprintf(w, "    +%-9s %-13s %s\n", s.At.Round(time.Millisecond), s.Step, took)
	}
	if sw.Error != "" {
		fmt.Fprintf(w, "    error: %s\n", sw.Error)
	}
	if sw.Recovered {
		fmt.Fprintln(w, "    (finished by a restarted handoff)")
	}
}
