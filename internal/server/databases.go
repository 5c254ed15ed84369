package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/dbproxy"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/switchover"
	"github.com/prometheus/client_golang/prometheus"
)

// Database endpoints in the server: each databases: entry is a
// dbproxy.Endpoint on its own listener, opened and handed over in an
// upgrade with the others (listen.go: "db.NAME"). It starts where the last
// switchover left it, and an unfinished switchover is recovered before it
// serves. On a stop, and in the old process after an upgrade, each client
// connection is closed as soon as it is between transactions (its pool
// opens another, to the successor after an upgrade), bounded by the
// longest drain_timeout.

// dbEndpoint is one configured endpoint.
type dbEndpoint struct {
	cfg *config.DatabaseEndpoint
	ep  *dbproxy.Endpoint
	// probes keeps the last probe of the servers for db status and the
	// dashboard (databases_status.go).
	probes probeCache
}

// openDatabases builds the endpoints; a bad credentials file or TLS CA
// fails here, before any instance is adopted.
func openDatabases(cfg *config.Config, log *slog.Logger) ([]*dbEndpoint, error) {
	var out []*dbEndpoint
	for _, db := range cfg.Databases {
		opts := dbproxy.Options{Logger: log}
		opts.Name, opts.Kind, opts.Primary = db.Name, dbproxy.Kind(db.Kind), db.Primary
		opts.MaxConnections = db.MaxConnections
		opts.ConnectTimeout, opts.StartupTimeout = db.ConnectTimeout.D(), db.StartupTimeout.D()
		opts.HoldMax, opts.IdleTimeout = db.HoldMax.D(), db.IdleTimeout.D()
		if db.CredentialsFile != "" {
			pw, err := dbproxy.CredentialsFile(db.CredentialsFile)
			if err != nil {
				return nil, fmt.Errorf("databases.%s.credentials_file: %w", db.Name, err)
			}
			opts.Password = pw
		}
		tlsCfg, err := dbproxy.TLSConfig(db.TLS, db.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("databases.%s: %w", db.Name, err)
		}
		opts.TLS = tlsCfg
		ep, err := dbproxy.New(opts)
		if err != nil {
			return nil, err
		}
		out = append(out, &dbEndpoint{cfg: db, ep: ep})
	}
	return out, nil
}

// startDatabases points each endpoint where the last switchover left it,
// finishes or rolls back a switchover a killed handoff left unfinished,
// and serves the endpoints' listeners.
func (s *Server) startDatabases(ctx context.Context, errc chan<- error) error {
	for _, d := range s.dbs {
		primary, err := s.switchoverPrimary(ctx, d.cfg)
		if err != nil {
			return fmt.Errorf("database endpoint %s: %w", d.cfg.Name, err)
		}
		if err := d.ep.Repoint(primary); err != nil {
			return err
		}
		if err := s.recoverSwitchover(ctx, d.cfg.Name, d.ep.Holder()); err != nil {
			// The app and its other endpoints are served; this endpoint
			// waits (its clients' connects queue) until the switchover it
			// was in is finished or rolled back: it must not serve a server
			// that is fenced or not yet promoted.
			s.log.Error("database endpoint waits for its switchover's recovery", "database", d.cfg.Name, "error", err)
			go s.recoverThenServe(ctx, d, errc)
			continue
		}
		s.serveDatabase(d, errc)
	}
	if len(s.dbs) > 0 {
		s.registry.MustRegister(&dbCollector{dbs: s.dbs})
	}
	return nil
}

func (s *Server) serveDatabase(d *dbEndpoint, errc chan<- error) {
	for _, l := range s.ls.named(config.DatabaseListenerName(d.cfg.Name)) {
		go func() {
			if err := d.ep.Serve(l); err != nil && !errors.Is(err, net.ErrClosed) && !s.upgrading.Load() {
				errc <- fmt.Errorf("serve database endpoint %s on %s: %w", d.cfg.Name, l.Addr(), err)
			}
		}()
	}
}

