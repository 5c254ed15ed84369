package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/fleet"
)

// The commands of a fleet deploy, each for one node but the first.
const (
	cmdHasRelease = "has-release" // every node: is the release in my releases: directory?
	cmdDeploy     = "deploy"      // this node's own deploy, acknowledged when done
	cmdRollback   = "rollback"    // this node's own rollback, acknowledged when done
)

// fleetDeployArgs are a fleet deploy's commands' arguments.
type fleetDeployArgs struct {
	App      string          `json:"app"`
	Release  string          `json:"release"` // the release's name, in each host's releases:
	Strategy deploy.Strategy `json:"strategy,omitempty"`
	Actor    string          `json:"actor,omitempty"`
}

var _ control.FleetDeployer = (*Server)(nil)

// fleetPlan is a fleet deploy's plan and progress, kept in the shared
// state under the app's fleet deploy lease at every step (fenced by its
// token), so that if the node leading it dies another node takes the
// lease over and reverts it (fleet_takeover.go).
type fleetPlan struct {
	control.FleetDeploy
	Strategy deploy.Strategy `json:"strategy,omitempty"`
	Actor    string          `json:"actor,omitempty"`
	// Leader is the node that started it.
	Leader string `json:"leader"`
	// Phase is deploying, then reverting after a failure or the loss of
	// its leader; Why says why it reverts.
	Phase string `json:"phase"`
	Why   string `json:"why,omitempty"`
	// Waiting are the hosts a revert could not settle (lost): the plan
	// stays until they are back or forgotten.
	Waiting []string `json:"waiting,omitempty"`
	// Ready are the settled hosts a revert has put back into rotation: a
	// later pass (a lost host still to settle) does not send it again.
	Ready []string `json:"ready,omitempty"`
}

const (
	phaseDeploying = "deploying"
	phaseReverting = "reverting"
)

// FleetDeploy rolls a release out host by host: the release is checked on
// every host first (refused, naming the hosts that lack it, with nothing
// changed); then for each batch of fleet.batch hosts, each is drained at
// the load balancer, runs its own deploy (bricks, release phase, health
// gate as on one host), and is put back into rotation; fleet.wait passes
// between batches. A failure halts the fleet deploy: the failing host's
// own deploy has rolled itself back, the hosts already done are rolled
// back, and every host is put back into rotation. The node that runs it
// holds the app's fleet deploy lease throughout, and saves the plan under
// it at every step.
func (s *Server) FleetDeploy(ctx context.Context, req control.FleetDeployRequest) (*control.FleetDeploy, error) {
	fn := s.fleet
	if fn == nil {
		return nil, deploy.Errorf(deploy.ErrBadRequest, "this handoff is not part of a fleet: its state: is not a postgres:// URL")
	}
	app := s.cfg.Apps.Get(req.App)
	switch {
	case app == nil:
		return nil, deploy.Errorf(deploy.ErrNotFound, "unknown app %q", req.App)
	case !app.Supervised():
		return nil, deploy.Errorf(deploy.ErrBadRequest, "a fleet deploy rolls out a release directory: app %s has no command: (deploy its targets on each node)", req.App)
	case req.Release == "":
		return nil, deploy.Errorf(deploy.ErrBadRequest, "name the release to deploy (--release v42)")
	}
	// The fleet deploy runs to its end (done, or halted and reverted) even
	// if the client goes away, as one host's deploy does: a Ctrl-C or a CI
	// job's timeout must not leave the hosts mixed.
	ctx = context.WithoutCancel(ctx)
	args := fleetDeployArgs{App: req.App, Release: filepath.Base(req.Release), Strategy: req.Strategy, Actor: req.Actor}
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	lease, err := fn.f.Acquire(ctx, fleetDeployLease(req.App))
	if err != nil {
		return nil, deploy.Errorf(deploy.ErrConflict, "%v", err)
	}
	defer lease.Release(context.Background())
	var prev fleetPlan
	if ok, err := lease.Load(ctx, &prev); err != nil {
		return nil, err
	} else if ok {
		// Its leader died, and no node has reverted it yet: this node does
		// now, and the operator runs the new deploy on a settled fleet.
		s.takeOver(lease, &prev)
		return nil, deploy.Errorf(deploy.ErrConflict, "fleet: the fleet deploy of %s %s that node %s led was unfinished; it is reverted first (%s): run this one again once 'handoff status' shows it gone",
			prev.App, prev.Release, prev.Leader, summary(&prev.FleetDeploy))
	}
	nodes, err := fn.f.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	if err := fn.f.CheckLive(ctx, ""); err != nil {
		return nil, deploy.Errorf(deploy.ErrUnavailable, "%v", err)
	}
	if _, err := fn.f.Send(ctx, fleet.Command{Kind: cmdHasRelease, Args: raw}, false); err != nil {
		return nil, deploy.Errorf(deploy.ErrFailed, "release %s is not on every host, nothing was changed: %v", args.Release, err)
	}
	plan := &fleetPlan{FleetDeploy: control.FleetDeploy{App: req.App, Release: args.Release}, Strategy: req.Strategy, Actor: req.Actor,
		Leader: fn.f.Name(), Phase: phaseDeploying}
	size := s.cfg.Fleet.Batch.Of(len(nodes))
	for i, n := range nodes {
		plan.Hosts = append(plan.Hosts, control.FleetHost{Node: n.Name, Batch: i/size + 1, State: "pending"})
	}
	out := &plan.FleetDeploy
	if err := s.savePlan(lease, plan); err != nil {
		return nil, deploy.Errorf(deploy.ErrUnavailable, "fleet deploy of %s %s not started, nothing was changed: %v", req.App, args.Release, err)
	}
	s.event(req.App, "fleet", req.Actor, "fleet deploy of %s %s: %d hosts, %d at a time", req.App, args.Release, len(nodes), size)
	for b := 0; b*size < len(plan.Hosts); b++ {
		if b > 0 {
			select {
			case <-time.After(s.cfg.Fleet.Wait.D()):
			case <-ctx.Done():
			}
		}
		batch := plan.Hosts[b*size : min((b+1)*size, len(plan.Hosts))]
		if err := s.deployBatch(ctx, lease, plan, app, raw, batch); err != nil {
			if lerr := lease.Err(); lerr != nil || errors.Is(err, fleet.ErrLeaseLost) {
				msg := fmt.Sprintf("fleet deploy of %s %s stopped: this node lost its lease (%v); the node that holds it now reverts it; %s", req.App, args.Release, err, summary(out))
				s.event(req.App, "fleet", req.Actor, "%s", msg)
				return out, deploy.Errorf(deploy.ErrFailed, "%s", msg)
			}
			plan.Why = err.Error()
			pending := s.revertFleet(app, plan, lease)
			msg := fmt.Sprintf("fleet deploy of %s %s halted: %v; %s", req.App, args.Release, err, summary(out))
			if len(pending) > 0 {
				msg += fmt.Sprintf("; not yet reverted: %s (the fleet reverts them when they are back)", strings.Join(pending, ", "))
			}
			s.event(req.App, "fleet", req.Actor, "%s", msg)
			return out, deploy.Errorf(deploy.ErrFailed, "%s", msg)
		}
	}
	if err := lease.Finish(s.ctx); err != nil {
		s.log.Warn("fleet: clear a finished fleet deploy's plan", "app", req.App, "error", err)
	}
	s.event(req.App, "fleet", req.Actor, "fleet deploy of %s %s done on %d hosts", req.App, args.Release, len(plan.Hosts))
	return out, nil
}

