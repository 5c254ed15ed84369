package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/migrate"
	"github.com/handoff-dev/handoff/internal/switchover"
	"github.com/spf13/cobra"
)

func init() { dbCommands = append(dbCommands, dbSwitchoverCmd) }

func dbSwitchoverCmd(g *globals) *cobra.Command {
	var req control.SwitchoverRequest
	var deadline, window time.Duration
	var asJSON bool
	c := &cobra.Command{
		Use:   "switchover NAME --to URL [--deadline 5s] [--reverse | --migrate DIR [--window 10m]]",
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
the current primary too.

--reverse (a logical switchover only): after the promotion, the old primary
subscribes to the new one, so that a later switch back loses nothing.

--migrate DIR: migrate on a copy. Every app goes read-only (writes get 503
with Retry-After, reads go on), the old primary is fenced and left
untouched, the replica catches up and is detached, the migrations of DIR
run on it (expand, backfill and contract: no old code writes meanwhile),
then the endpoint moves to it and read-only goes off. Any failure, or
--window passing first, reverts: the endpoint stays on the old primary,
which is unfenced, and read-only goes off; the copy is left as it is and
must be rebuilt. Postgres only. See docs/switchover.md.

Exit codes: 0 switched, 1 refused, rolled back or reverted (the reason on
stderr).`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error {
			if req.To == "" {
				return usagef("missing --to URL: the replica to switch to")
			}
			if deadline <= 0 || deadline > switchover.MaxDeadline {
				return usagef("--deadline %v: must be more than 0 and at most %v", deadline, switchover.MaxDeadline)
			}
			if c.Flags().Changed("window") && req.Migrate == "" {
				return usagef("--window bounds a migrate-on-copy: give --migrate DIR too")
			}
			if req.Migrate != "" {
				if req.Reverse {
					return usagef("--reverse and --migrate do not go together: the migrated copy's schema differs from the old primary's")
				}
				if window <= 0 || window > switchover.MaxWindow {
					return usagef("--window %v: must be more than 0 and at most %v", window, switchover.MaxWindow)
				}
				// The server reads the directory: an absolute path, checked here
				// too so that a typo fails at once.
				abs, err := filepath.Abs(req.Migrate)
				if err != nil {
					return usagef("--migrate %s: %v", req.Migrate, err)
				}
				if _, err := migrate.Load(abs); err != nil {
					return usagef("--migrate %s: %v", req.Migrate, err)
				}
				req.Migrate, req.Window = abs, config.Duration(window)
			}
			req.Name, req.Deadline, req.Actor = a[0], config.Duration(deadline), actor()
			var rec *switchover.Record
			// The server bounds the switchover (deadline, rollback, finish);
			// this only keeps the CLI from waiting forever on a dead socket.
			err := g.call(deadline+window+2*time.Minute, func(ctx context.Context, cl *control.Client) (err error) {
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
	c.Flags().StringVar(&req.To, "to", "", "the replica's URL: postgres://user@host:port/db[?sslmode=verify-full] or mysql://user@host:port/db[?tls=verify-full&tls_ca_file=FILE]")
	c.Flags().DurationVar(&deadline, "deadline", switchover.DefaultDeadline, "the longest the app is held; past it before the promotion, roll back")
	c.Flags().BoolVar(&asJSON, "json", false, "print the switchover's record as JSON")
	c.Flags().BoolVar(&req.Reverse, "reverse", false, "logical only: subscribe the old primary to the new one after the promotion")
	c.Flags().StringVar(&req.Migrate, "migrate", "", "migrate on a copy: run the migrations of this directory on the replica while the site is read-only, then move to it")
	c.Flags().DurationVar(&window, "window", switchover.DefaultWindow, "with --migrate: the longest the site stays read-only; past it, revert")
	return c
}

func printSwitchover(w io.Writer, rec *switchover.Record) {
	if rec.Migrate != "" {
		fmt.Fprintf(w, "%s: %s → %s (%s, migrate-on-copy, window %v)\n", rec.Name, rec.FromAddr, rec.ToAddr, rec.Kind, rec.Window)
	} else {
		fmt.Fprintf(w, "%s: %s → %s (%s, deadline %v)\n", rec.Name, rec.FromAddr, rec.ToAddr, rec.Kind, rec.Deadline)
	}
	for i, s := range rec.Steps {
		took := ""
		if i+1 < len(rec.Steps) {
			took = fmt.Sprintf(" (%v)", (rec.Steps[i+1].At - s.At).Round(time.Millisecond))
		}
		fmt.Fprintf(w, "  %8.3fs  %s%s\n", s.At.Seconds(), s.Step, took)
	}
	if rec.Step == switchover.Done {
		fmt.Fprintf(w, "switched: the endpoint points at %s\n", rec.ToAddr)
		if rec.Migrate != "" {
			fmt.Fprintf(w, "migrated: %s ran on the copy; the old primary %s is fenced and left as it was\n", rec.Migrate, rec.FromAddr)
		}
		if rec.Warning != "" {
			fmt.Fprintf(w, "warning: %s\n", rec.Warning)
		}
	}
}
