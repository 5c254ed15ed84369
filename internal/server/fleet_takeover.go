package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/fleet"
)

// A fleet deploy whose leader dies (killed, its host gone, cut off from
// the shared state) stops being led: its lease expires after fleet.lease.
// Every node looks for such orphaned fleet deploys and the first to take
// the lease reverts it: hosts still deploying are waited for, hosts done
// are rolled back to what they ran before, every host is put back into
// rotation. Revert rather than finish: a person started the deploy on a
// node that is gone, nobody watches it any more, and the fleet's last
// consistent release is the one every host ran before; finishing would
// take the rest of the fleet to a release whose rollout has already seen
// a failure (the leader's own host, possibly because of it). The
// operator deploys again when the cause is known.

// orphanEvery is how often a node looks for orphaned fleet deploys: a
// third of the lease, so that one is taken over within about 1⅓ × lease of
// its leader's last renewal.
func (s *Server) orphanEvery() time.Duration {
	return max(s.cfg.Fleet.Lease.D()/3, s.cfg.Fleet.Heartbeat.D())
}

// monitorOrphans takes over, one at a time, the fleet deploys whose
// leader's lease has expired.
func (s *Server) monitorOrphans(ctx context.Context) {
	t := time.NewTicker(s.orphanEvery())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		qctx, cancel := context.WithTimeout(ctx, s.orphanEvery())
		ops, err := s.fleet.f.Operations(qctx)
		cancel()
		if err != nil {
			continue // cut off from the state: the heartbeat says so
		}
		for _, op := range ops {
			if !op.Orphaned || !strings.HasPrefix(op.Name, "deploy/") || ctx.Err() != nil {
				continue
			}
			lease, err := s.fleet.f.Acquire(ctx, op.Name)
			if err != nil {
				continue // another node took it first
			}
			var plan fleetPlan
			if ok, err := lease.Load(ctx, &plan); err == nil && ok {
				s.takeOver(lease, &plan)
			}
			lease.Release(context.Background())
		}
	}
}

// takeOver reverts an orphaned fleet deploy under lease (this node's now).
// Hosts that are lost are left for a later try: the plan stays, and the
// event is written only when what is left changes.
func (s *Server) takeOver(lease *fleet.Lease, plan *fleetPlan) {
	app := s.cfg.Apps.Get(plan.App)
	me := s.fleet.f.Name()
	if app == nil {
		s.log.Warn("fleet: an unfinished fleet deploy of an app this node does not have; another node reverts it", "app", plan.App, "release", plan.Release)
		return
	}
	if plan.Phase != phaseReverting {
		plan.Why = fmt.Sprintf("node %s, which led it, stopped leading it (its lease expired)", plan.Leader)
		s.event(plan.App, "fleet", "handoff", "node %s takes over the fleet deploy of %s %s: %s; reverting it (%s)", me, plan.App, plan.Release, plan.Why, summary(&plan.FleetDeploy))
	}
	before := strings.Join(plan.Waiting, ",")
	pending := s.revertFleet(app, plan, lease)
	switch {
	case len(pending) == 0:
		s.event(plan.App, "fleet", "handoff", "fleet deploy of %s %s reverted by node %s: %s", plan.App, plan.Release, me, summary(&plan.FleetDeploy))
	case strings.Join(pending, ",") != before:
		s.event(plan.App, "fleet", "handoff", "fleet deploy of %s %s: reverted but for %s, which is lost: it is reverted when it is back (or forgotten); %s",
			plan.App, plan.Release, strings.Join(pending, ", "), summary(&plan.FleetDeploy))
	}
}

// fleetDeploysInStatus warns of every unfinished fleet deploy: one under
// way, or one whose hosts are not all settled — so that a mix of
// releases across the fleet is never shown without its reason.
func (s *Server) fleetDeploysInStatus(ctx context.Context, out *control.Status) {
	ops, err := s.fleet.f.Operations(ctx)
	if err != nil {
		return
	}
	for _, op := range ops {
		var plan fleetPlan
		if !strings.HasPrefix(op.Name, "deploy/") || json.Unmarshal(op.State, &plan) != nil {
			continue
		}
		msg := fmt.Sprintf("fleet deploy of %s %s (started on node %s) is %s: %s", plan.App, plan.Release, plan.Leader, plan.Phase, summary(&plan.FleetDeploy))
		if plan.Why != "" {
			msg += "; why: " + plan.Why
		}
		if len(plan.Waiting) > 0 {
			msg += fmt.Sprintf("; not yet reverted: %s (lost: reverted when back, or 'handoff fleet forget' it)", strings.Join(plan.Waiting, ", "))
		}
		if op.Orphaned {
			msg += "; no node leads it now: the next node to look takes it over (every " + s.orphanEvery().String() + ")"
		} else if op.Holder != plan.Leader {
			msg += "; led now by node " + op.Holder
		}
		out.Warnings = append(out.Warnings, msg)
	}
}
