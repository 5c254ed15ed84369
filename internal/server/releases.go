package server

import (
	"context"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/supervisor"
)

// Releases lists each recorded release with its state and every process
// still running from it.
func (s *Server) Releases(ctx context.Context, app string) (*control.Releases, error) {
	if app != "" && s.cfg.Apps.Get(app) == nil {
		return nil, &gateway.UnknownAppError{App: app}
	}
	recs, err := s.deployer.Releases(ctx, app)
	if err != nil {
		return nil, err
	}
	out := &control.Releases{Releases: []control.Release{}}
	instances := redacted(s.supervisor().List(app))
	for _, r := range recs {
		rel := control.Release{ReleaseRecord: r, State: "unused", Processes: []supervisor.Instance{}}
		for _, inst := range instances {
			if inst.App == r.App && inst.Release == r.Label {
				rel.Processes = append(rel.Processes, inst)
			}
		}
		appRec, err := s.deployer.Record(ctx, r.App)
		if err != nil {
			return nil, err
		}
		switch {
		case appRec.Current != nil && appRec.Current.Label == r.Label:
			rel.State = "current"
		case appRec.Previous != nil && appRec.Previous.Label == r.Label && len(rel.Processes) == 0:
			rel.State = "previous"
		case len(rel.Processes) > 0:
			rel.State = "draining"
		}
		out.Releases = append(out.Releases, rel)
	}
	return out, nil
}
