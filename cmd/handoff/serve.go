package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/handoff-dev/handoff/internal/server"
	"github.com/spf13/cobra"
)

func init() { commands = append(commands, serveCmd) }

func serveCmd(g *globals) *cobra.Command {
	var level string
	var keep bool
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the gateway, the supervisor, the control API and the dashboard",
		Long: `Run handoff: the gateway on the config's listen: addresses, the control
socket (mode 0600) that the other commands talk to, and, when admin.listen
is set, the token-guarded admin listener with the HTTP API and /metrics.

State (routes, modes, deploys) is kept in the config's state: store, so a
restarted server serves the same targets in the same modes and resumes any
deploy it was in the middle of. SIGINT or SIGTERM stop it gracefully: it
stops accepting at once, lets requests in flight finish, and stops the
supervised instances, which the next 'handoff serve' starts again as they
were (--keep-instances leaves them running for it to adopt instead).
SIGHUP upgrades it in place, as 'handoff upgrade' does. A serve that
cannot start (a port in use, a bad token file, an empty state file) stops
no instance.`,
		Args: args(cobra.NoArgs),
		RunE: func(c *cobra.Command, _ []string) error {
			cfg, err := g.loadConfig(true)
			if err != nil {
				server.TellFailed(err) // an upgrade's new process: the old one prints why
				return err
			}
			log, err := newLogger(level)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if path := os.Getenv("HANDOFF_CPUPROFILE"); path != "" {
				stopProfile, err := startCPUProfile(path)
				if err != nil {
					return err
				}
				defer stopProfile()
			}
			srv, err := server.New(ctx, cfg, server.Options{Logger: log, KeepInstances: keep, Args: os.Args[1:]})
			if err != nil {
				server.TellFailed(err)
				return err
			}
			go upgradeOnHangup(ctx, srv, log)
			return srv.Run(ctx)
		},
	}
	c.Flags().StringVar(&level, "log-level", "info", "log level: debug, info, warn or error")
	c.Flags().BoolVar(&keep, "keep-instances", false, "on stop, leave supervised instances running for the next 'handoff serve' to adopt (by default they are stopped, and started again by it)")
	return c
}

// upgradeOnHangup runs `handoff upgrade` on SIGHUP, as systemd's reload.
func upgradeOnHangup(ctx context.Context, srv *server.Server, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if _, err := srv.Upgrade(ctx); err != nil {
				log.Error("upgrade on SIGHUP", "error", err)
			}
		}
	}
}

// newLogger logs text to a terminal and JSON lines otherwise.
func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usagef("--log-level: want debug, info, warn or error, got %q", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	if isTerminal(os.Stderr) {
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
}

// startCPUProfile profiles the server until it stops; HANDOFF_CPUPROFILE=FILE
// turns it on, for the benchmarks (bench/README.md).
func startCPUProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create CPU profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start CPU profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}
