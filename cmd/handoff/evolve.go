package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/handoff-dev/handoff/internal/dialect"
	"github.com/handoff-dev/handoff/internal/evolve"
)

func init() { commands = append(commands, newEvolveCmd) }

// evolveFlags are the flags of `handoff evolve`.
type evolveFlags struct {
	db    string
	batch int
	rate  float64
}

func newEvolveCmd(g *globals) *cobra.Command {
	f := &evolveFlags{}
	cmd := &cobra.Command{
		Use:   "evolve status|pause|resume|cancel|set [NAME]",
		Short: "Watch and steer backfills, from any terminal",
		Long: `Show the backfills recorded in the database, and act on a running one: it
reads its control row between batches, so no server is needed.

  status [NAME]            rows, %, rate, ETA of every backfill (or one)
  pause NAME / resume NAME stop between batches / go on
  cancel NAME              stop after the current batch; the checkpoint is
                           kept and 'handoff migrate backfill' resumes
  set NAME --batch N --rate R
                           change the batch size (fixes it) and rows/s cap
                           (0 lifts it) while it runs`,
		Args: args(cobra.NoArgs),
		RunE: func(*cobra.Command, []string) error {
			return usagef("missing subcommand: status, pause, resume, cancel or set\nRun 'handoff evolve --help' for usage.")
		},
	}
	cmd.PersistentFlags().StringVar(&f.db, "db", "", "database: postgres://… or sqlite://PATH or a file path (default: the config's database.url)")
	act := func(use, short string, do func(context.Context, dialect.Dialect, string) error, done string) *cobra.Command {
		return &cobra.Command{Use: use + " NAME", Short: short, Args: args(cobra.ExactArgs(1)),
			RunE: func(c *cobra.Command, a []string) error {
				return f.with(g, func(ctx context.Context, d dialect.Dialect) error {
					if err := do(ctx, d, a[0]); err != nil {
						return err
					}
					fmt.Printf("%s: %s\n", a[0], done)
					return nil
				})
			}}
	}
	status := &cobra.Command{Use: "status [NAME]", Short: "Show backfills: state, rows, %, rate, ETA", Args: args(cobra.MaximumNArgs(1)),
		RunE: func(c *cobra.Command, a []string) error { return f.status(g, a) }}
	status.Flags().BoolVar(&g.json, "json", false, "print JSON")
	set := &cobra.Command{Use: "set NAME", Short: "Change the batch size or rate of a backfill while it runs", Args: args(cobra.ExactArgs(1)),
		RunE: func(c *cobra.Command, a []string) error { return f.set(c, g, a[0]) }}
	set.Flags().IntVar(&f.batch, "batch", 0, "batch size in rows (stops it adapting)")
	set.Flags().Float64Var(&f.rate, "rate", 0, "rows per second at most; 0 lifts the cap")
	cmd.AddCommand(status,
		act("pause", "Pause a running backfill between batches", evolve.Pause, "pause requested"),
		act("resume", "Resume a paused backfill", evolve.Resume, "resume requested"),
		act("cancel", "Stop a running backfill after its current batch (resumable)", evolve.Cancel, "cancel requested"),
		set)
	return cmd
}

func (f *evolveFlags) with(g *globals, do func(context.Context, dialect.Dialect) error) error {
	db, err := loadDatabase(g)
	if err != nil {
		return err
	}
	url := f.db
	if url == "" {
		url = db.URL
	}
	if url == "" {
		return usagef("no database: give --db or database.url in the config")
	}
	ctx, stop := signalContext()
	defer stop()
	d, err := dialect.Open(ctx, url, time.Second)
	if err != nil {
		return err
	}
	err = do(ctx, d)
	if cerr := d.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close database: %w", cerr)
	}
	return err
}

func (f *evolveFlags) set(c *cobra.Command, g *globals, name string) error {
	var rate *float64
	if c.Flags().Changed("rate") {
		rate = &f.rate
	}
	if f.batch <= 0 && rate == nil {
		return usagef("give --batch N or --rate R (or both)")
	}
	return f.with(g, func(ctx context.Context, d dialect.Dialect) error {
		if err := evolve.Set(ctx, d, name, f.batch, rate); err != nil {
			return err
		}
		fmt.Printf("%s: settings sent; a running backfill applies them within a second\n", name)
		return nil
	})
}

func (f *evolveFlags) status(g *globals, a []string) error {
	return f.with(g, func(ctx context.Context, d dialect.Dialect) error {
		var list []evolve.Status
		if len(a) == 1 {
			s, err := evolve.Get(ctx, d, a[0])
			if errors.Is(err, evolve.ErrNotFound) {
				return fmt.Errorf("evolve status: no backfill named %s", a[0])
			}
			if err != nil {
				return err
			}
			list = []evolve.Status{s}
		} else {
			var err error
			if list, err = evolve.List(ctx, d); err != nil {
				return err
			}
		}
		if g.json {
			if list == nil {
				list = []evolve.Status{}
			}
			return printJSON(os.Stdout, map[string]any{"backfills": list})
		}
		return printBackfills(list)
	})
}

func printBackfills(list []evolve.Status) error {
	if len(list) == 0 {
		fmt.Println("no backfills")
		return nil
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tSTATE\tRUN\tPROGRESS\tROWS\tRATE\tBATCH\tETA")
	for _, s := range list {
		eta := "-"
		if s.ETASeconds > 0 {
			eta = (time.Duration(s.ETASeconds) * time.Second).String()
		}
		state := string(s.State)
		if s.Request != "" {
			state += " (" + s.Request + " requested)"
		}
		fmt.Fprintf(w, "%s\t%s\t%d\t%.1f%%\t%d/%d\t%.0f/s\t%d\t%s\n", s.Name, state, s.Run, s.Percent, s.Rows, s.Total, s.Rate, s.Batch, eta)
		if s.Error != "" {
			fmt.Fprintf(w, "\terror: %s\n", s.Error)
		}
	}
	return w.Flush()
}