// fleetDeployLease names an app's fleet deploy lease, and its plan.
func fleetDeployLease(app string) string { return "deploy/" + app }

// savePlan writes the plan under the lease, bounded: a leader that cannot
// save cannot be taken over, so it stops.
func (s *Server) savePlan(lease *fleet.Lease, plan *fleetPlan) error {
	ctx, cancel := context.WithTimeout(s.ctx, max(s.cfg.Fleet.Lease.D()/3, time.Second))
	defer cancel()
	return lease.Save(ctx, plan)
}

// deployBatch takes one batch out of rotation, deploys each of its hosts,
// and puts them back, saving the plan at each step.
func (s *Server) deployBatch(ctx context.Context, lease *fleet.Lease, plan *fleetPlan, app *config.App, raw json.RawMessage, batch []control.FleetHost) error {
	for i := range batch {
		if err := lease.Err(); err != nil {
			return err
		}
		batch[i].State = "draining"
		if err := s.savePlan(lease, plan); err != nil {
			return err
		}
		if _, err := s.FleetDrain(ctx, control.FleetRequest{Node: batch[i].Node, State: cmdDrain, Wait: true, Actor: "fleet deploy"}); err != nil {
			batch[i].State, batch[i].Detail = "failed", "drain: "+err.Error()
			return fmt.Errorf("host %s: drain: %w", batch[i].Node, err)
		}
	}
	for i := range batch {
		if err := lease.Err(); err != nil {
			return err
		}
		batch[i].State = "deploying"
		_, err := s.fleet.f.SendUnder(ctx, lease, fleet.Command{Kind: cmdDeploy, Target: batch[i].Node, Args: raw}, false, deployBound(app), func(id int64) any {
			batch[i].Command = id
			return plan
		})
		if errors.Is(err, fleet.ErrLeaseLost) {
			return err
		}
		var ae *fleet.AckError
		if errors.As(err, &ae) && len(ae.Lost) > 0 {
			// Lost while it deploys: what it ends up running is not known
			// until it is back; the revert settles it then.
			batch[i].Detail = err.Error()
			return fmt.Errorf("host %s: %w", batch[i].Node, err)
		}
		if errors.As(err, &ae) && len(ae.Failed) == 0 {
			// Not acknowledged within deployBound, yet not lost: its own
			// deploy may still finish on the new release. It stays
			// "deploying" with its command, so that the revert waits for
			// it and rolls it back if it did.
			batch[i].Detail = err.Error()
			return fmt.Errorf("host %s: %w", batch[i].Node, err)
		}
		if err != nil {
			batch[i].State, batch[i].Detail, batch[i].Command = "failed", err.Error(), 0
			return fmt.Errorf("host %s: %w", batch[i].Node, err)
		}
		batch[i].State, batch[i].Command = "done", 0
		if err := s.savePlan(lease, plan); err != nil {
			return err
		}
	}
	for i := range batch {
		if _, err := s.FleetDrain(ctx, control.FleetRequest{Node: batch[i].Node, State: cmdReady, Actor: "fleet deploy"}); err != nil {
			return fmt.Errorf("host %s: back into rotation: %w", batch[i].Node, err)
		}
	}
	return nil
}

