package server

import (
	"context"
	"fmt"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/store"
	"github.com/handoff-dev/handoff/internal/supervisor"
)

// kindModes is the store kind of each app's modes; key "*" holds the global ones.
const kindModes = "modes"

func modesKey(app string) string {
	if app == "" {
		return "*"
	}
	return app
}

func (s *Server) restoreModes(ctx context.Context) error {
	for _, app := range append([]string{""}, s.gw.Apps()...) { // tcp apps have no modes
		var m gateway.Modes
		if _, err := s.store.Get(ctx, kindModes, modesKey(app), &m); err != nil {
			return err
		}
		if err := s.gw.SetModes(app, m); err != nil {
			return err
		}
	}
	return nil
}

// SetMode switches a mode on or off: stored first, then applied, then logged.
func (s *Server) SetMode(ctx context.Context, mode string, req control.ModeRequest) error {
	return s.setMode(ctx, mode, req, nil)
}

// setMode is SetMode that changes nothing unless still, the lock held,
// returns true of the app's modes (nil: always).
func (s *Server) setMode(ctx context.Context, mode string, req control.ModeRequest, still func(gateway.Modes) bool) error {
	var app *config.App
	if req.App != "" {
		if app = s.cfg.Apps.Get(req.App); app == nil {
			return &gateway.UnknownAppError{App: req.App}
		}
		if err := refuseTCPMode(app, mode); err != nil {
			return err
		}
	}
	if s.upgrading.Load() {
		return deploy.Errorf(deploy.ErrUnavailable, "handoff is handing over to a new process; try again in a moment")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	m, err := s.gw.Modes(req.App)
	if err != nil {
		return err
	}
	if still != nil && !still(m) {
		return nil
	}
	now := time.Now().UTC()
	var what string
	switch mode {
	case "readonly":
		m.ReadOnly, what = nil, "read-only off"
		if req.On {
			m.ReadOnly, what = &gateway.ReadOnly{Since: now, Banner: req.Banner}, "read-only on"
			if req.For > 0 {
				m.ReadOnly.Until = now.Add(req.For.D())
				what += " for " + req.For.String()
			}
		}
	case "maintenance":
		m.Maintenance, what = nil, "maintenance off"
		if req.On {
			retry := req.RetryAfter
			if retry == 0 {
				retry = s.cfg.Maintenance.RetryAfter
				if app != nil {
					retry = app.Maintenance.RetryAfter
				}
			}
			m.Maintenance, what = &gateway.Maintenance{Since: now, RetryAfter: retry}, "maintenance on"
		}
	case "pause":
		m.Pause, what = &gateway.Pause{Since: now, Max: req.Max}, "paused"
		if req.Max > 0 {
			what += ", holding each request at most " + req.Max.String()
		}
	case "resume":
		m.Pause, what = nil, "resumed"
	default:
		return deploy.Errorf(deploy.ErrBadRequest, "unknown mode %q", mode)
	}
	if err := s.fleetCheckLive(ctx); err != nil {
		return err // a lost node: changed nowhere rather than on some nodes
	}
	if err := s.store.Put(ctx, kindModes, modesKey(req.App), m); err != nil {
		return err
	}
	if err := s.gw.SetModes(req.App, m); err != nil {
		return err
	}
	scope := "all apps"
	if req.App != "" {
		scope = req.App
	}
	s.event(req.App, "mode", req.Actor, "%s: %s", scope, what)
	return s.fleetModes(ctx) // every other node applies it too, and says so
}

// startModes starts the read-only timer; stopModes stops it, so that only
// one of two handoff processes switches modes during a hand-over.
func (s *Server) startModes() {
	ctx, cancel := context.WithCancel(s.ctx)
	s.mu.Lock()
	s.modesCancel = cancel
	s.mu.Unlock()
	go s.monitorModes(ctx)
}

func (s *Server) stopModes() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.modesCancel != nil {
		s.modesCancel()
	}
}

// monitorModes switches read-only off when its --for has run out.
func (s *Server) monitorModes(ctx context.Context) {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, app := range append([]string{""}, s.cfg.Apps.Names()...) {
			if m, err := s.gw.Modes(app); err != nil || !readOnlyRanOut(m) {
				continue
			}
			// Asked again with the lock held: a read-only switched on
			// meanwhile (without --for, or a later one) is not the one
			// that ran out.
			if err := s.setMode(ctx, "readonly", control.ModeRequest{App: app, Actor: "handoff (--for ran out)"}, readOnlyRanOut); err != nil {
				s.log.Warn("switch read-only off", "app", app, "error", err)
			}
		}
	}
}

// readOnlyRanOut reports whether m's read-only has an end, and it has come.
func readOnlyRanOut(m gateway.Modes) bool {
	return m.ReadOnly != nil && !m.ReadOnly.Until.IsZero() && !time.Now().Before(m.ReadOnly.Until)
}

// warnings lists what an operator should know about an app.
func (s *Server) warnings(as control.AppStatus) []string {
	var out []string
	app := s.cfg.Apps.Get(as.App)
	if ro := as.Modes.ReadOnly; ro != nil && app != nil {
		if on := time.Since(ro.Since); on > app.ReadOnly.WarnAfter.D() {
			out = append(out, fmt.Sprintf("%s has been read-only for %s (since %s), longer than readonly.warn_after (%s); end it with 'handoff readonly off'",
				as.App, on.Round(time.Second), ro.Since.Local().Format(time.Kitchen), app.ReadOnly.WarnAfter))
		}
	}
	if as.Modes.Maintenance != nil {
		out = append(out, fmt.Sprintf("%s is in maintenance mode since %s; end it with 'handoff maintenance off'", as.App, as.Modes.Maintenance.Since.Local().Format(time.Kitchen)))
	}
	for _, p := range as.Pools {
		for _, t := range p.Targets {
			if !t.Healthy {
				out = append(out, fmt.Sprintf("%s: instance %s (release %s) is failing its health check: %s", as.App, t.Addr, p.Release, t.LastError))
			}
		}
	}
	for _, inst := range as.Instances {
		switch inst.State {
		case supervisor.StateCrashLoop, supervisor.StateBackoff:
			out = append(out, fmt.Sprintf("%s: instance %s is %s after %d restarts (last exit: %s); see 'handoff logs %s'", as.App, inst.ID, inst.State, inst.Restarts, inst.LastExit, as.App))
		}
	}
	if as.Deploy != nil && as.Deploy.State == "canary" {
		out = append(out, fmt.Sprintf("%s: canary %s is open; finish it with 'handoff deploy %s --promote' or 'handoff rollback %s'", as.App, as.Deploy.To.Label, as.App, as.App))
	}
	return out
}

func (s *Server) event(app, kind, actor, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if _, err := s.store.Append(context.Background(), store.Event{App: app, Kind: kind, Actor: actor, Message: msg}); err != nil {
		s.log.Warn("append event", "error", err)
	}
	s.log.Info(msg, "app", app, "event", kind, "actor", actor)
}
