package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/switchover"
	"github.com/spf13/cobra"
)

func init() { dbCommands = append(dbCommands, dbSwitchoverCmd) }

func dbSwitchoverCmd(g *globals) *cobra.Command {
	var req control.SwitchoverRequest
	var deadline time.Duration
	var asJSON bool
	c := &cobra.Command{
		Use:   "switchover NAME --to URL [--deadline 5s]",
		Short: "Move a database endpoint to its caught-up replica under one deadline",
		Long: `Move the database endpoint NAME from its current primary to the replica at
--to (a physical standby or a logical subscriber of it for Postgres, a GTID
replica for MySQL/MariaDB), under one deadline:

  hold new HTTP requests (in-flight ones finish), hold new transactions at
  the endpoint, fence the old primary (no more writes by anyone), wait until
  the replica has everything, promote it, point the endpoint at it, resume
  the database, then HTTP.

Refused, changing nothing, unless the replica replicates from the primary,
applies its current position within a quarter of the deadline, and no
transaction has been open for that long. Past the deadline before the
promotion it rolls back: the old primary writable again, the endpoint where
it was, everything resumed. --to's user, password and database are used on
the current primary too. See docs/switchover.md.

Exit codes: 0 switched, 1 refused or rolled back (the reason on stderr).`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			if req.To == "" {
				return usagef("missing --to URL: the replica to switch to")
			}
			if deadline <= 0 || deadline > switchover.MaxDeadline {
				return usagef("--deadline %v: must be more than 0 and at most %v", deadline, switchover.MaxDeadline)
			}
			req.Name, req.Deadline, req.Actor = a[0], config.Duration(deadline), actor()
			var rec *switchover.Record
			// The server bounds the switchover (deadline, rollback, finish);
			// this only keeps the CLI from waiting forever on a dead socket.
			err := g.call(deadline+2*time.Minute, func(ctx context.Context, cl *control.Client) (err error) {
				rec, err = cl.DBSwitchover(ctx, req)
				return err
			})
			if err != nil {
				return err
			}
			if asJSON {
				if err := printJSON(c.OutOrStdout(), rec); err != nil {
					return err
				}
			} else {
				printSwitchover(c.OutOrStdout(), rec)
			}
			if rec.Step != switchover.Done {
				return errors.New(rec.Error)
			}
			return nil
		},
	}
	c.Flags().StringVar(&req.To, "to", "", "the replica's URL: postgres://user@host:port/db or mysql://user@host:port/db")
	c.Flags().DurationVar(&deadline, "deadline", switchover.DefaultDeadline, "the longest the app is held; past it before the promotion, roll back")
	c.Flags().BoolVar(&asJSON, "json", false, "print the switchover's record as JSON")
	return c
}

func printSwitchover(w io.Writer, rec *switchover.Record) {
	fmt.Fprintf(w, "%s: %s → %s (%s, deadline %v)\n", rec.Name, rec.FromAddr, rec.ToAddr, rec.Kind, rec.Deadline)
	for i, s := range rec.Steps {
		took := ""
		if i+1 < len(rec.Steps) {
			took = fmt.Sprintf(" (%v)", (rec.Steps[i+1].At - s.At).Round(time.Millisecond))
		}
		fmt.Fprintf(w, "  %8.3fs  %s%s\n", s.At.Seconds(), s.Step, took)
	}
	if rec.Step == switchover.Done {
		fmt.Fprintf(w, "switched: the endpoint points at %s\n", rec.ToAddr)
	}
}
