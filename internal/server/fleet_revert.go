package server

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/fleet"
)

// revertFleet undoes a halted fleet deploy, from the last host to the
// first: a host still deploying is waited for (its own deploy goes on
// without the leader), a host that finished is rolled back — only if it
// still runs the fleet deploy's release, so that doing it twice (a second
// node taking over a revert) rolls nothing back twice —, and every host
// taken out of rotation is put back. It runs to the end whatever its
// caller's context does. It returns the hosts it could not settle
// because they are lost: the plan is then kept, and the fleet's nodes try
// again (fleet_takeover.go) until they are back or forgotten. Without them
// the plan is cleared.
func (s *Server) revertFleet(app *config.App, plan *fleetPlan, lease *fleet.Lease) (pending []string) {
	ctx := s.ctx
	plan.Phase = phaseReverting
	save := func() {
		if err := s.savePlan(lease, plan); err != nil {
			s.log.Warn("fleet: save a fleet deploy's revert", "app", plan.App, "error", err)
		}
	}
	save()
	known := map[string]fleet.Node{}
	if nodes, err := s.fleet.f.Nodes(ctx); err == nil {
		for _, n := range nodes {
			known[n.Name] = n
		}
	}
	unsettled := map[string]bool{}
	lost := func(h *control.FleetHost, err error) bool {
		var le *fleet.LostError
		var ae *fleet.AckError
		if errors.As(err, &le) || errors.As(err, &ae) && len(ae.Lost) > 0 || known[h.Node].Lost {
			unsettled[h.Node] = true
			h.Detail = "lost: " + err.Error()
			return true
		}
		return false
	}
	for i := len(plan.Hosts) - 1; i >= 0; i-- {
		h := &plan.Hosts[i]
		if _, ok := known[h.Node]; !ok && len(known) > 0 {
			if h.State != "pending" {
				h.Detail = "forgotten: no longer part of the fleet"
			}
			continue
		}
		if h.State == "deploying" && h.Command != 0 {
			if known[h.Node].Lost {
				lost(h, fmt.Errorf("node %s is lost while it deploys", h.Node))
				save()
				continue
			}
			wait := deployBound(app)
			restarted := s.fleet.f.RestartedSince(ctx, h.Node, h.Command)
			if restarted {
				// The process that ran its deploy is gone: no
				// acknowledgement will come; it runs what its restart left
				// (an interrupted deploy resumes or rolls back by itself),
				// and the conditional rollback below settles it.
				wait = time.Second // an acknowledgement written before the restart
			}
			_, err := s.fleet.f.AwaitAck(ctx, h.Command, cmdDeploy, h.Node, wait)
			var ae *fleet.AckError
			switch {
			case err == nil:
				h.State, h.Command = "done", 0
			case errors.As(err, &ae) && len(ae.Failed) > 0:
				h.State, h.Detail, h.Command = "failed", err.Error(), 0
			case restarted:
				h.State, h.Command = "done", 0
			case lost(h, err):
				save()
				continue
			default:
				h.State, h.Detail = "revert-failed", err.Error()
			}
			save()
		}
		if h.State == "done" {
			rb := mustJSON(fleetDeployArgs{App: app.Name, Release: plan.Release, Actor: "fleet deploy revert"})
			if _, err := s.fleet.f.SendWait(ctx, fleet.Command{Kind: cmdRollback, Target: h.Node, Args: rb}, false, deployBound(app)); err != nil {
				if !lost(h, err) {
					h.State, h.Detail = "revert-failed", err.Error()
				}
			} else {
				h.State, h.Detail = "reverted", ""
			}
			save()
		}
	}
	for i := range plan.Hosts {
		h := &plan.Hosts[i]
		if _, ok := known[h.Node]; h.State == "pending" || !ok && len(known) > 0 {
			continue
		}
		if slices.Contains(plan.Ready, h.Node) && !unsettled[h.Node] {
			continue // put back by an earlier pass: a retry sends nothing more
		}
		if _, err := s.FleetDrain(ctx, control.FleetRequest{Node: h.Node, State: cmdReady, Actor: "fleet deploy revert"}); err != nil {
			// Lost or not, a host that did not take its ready stays
			// unsettled: the plan is kept and the ready sent again, rather
			// than the host left out of rotation with nothing saying so.
			if !lost(h, err) {
				s.log.Warn("fleet: put a host back into rotation after a halted deploy", "node", h.Node, "error", err)
				unsettled[h.Node] = true
				h.Detail = "not back in rotation: " + err.Error()
			}
		} else if !unsettled[h.Node] {
			plan.Ready = append(plan.Ready, h.Node)
		}
	}
	for _, h := range plan.Hosts {
		if unsettled[h.Node] {
			pending = append(pending, h.Node)
		}
	}
	plan.Waiting = pending
	if len(pending) > 0 {
		save()
		return pending
	}
	if err := lease.Finish(ctx); err != nil {
		s.log.Warn("fleet: clear a reverted fleet deploy's plan", "app", plan.App, "error", err)
	}
	return nil
}
