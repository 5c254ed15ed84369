package server

import (
	"context"
	"os"
	"strconv"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/supervisor"
)

var _ control.API = (*Server)(nil)

// Status reports every app, or one, with warnings an operator should act on.
func (s *Server) Status(ctx context.Context, app string) (*control.Status, error) {
	if app != "" && s.cfg.Apps.Get(app) == nil {
		return nil, &gateway.UnknownAppError{App: app}
	}
	out := &control.Status{PID: os.Getpid(), Apps: []control.AppStatus{}}
	byApp := s.tcpStatus()
	for _, gs := range s.gw.Status() {
		as := control.AppStatus{AppStatus: gs}
		for _, c := range s.gw.ReleaseStats(gs.App) {
			as.Releases = append(as.Releases, control.HealthOf(c))
		}
		byApp[gs.App] = as
	}
	for _, name := range s.cfg.Apps.Names() {
		as, ok := byApp[name]
		if !ok || app != "" && name != app {
			continue
		}
		as.Instances = redacted(s.supervisor().List(name))
		rec, err := s.deployer.Record(ctx, name)
		if err != nil && s.fleet == nil {
			return nil, err
		}
		if err != nil {
			rec = &deploy.Record{} // a node cut off from the shared state still shows what it serves (fleetInStatus says why)
		}
		if rec.Current != nil {
			as.Current = rec.Current.Label
		}
		if rec.Previous != nil {
			as.Previous = rec.Previous.Label
		}
		if id := rec.Deploy; id != "" || rec.Seq > 0 {
			if id == "" {
				id = name + "-" + strconv.Itoa(rec.Seq)
			}
			if dep, err := s.deployer.Get(ctx, id); err == nil {
				as.Deploy = dep
			}
		}
		out.Apps = append(out.Apps, as)
		out.Warnings = append(out.Warnings, s.warnings(as)...)
	}
	out.Warnings = append(out.Warnings, s.descriptorWarnings()...)
	out.Migrations, out.MigrationDirs = s.migrations(ctx)
	s.fleetInStatus(ctx, out)
	return out, nil
}

// redacted returns the instances fit to show: every answer of the API —
// and so status, the dashboard and the CLI — shows an instance's
// environment by its names only (see supervisor.Instance.Redacted).
func redacted(insts []supervisor.Instance) []supervisor.Instance {
	out := make([]supervisor.Instance, len(insts))
	for i, inst := range insts {
		out[i] = inst.Redacted()
	}
	return out
}

// Deploy runs a deploy for the control API.
func (s *Server) Deploy(ctx context.Context, req control.DeployRequest, progress func(deploy.Progress)) (*deploy.Deploy, error) {
	return s.deployer.Start(ctx, req, progress)
}

// Rollback rolls an app back for the control API.
func (s *Server) Rollback(ctx context.Context, req control.RollbackRequest, progress func(deploy.Progress)) (*deploy.Deploy, error) {
	if req.App == "" {
		return nil, deploy.Errorf(deploy.ErrBadRequest, "name the app to roll back")
	}
	return s.deployer.Rollback(ctx, req.App, deploy.RollbackOptions{Actor: req.Actor, Strategy: req.Strategy, Force: req.Force}, progress)
}

// Events returns the event log after an ID.
func (s *Server) Events(ctx context.Context, after int64, limit int) (*control.Events, error) {
	ev, err := s.store.Events(ctx, after, limit)
	if err != nil {
		return nil, err
	}
	return &control.Events{Events: ev}, nil
}
