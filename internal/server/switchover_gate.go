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
type gatewayGate struct {
	s        *Server
	deadline time.Duration
}

func (g gatewayGate) Hold(ctx context.Context) (func(), error) {
	qctx, cancel := context.WithTimeout(ctx, g.deadline/4)
	defer cancel()
	release, err := g.s.gw.Quiesce(qctx, "", g.deadline+5*time.Second)
	var qe *gateway.QuiesceError
	if errors.As(err, &qe) && ctx.Err() == nil {
		g.s.log.Warn("switchover: HTTP requests still in flight, going on with the database endpoint's pause alone", "in_flight", qe.InFlight, "waited", qe.Waited)
		return func() {}, nil
	}
	return release, err
}
