package server

import (
	"context"
	"errors"
	"time"

	"github.com/handoff-dev/handoff/internal/gateway"
)

// gatewayGate holds every app's new HTTP requests for a switchover, bounded
// by its deadline (and a little more: the hold must outlast the steps it
// covers, and ends by itself if the switchover dies).
//
// Requests still in flight after a quarter of the deadline (an event
// stream, a long upload) do not stop the switchover: the HTTP hold is then
// let go and the switchover goes on under the endpoint's pause alone, which
// is what keeps transactions whole — a request between two of its
// transactions has its next one held, then run on the new primary.
//
// On a node of a fleet the hold is the fleet's: every live node holds its
// own gateway the same way and acknowledges once it is quiet (fleet_hold.go);
// a lost node refuses the switchover before anything is held.
type gatewayGate struct {
	s        *Server
	deadline time.Duration
	database string // the endpoint switched: the other nodes pause theirs too
}

func (g gatewayGate) Hold(ctx context.Context) (func(), error) {
	if g.s.fleet != nil {
		return g.s.fleetHold(ctx, g.deadline, g.database)
	}
	return g.s.holdHere(ctx, g.deadline/4, holdMax(g.deadline))
}

// holdMax is how long a switchover's HTTP hold may last at most: the
// deadline and a little more, so that the hold outlasts the steps it
// covers.
func holdMax(deadline time.Duration) time.Duration { return deadline + 5*time.Second }

// holdHere holds this node's gateway and waits up to quiet for its
// requests in flight to finish; past that the hold is let go (see
// gatewayGate) and a no-op release is returned.
func (s *Server) holdHere(ctx context.Context, quiet, max time.Duration) (func(), error) {
	qctx, cancel := context.WithTimeout(ctx, quiet)
	defer cancel()
	release, err := s.gw.Quiesce(qctx, "", max)
	var qe *gateway.QuiesceError
	if errors.As(err, &qe) && ctx.Err() == nil {
		s.log.Warn("switchover: HTTP requests still in flight, going on with the database endpoint's pause alone", "in_flight", qe.InFlight, "waited", qe.Waited)
		return func() {}, nil
	}
	return release, err
}