// recoverThenServe tries an unfinished switchover's recovery again until
// it succeeds (or the server stops), then serves the endpoint.
func (s *Server) recoverThenServe(ctx context.Context, d *dbEndpoint, errc chan<- error) {
	t := time.NewTicker(recoveryRetry)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.recoverSwitchover(ctx, d.cfg.Name, d.ep.Holder()); err != nil {
			s.log.Warn("database endpoint still waits for its switchover's recovery", "database", d.cfg.Name, "error", err)
			continue
		}
		// Another node may have ended it meanwhile: start where it left it.
		if primary, err := s.switchoverPrimary(ctx, d.cfg); err == nil && primary != d.ep.Stats().Primary {
			if err := d.ep.Repoint(primary); err != nil {
				s.log.Warn("database endpoint: point it where its switchover left it", "database", d.cfg.Name, "error", err)
			}
		}
		s.log.Info("database endpoint serves after its switchover's recovery", "database", d.cfg.Name, "primary", d.ep.Stats().Primary)
		s.serveDatabase(d, errc)
		return
	}
}

// recoveryRetry is how often a failed switchover recovery is tried again.
const recoveryRetry = 2 * time.Second

// shutdownDatabases closes the endpoints' client connections as each gets
// between transactions, bounded by ctx; the returned channel is closed
// when that is over.
func (s *Server) shutdownDatabases(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for _, d := range s.dbs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := d.ep.Shutdown(ctx); err != nil {
					s.log.Warn("database endpoint shut down", "database", d.cfg.Name, "error", err)
				}
			}()
		}
		wg.Wait()
	}()
	return done
}

func (s *Server) database(name string) *dbEndpoint {
	for _, d := range s.dbs {
		if d.cfg.Name == name {
			return d
		}
	}
	return nil
}

// DBSwitchover runs `handoff db switchover` on the named endpoint.
func (s *Server) DBSwitchover(ctx context.Context, req control.SwitchoverRequest) (*switchover.Record, error) {
	if s.upgrading.Load() {
		return nil, deploy.Errorf(deploy.ErrConflict, "an upgrade is under way: switch over on the new handoff process")
	}
	d := s.database(req.Name)
	if d == nil {
		return nil, deploy.Errorf(deploy.ErrNotFound, "no database endpoint %q in the config (databases:)", req.Name)
	}
	if req.Deadline <= 0 {
		req.Deadline = config.Duration(switchover.DefaultDeadline)
	}
	rec, err := s.runSwitchover(ctx, req, d.cfg, d.ep.Holder(), d.ep.Stats().Primary)
	if rec != nil {
		// The answer is printed (--json, CI logs): no password in it. The
		// journal keeps the URLs whole, to finish or roll back with.
		r := rec.Redacted()
		rec = &r
	}
	return rec, err
}

// dbCollector exports each endpoint's connections at scrape time.
type dbCollector struct{ dbs []*dbEndpoint }

var (
	dbConnsDesc = prometheus.NewDesc("handoff_database_connections",
		"Client connections of a database endpoint by state: idle (between transactions), in_transaction, held (by a pause), starting (logging in).",
		[]string{"database", "state"}, nil)
	dbPausedDesc = prometheus.NewDesc("handoff_database_paused",
		"1 while a database endpoint holds new transactions (a switchover).", []string{"database"}, nil)
	dbMovedDesc = prometheus.NewDesc("handoff_database_sessions_moved_total",
		"Client sessions a database endpoint moved to another server between transactions.", []string{"database"}, nil)
	dbMoveFailedDesc = prometheus.NewDesc("handoff_database_session_move_failures_total",
		"Client sessions closed because they could not be moved to the new server.", []string{"database"}, nil)
)

func (c *dbCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- dbConnsDesc
	ch <- dbPausedDesc
	ch <- dbMovedDesc
	ch <- dbMoveFailedDesc
}

func (c *dbCollector) Collect(ch chan<- prometheus.Metric) {
	for _, d := range c.dbs {
		st := d.ep.Stats()
		for state, n := range map[string]int{"idle": st.Idle, "in_transaction": st.InTransaction, "held": st.Held, "starting": st.Starting} {
			ch <- prometheus.MustNewConstMetric(dbConnsDesc, prometheus.GaugeValue, float64(n), st.Name, state)
		}
		paused := 0.0
		if st.Paused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(dbPausedDesc, prometheus.GaugeValue, paused, st.Name)
		ch <- prometheus.MustNewConstMetric(dbMovedDesc, prometheus.CounterValue, float64(st.Moved), st.Name)
		ch <- prometheus.MustNewConstMetric(dbMoveFailedDesc, prometheus.CounterValue, float64(st.MoveFailures), st.Name)
	}
}
