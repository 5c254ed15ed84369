package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/sampleapp"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, newSampleappCommand) }

// sampleappFlags are `handoff sampleapp`'s flags.
type sampleappFlags struct {
	release    string
	listen     string
	unhealthy  bool
	startDelay time.Duration
	worker     bool
	job        time.Duration
	jobLog     string
	db         string
	schema     int
	bad        string
}

// newSampleappCommand is the backend the demo and the tests put behind the
// gateway. It is hidden: users deploy their own apps.
func newSampleappCommand(*globals) *cobra.Command {
	f := &sampleappFlags{}
	c := &cobra.Command{
		Use:    "sampleapp",
		Short:  "Serve the sample app (or run its job worker), as the demo and tests do",
		Hidden: true,
		Args:   args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			return runSampleapp(f)
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.release, "release", "", "release shown and sent as X-Release (default $HANDOFF_RELEASE, else \"dev\")")
	fl.StringVar(&f.listen, "listen", "", "address to serve on (default 127.0.0.1:$PORT)")
	fl.BoolVar(&f.unhealthy, "unhealthy", false, "answer /healthz with 503")
	fl.DurationVar(&f.startDelay, "start-delay", 0, "wait this long before listening, like an app that boots slowly")
	fl.BoolVar(&f.worker, "worker", false, "run jobs back to back instead of serving HTTP")
	fl.DurationVar(&f.job, "job", 20*time.Second, "with --worker: how long each job takes")
	fl.StringVar(&f.jobLog, "job-log", "", "with --worker: file to append job lines to (default stdout)")
	fl.StringVar(&f.bad, "bad", "", "play a release broken only under traffic: login (redirect every other page to /login) or 5xx")
	fl.StringVar(&f.db, "db", "", "keep /items in this database (postgres://… or a SQLite file) instead of in memory")
	fl.IntVar(&f.schema, "schema", 1, "with --db: the release's view of the items table (1: title, legacy_title; 2: title_lower)")
	return c
}

// runSampleapp serves until SIGTERM or SIGINT, then shuts down gracefully.
func runSampleapp(f *sampleappFlags) error {
	release := firstNonEmpty(f.release, os.Getenv("HANDOFF_RELEASE"), "dev")
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if f.worker {
		return sampleapp.RunWorker(ctx, sampleapp.WorkerOptions{Release: release, JobDuration: f.job, JobLog: f.jobLog})
	}
	listen := f.listen
	if listen == "" {
		port := os.Getenv("PORT")
		if port == "" {
			return usagef("sampleapp: no --listen and no $PORT")
		}
		listen = "127.0.0.1:" + port
	}
	return sampleapp.ListenAndServe(ctx, sampleapp.ServeOptions{
		Options:    sampleapp.Options{Release: release, Unhealthy: f.unhealthy, DB: f.db, Schema: f.schema, Bad: f.bad},
		Listen:     listen,
		StartDelay: f.startDelay,
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
