package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/fleet"
	"github.com/handoff-dev/handoff/internal/switchover"
)

// The commands of a switchover's fleet-wide HTTP hold.
const (
	cmdHold    = "hold"    // hold new requests; acknowledged once none is in flight
	cmdRelease = "release" // let the held requests go on
)

// holdArgs are a hold's (and its release's) arguments.
type holdArgs struct {
	// Hold is the hold command's ID (a release's only argument).
	Hold int64 `json:"hold,omitempty"`
	// Quiet bounds the wait for the requests in flight (a quarter of the
	// switchover's deadline); Max bounds the hold itself, so that a hold
	// ends by itself on every node if the node leading the switchover dies.
	Quiet time.Duration `json:"quiet,omitempty"`
	Max   time.Duration `json:"max,omitempty"`
	// Database is the endpoint being switched: each node that has one of
	// that name pauses it too (fleet_databases.go).
	Database string `json:"database,omitempty"`
}

// holdSet are the fleet holds this node runs, by hold command ID.
type holdSet struct {
	mu       sync.Mutex
	release  map[int64]func()
	released map[int64]bool // a release read before its hold was in place
}

// forget drops what the set keeps of hold id.
func (hs *holdSet) forget(id int64) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	delete(hs.release, id)
	delete(hs.released, id)
}

// fleetHold holds HTTP on every live node of the fleet for a switchover,
// under its one deadline: this node's gateway and every other node's
// (a "hold" command each acknowledges once its gateway has no request in
// flight, or once a quarter of the deadline has passed — then, as here,
// it lets its hold go and the switchover goes on under the database
// endpoint's pause). A lost node refuses it before anything is held,
// naming the node; a node that does not acknowledge in time fails it,
// and every hold is released.
func (s *Server) fleetHold(ctx context.Context, deadline time.Duration, database string) (func(), error) {
	fn := s.fleet
	if err := fn.f.CheckLive(ctx, ""); err != nil {
		return nil, fmt.Errorf("a switchover holds HTTP on every node: %w", err)
	}
	quiet, max := deadline/4, holdMax(deadline)
	start := time.Now()
	type held struct {
		release func()
		err     error
	}
	here := make(chan held, 1)
	go func() {
		r, err := s.holdHere(ctx, quiet, max)
		here <- held{r, err}
	}()
	args := mustJSON(holdArgs{Quiet: quiet, Max: max, Database: database})
	res, err := fn.f.SendWait(ctx, fleet.Command{Kind: cmdHold, Args: args}, true, quiet+s.cfg.Fleet.AckTimeout.D())
	local := <-here
	if err != nil || local.err != nil {
		if local.err == nil {
			local.release()
		}
		var ack *fleet.AckError
		switch {
		case err == nil:
			s.releaseFleetHold(res.Command.ID)
		case errors.As(err, &ack):
			s.releaseFleetHold(ack.Command.ID) // the nodes that did hold
		}
		if local.err != nil {
			return nil, local.err
		}
		return nil, fmt.Errorf("a switchover holds HTTP on every node: %w", err)
	}
	s.log.Info("switchover: HTTP held on every node", "nodes", len(res.Acked), "waited_ms", time.Since(start).Milliseconds(), "slowest_ms", res.Slowest.Milliseconds())
	id := res.Command.ID
	return func() {
		local.release()
		s.releaseFleetHold(id)
	}, nil
}

// releaseFleetHold tells every node to let hold id go. It does not wait
// for the switchover's sake: a node that misses it ends its hold by
// itself at the hold's bound.
func (s *Server) releaseFleetHold(id int64) {
	fn := s.fleet
	fn.wg.Add(1)
	go func() {
		defer fn.wg.Done()
		ctx, cancel := context.WithTimeout(s.ctx, fn.cfg.AckTimeout.D())
		defer cancel()
		if _, err := fn.f.Send(ctx, fleet.Command{Kind: cmdRelease, Args: mustJSON(holdArgs{Hold: id})}, true); err != nil {
			s.log.Warn("switchover: release the fleet's HTTP hold; a node that missed it lets go at the hold's bound", "hold", id, "error", err)
		}
	}()
}

// applyHold carries out a hold or release another node sent.
func (s *Server) applyHold(c fleet.Command) error {
	var args holdArgs
	if err := json.Unmarshal(c.Args, &args); err != nil {
		return fmt.Errorf("read the hold's arguments: %w", err)
	}
	hs := &s.fleet.holds
	if c.Kind == cmdRelease {
		hs.mu.Lock()
		r := hs.release[args.Hold]
		delete(hs.release, args.Hold)
		if r == nil {
			if hs.released == nil {
				hs.released = map[int64]bool{}
			}
			hs.released[args.Hold] = true
			// Its hold may never come (missed): the longest a hold can
			// last later, the note goes.
			time.AfterFunc(holdMax(switchover.MaxDeadline), func() { hs.forget(args.Hold) })
		}
		hs.mu.Unlock()
		if r != nil {
			// Off the command loop: a release that follows a switchover
			// reads the shared state first (fleet_databases.go).
			s.fleet.wg.Add(1)
			go func() {
				defer s.fleet.wg.Done()
				r()
				s.log.Info("fleet: HTTP hold released", "node", s.fleet.f.Name(), "by", c.By)
			}()
		}
		return nil
	}
	if args.Quiet <= 0 || args.Max <= 0 {
		return fmt.Errorf("a hold needs its bounds (quiet %s, max %s)", args.Quiet, args.Max)
	}
	// The wait for the requests in flight lasts up to a quarter of the
	// deadline: the command loop goes on meanwhile (a release may come).
	fn := s.fleet
	fn.wg.Add(1)
	go func() {
		defer fn.wg.Done()
		start := time.Now()
		release, err := s.holdHere(s.ctx, args.Quiet, args.Max)
		if err == nil && args.Database != "" {
			// The pause must end while the switching node still waits
			// for this acknowledgement (quiet + fleet.ack_timeout).
			release, err = s.holdDatabase(args.Database, start.Add(args.Quiet+fn.cfg.AckTimeout.D()/2), args.Max, release)
		}
		if err == nil {
			hs.mu.Lock()
			if hs.released[c.ID] {
				delete(hs.released, c.ID)
				hs.mu.Unlock()
				release()
			} else {
				if hs.release == nil {
					hs.release = map[int64]func(){}
				}
				hs.release[c.ID] = release
				hs.mu.Unlock()
				// The hold ends by itself at its bound; a release that
				// never comes must not keep its entry.
				time.AfterFunc(args.Max, func() { hs.forget(c.ID) })
			}
			s.log.Info("fleet: HTTP held for a switchover", "node", fn.f.Name(), "by", c.By, "quiet_after_ms", time.Since(start).Milliseconds(), "max", args.Max)
		} else {
			hs.forget(c.ID) // a release that came first, for a hold that failed
		}
		ctx, cancel := context.WithTimeout(s.ctx, max(fn.cfg.AckTimeout.D(), time.Second))
		defer cancel()
		if aerr := fn.f.Ack(ctx, c.ID, err); aerr != nil {
			s.log.Warn("fleet: acknowledge a hold", "command", c.ID, "error", aerr)
		}
	}()
	return fleet.ErrAckLater
}