// deployBound bounds the wait for one host's deploy: its release command,
// then each brick's start and drain.
func deployBound(app *config.App) time.Duration {
	bricks := time.Duration(app.BrickCount())
	return app.ReleaseTimeout.D() + bricks*(app.StartTimeout.D()+app.DrainTimeout.D()+app.Stop.Timeout.D()) + time.Minute
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func summary(out *control.FleetDeploy) string {
	var parts []string
	for _, h := range out.Hosts {
		parts = append(parts, h.Node+" "+h.State)
	}
	return strings.Join(parts, ", ")
}

// applyFleetDeploy carries out a fleet deploy's command on this node.
func (s *Server) applyFleetDeploy(c fleet.Command) error {
	var args fleetDeployArgs
	if err := json.Unmarshal(c.Args, &args); err != nil {
		return fmt.Errorf("read the fleet deploy's arguments: %w", err)
	}
	app := s.cfg.Apps.Get(args.App)
	if app == nil {
		return fmt.Errorf("no app %s in this node's config", args.App)
	}
	dir := filepath.Join(app.Releases, args.Release)
	switch c.Kind {
	case cmdHasRelease:
		if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
			return fmt.Errorf("release %s is not in %s on this host", args.Release, app.Releases)
		}
		return nil
	case cmdDeploy, cmdRollback:
	default:
		return fmt.Errorf("unknown fleet deploy command %q", c.Kind)
	}
	if _, running := s.fleet.deploys.LoadOrStore(c.ID, struct{}{}); running {
		return fleet.ErrAckLater
	}
	go func() {
		defer s.fleet.deploys.Delete(c.ID)
		var err error
		switch {
		case c.Kind == cmdDeploy:
			_, err = s.deployer.Start(s.ctx, deploy.Request{App: args.App, Release: dir, Strategy: args.Strategy, Actor: "fleet deploy by " + c.By}, nil)
		case args.Release != "" && !s.runsRelease(args.App, args.Release):
			// A revert rolls back only a host that runs the fleet deploy's
			// release once no deploy of it is running (one this process
			// resumed after a restart may still finish on it): asked twice
			// (a second node took the revert over), it rolls nothing back
			// twice.
		default:
			_, err = s.deployer.Rollback(s.ctx, args.App, deploy.RollbackOptions{Actor: "fleet deploy by " + c.By}, nil)
		}
		if errors.Is(err, context.Canceled) || errors.Is(err, deploy.ErrInterrupted) {
			// Stopping: the next process resumes the deploy, and the
			// sender, seeing this node restarted without acknowledging,
			// reverts the fleet deploy (fleet_revert.go).
			return
		}
		if aerr := s.fleet.f.Ack(s.ctx, c.ID, err); aerr != nil {
			s.log.Warn("fleet: acknowledge a deploy", "command", c.ID, "error", aerr)
		}
	}()
	return fleet.ErrAckLater
}

// runsRelease says whether this node's current release of app is label,
// once no deploy of app is running.
func (s *Server) runsRelease(app, label string) bool {
	for {
		rec, err := s.deployer.Record(s.ctx, app)
		if err != nil {
			return true // unknown: roll back, as asked
		}
		if !s.deployer.Running(s.ctx, rec) {
			return rec.Current != nil && rec.Current.Label == label
		}
		select {
		case <-s.ctx.Done():
			return true
		case <-time.After(100 * time.Millisecond):
		}
	}
}
