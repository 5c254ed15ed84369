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

// FleetDeploy rolls a release out host by host: the release is checked on
// every host first (refused, naming the hosts that lack it, with nothing
// changed); then for each batch of fleet.batch hosts, each is drained at
// the load balancer, runs its own deploy (bricks, release phase, health
// gate as on one host), and is put back into rotation; fleet.wait passes
// between batches. A failure halts the fleet deploy: the failing host's
// own deploy has rolled itself back, the hosts already done are rolled
// back, and every host is put back into rotation. The node that runs it
// holds the app's fleet deploy lease throughout.
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
	args := fleetDeployArgs{App: req.App, Release: filepath.Base(req.Release), Strategy: req.Strategy, Actor: req.Actor}
	raw, err := json.Marshal(args)
	if err != nil {
		return nil, err
	}
	lease, err := fn.f.Acquire(ctx, "deploy/"+req.App)
	if err != nil {
		return nil, deploy.Errorf(deploy.ErrConflict, "%v", err)
	}
	defer lease.Release(context.Background())
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
	out := &control.FleetDeploy{App: req.App, Release: args.Release}
	size := s.cfg.Fleet.Batch.Of(len(nodes))
	for i, n := range nodes {
		out.Hosts = append(out.Hosts, control.FleetHost{Node: n.Name, Batch: i/size + 1, State: "pending"})
	}
	s.event(req.App, "fleet", req.Actor, "fleet deploy of %s %s: %d hosts, %d at a time", req.App, args.Release, len(nodes), size)
	for b := 0; b*size < len(out.Hosts); b++ {
		if b > 0 {
			select {
			case <-time.After(s.cfg.Fleet.Wait.D()):
			case <-ctx.Done():
			}
		}
		batch := out.Hosts[b*size : min((b+1)*size, len(out.Hosts))]
		if err := s.deployBatch(ctx, lease, app, raw, batch); err != nil {
			s.revertFleet(app, out)
			msg := fmt.Sprintf("fleet deploy of %s %s halted: %v; %s", req.App, args.Release, err, summary(out))
			s.event(req.App, "fleet", req.Actor, "%s", msg)
			return out, deploy.Errorf(deploy.ErrFailed, "%s", msg)
		}
	}
	s.event(req.App, "fleet", req.Actor, "fleet deploy of %s %s done on %d hosts", req.App, args.Release, len(out.Hosts))
	return out, nil
}

// deployBatch takes one batch out of rotation, deploys each of its hosts,
// and puts them back.
func (s *Server) deployBatch(ctx context.Context, lease *fleet.Lease, app *config.App, raw json.RawMessage, batch []control.FleetHost) error {
	for i := range batch {
		if err := lease.Err(); err != nil {
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
		_, err := s.fleet.f.SendWait(ctx, fleet.Command{Kind: cmdDeploy, Target: batch[i].Node, Args: raw}, false, deployBound(app))
		if err != nil {
			batch[i].State, batch[i].Detail = "failed", err.Error()
			return fmt.Errorf("host %s: %w", batch[i].Node, err)
		}
		batch[i].State = "done"
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

// revertFleet rolls back the hosts a halted fleet deploy had done and puts
// every host back into rotation; it runs to the end whatever its caller's
// context does.
func (s *Server) revertFleet(app *config.App, out *control.FleetDeploy) {
	ctx := s.ctx
	for i := len(out.Hosts) - 1; i >= 0; i-- {
		h := &out.Hosts[i]
		if h.State == "done" {
			if _, err := s.fleet.f.SendWait(ctx, fleet.Command{Kind: cmdRollback, Target: h.Node, Args: mustJSON(fleetDeployArgs{App: app.Name, Actor: "fleet deploy revert"})}, false, deployBound(app)); err != nil {
				h.State, h.Detail = "revert-failed", err.Error()
			} else {
				h.State = "reverted"
			}
		}
	}
	for _, h := range out.Hosts {
		if h.State != "pending" {
			if _, err := s.FleetDrain(ctx, control.FleetRequest{Node: h.Node, State: cmdReady, Actor: "fleet deploy revert"}); err != nil {
				s.log.Warn("fleet: put a host back into rotation after a halted deploy", "node", h.Node, "error", err)
			}
		}
	}
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
		if c.Kind == cmdDeploy {
			_, err = s.deployer.Start(s.ctx, deploy.Request{App: args.App, Release: dir, Strategy: args.Strategy, Actor: "fleet deploy by " + c.By}, nil)
		} else {
			_, err = s.deployer.Rollback(s.ctx, args.App, deploy.RollbackOptions{Actor: "fleet deploy by " + c.By}, nil)
		}
		if err != nil && errors.Is(err, context.Canceled) {
			return // stopping: the sender sees no acknowledgement, and says so
		}
		if aerr := s.fleet.f.Ack(s.ctx, c.ID, err); aerr != nil {
			s.log.Warn("fleet: acknowledge a deploy", "command", c.ID, "error", aerr)
		}
	}()
	return fleet.ErrAckLater
}
