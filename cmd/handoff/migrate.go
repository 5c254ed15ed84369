package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/dialect"
	"github.com/handoff-dev/handoff/internal/evolve"
	"github.com/handoff-dev/handoff/internal/migrate"
)

func init() { commands = append(commands, newMigrateCmd) }

// migrateFlags are the flags of `handoff migrate`; they become a
// migrate.Options.
type migrateFlags struct {
	db          string
	dirs        []string
	allow       []string
	release     string
	lockTimeout time.Duration
	throttle    string
	noThrottle  bool
	rate        float64
	batch       int
	workers     int
}

func newMigrateCmd(g *globals) *cobra.Command {
	f := &migrateFlags{}
	cmd := &cobra.Command{
		Use:   "migrate status|up|expand|backfill|contract|lint|rollback",
		Short: "Apply migrations in phases: expand, backfill, contract",
		Long: `Apply the migration files of --dir to the database of --db in phases.

  expand    additive changes, safe while the old release runs
  backfill  batched data changes, checkpointed, retried and throttled
  contract  removes what only the old release needed (refused while a
            backfill is unfinished)
  up        all three, in order

DDL runs with a short lock timeout and is retried, so a long transaction
elsewhere never queues live queries behind it. Without --db and --dir the
config's database.url and database.migrations are used (--config, or
./handoff.yaml when it exists). See docs/migrations.md.`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			return usagef("missing subcommand: status, up, expand, backfill, contract, lint or rollback\nRun 'handoff migrate --help' for usage.")
		},
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.db, "db", "", "database: postgres://… or sqlite://PATH or a file path (default: the config's database.url)")
	pf.StringArrayVar(&f.dirs, "dir", nil, "migration directory, repeatable (default: the config's database.migrations)")
	pf.BoolVar(&g.json, "json", false, "print JSON: one object for status and lint, one line per event otherwise")
	pf.StringArrayVar(&f.allow, "allow", nil, "waive a lint finding: RULE, FILE:LINE or FILE:LINE:RULE (repeatable)")
	pf.DurationVar(&f.lockTimeout, "lock-timeout", 0, "lock timeout of each DDL statement and batch (default: the config's database.lock_timeout, 100ms)")

	bf := func(c *cobra.Command) *cobra.Command {
		fl := c.Flags()
		fl.StringVar(&f.release, "release", "", "working directory of command backfills (default: the current directory)")
		fl.StringVar(&f.throttle, "throttle", "", "adaptive (the default: full speed while nothing suffers), fixed (the duty cycle of the config or marker) or off")
		fl.BoolVar(&f.noThrottle, "no-throttle", false, "run backfills flat out: no rest between batches, no rate cap, no lag wait (--throttle off)")
		fl.Float64Var(&f.rate, "rate", 0, "cap backfills at this many rows per second")
		fl.IntVar(&f.batch, "batch", 0, "first batch size of backfills (adapts to the target batch time)")
		fl.IntVar(&f.workers, "workers", 0, "parallel workers per backfill, on disjoint key ranges (the adaptive throttle runs from one to this many at a time)")
		return c
	}
	run := func(use, short string, do func(*migrate.Migrator, context.Context) error) *cobra.Command {
		return &cobra.Command{Use: use, Short: short, Args: args(cobra.NoArgs),
			RunE: func(c *cobra.Command, _ []string) error { return f.apply(c, g, do) }}
	}
	cmd.AddCommand(
		&cobra.Command{Use: "status", Short: "Show every migration, its phases and what is pending", Args: args(cobra.NoArgs),
			RunE: func(c *cobra.Command, _ []string) error { return f.status(c, g) }},
		bf(run("up", "Run expand, backfill and contract of every pending migration", (*migrate.Migrator).Up)),
		run("expand", "Run the expand phase of every pending migration (after checking syntax and lint)", (*migrate.Migrator).Expand),
		bf(run("backfill", "Run (or resume, or catch up) the backfill of every expanded migration", (*migrate.Migrator).Backfill)),
		bf(run("contract", "Run the contract phase of every migration whose backfill is finished", (*migrate.Migrator).Contract)),
		&cobra.Command{Use: "rollback [NAME]", Short: "Undo the expand of a migration not yet contracted (its -- handoff:rollback phase)",
			Args: args(cobra.MaximumNArgs(1)),
			RunE: func(c *cobra.Command, a []string) error {
				name := ""
				if len(a) == 1 {
					name = a[0]
				}
				return f.apply(c, g, func(m *migrate.Migrator, ctx context.Context) error { return m.Rollback(ctx, name) })
			}},
		&cobra.Command{Use: "lint", Short: "Flag statements that would block live traffic, with the safe form", Args: args(cobra.NoArgs),
			Long: "Rules: " + strings.Join(migrate.LintRules, ", ") + `.
Waive a finding the author has judged with '-- handoff:allow RULE' on the line
above the statement, or --allow FILE:LINE. Exits 1 when anything is flagged.`,
			RunE: func(c *cobra.Command, _ []string) error { return f.lint(c, g) }},
	)
	return cmd
}

// loadDatabase reads the database section of --config, or of
// ./handoff.yaml when it exists, or the defaults.
func loadDatabase(g *globals) (config.Database, error) {
	path := g.config
	if path == "" {
		if _, err := os.Stat("handoff.yaml"); err == nil {
			path = "handoff.yaml"
		}
	}
	if path == "" {
		return config.Default().Database, nil
	}
	cfg, err := config.Load(path)
	if err != nil {
		return config.Database{}, err
	}
	return cfg.Database, nil
}

// options resolves flags over the config into migrate.Options.
func (f *migrateFlags) options(c *cobra.Command, g *globals) (string, migrate.Options, error) {
	db, err := loadDatabase(g)
	if err != nil {
		return "", migrate.Options{}, err
	}
	url := f.db
	if url == "" {
		url = db.URL
	}
	if url == "" {
		return "", migrate.Options{}, usagef("no database: give --db or database.url in the config")
	}
	dirs := f.dirs
	if len(dirs) == 0 {
		dirs = defaultMigrationDirs(g, db)
	}
	if _, err := evolve.ParseThrottle(f.throttle); err != nil {
		return "", migrate.Options{}, usagef("--throttle: %v", err)
	}
	o := migrate.ConfigOptions(db)
	if f.lockTimeout != 0 {
		o.LockTimeout = f.lockTimeout
	}
	o.Dirs, o.Release, o.Allow, o.Override = dirs, f.release, f.allow, f.override(c)
	return url, o, nil
}

// override applies the backfill flags that were given.
func (f *migrateFlags) override(c *cobra.Command) func(*evolve.Settings) {
	return func(s *evolve.Settings) {
		if f.throttle != "" {
			*s = s.Throttled(evolve.ThrottleMode(f.throttle))
		}
		if f.noThrottle {
			*s = s.Unthrottled()
		}
		if c.Flags().Changed("rate") {
			s.Rate = f.rate
		}
		if f.batch > 0 {
			s.Batch = f.batch
		}
		if f.workers > 0 {
			s.Workers = f.workers
		}
	}
}

// signalContext is cancelled by SIGINT or SIGTERM: a backfill then stops
// after rolling back its current batch, and resumes next time.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func (f *migrateFlags) open(ctx context.Context, c *cobra.Command, g *globals, progress func(migrate.Event)) (*migrate.Migrator, error) {
	url, opts, err := f.options(c, g)
	if err != nil {
		return nil, err
	}
	opts.Progress = progress
	return migrate.Open(ctx, url, opts)
}

func (f *migrateFlags) apply(c *cobra.Command, g *globals, do func(*migrate.Migrator, context.Context) error) error {
	ctx, stop := signalContext()
	defer stop()
	p := newPrinter(os.Stdout, g.json)
	m, err := f.open(ctx, c, g, p.event)
	if err != nil {
		return err
	}
	err = do(m, ctx)
	p.close()
	if cerr := m.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("close database: %w", cerr)
	}
	return err
}

func (f *migrateFlags) status(c *cobra.Command, g *globals) error {
	ctx, stop := signalContext()
	defer stop()
	m, err := f.open(ctx, c, g, nil)
	if err != nil {
		return err
	}
	defer m.Close()
	st, err := m.Status(ctx)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(os.Stdout, map[string]any{"migrations": st})
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "MIGRATION\tEXPAND\tBACKFILL\tCONTRACT\tPENDING")
	for _, s := range st {
		cells := map[migrate.Phase]string{migrate.Expand: "-", migrate.Backfill: "-", migrate.Contract: "-"}
		for _, ps := range s.Phases {
			cells[ps.Phase] = ps.State
		}
		if b := s.Backfill; b != nil && b.State != evolve.StateDone {
			cells[migrate.Backfill] = fmt.Sprintf("%s %.1f%%", b.State, b.Percent)
		}
		pending := make([]string, len(s.Pending))
		for i, p := range s.Pending {
			pending[i] = string(p)
		}
		name := s.Name
		if s.File == "" {
			name += " (no file)"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", name, cells[migrate.Expand], cells[migrate.Backfill], cells[migrate.Contract], strings.Join(pending, ","))
	}
	return w.Flush()
}

// lint needs no database; --db (or the config) only picks the dialect.
func (f *migrateFlags) lint(c *cobra.Command, g *globals) error {
	db, err := loadDatabase(g)
	if err != nil {
		return err
	}
	url, dirs := f.db, f.dirs
	if url == "" {
		url = db.URL
	}
	if len(dirs) == 0 {
		dirs = defaultMigrationDirs(g, db)
	}
	ms, err := migrate.Load(dirs...)
	if err != nil {
		return err
	}
	name := "postgres"
	if url != "" && !dialect.IsPostgres(url) {
		name = "sqlite"
	}
	findings := migrate.Lint(ms, name, f.allow)
	if g.json {
		if findings == nil {
			findings = []*migrate.Finding{}
		}
		if err := printJSON(os.Stdout, map[string]any{"findings": findings}); err != nil {
			return err
		}
	} else {
		for _, fd := range findings {
			fmt.Println(fd.Error())
		}
	}
	if len(findings) > 0 {
		return fmt.Errorf("lint: %d statement(s) would block live traffic", len(findings))
	}
	if !g.json {
		fmt.Printf("lint: %d migration(s), nothing flagged\n", len(ms))
	}
	return nil
}

// defaultMigrationDirs are the migrations `handoff migrate` works on
// without --dir: the config's database.migrations when it exists; else,
// when migrations live in the releases (releases/v42/migrations), the ones
// the running server names — those of the current releases — as `handoff
// status` shows them.
func defaultMigrationDirs(g *globals, db config.Database) []string {
	if fi, err := os.Stat(db.Migrations); err == nil && fi.IsDir() {
		return []string{db.Migrations}
	}
	cl, err := g.client()
	if err != nil {
		return []string{db.Migrations}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := cl.Status(ctx, "")
	if err != nil || len(st.MigrationDirs) == 0 {
		return []string{db.Migrations} // its error names the directory
	}
	return st.MigrationDirs
}
