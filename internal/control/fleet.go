package control

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/handoff-dev/handoff/internal/fleet"
)

// FleetRequest is the body of POST /api/fleet/drain and /api/fleet/forget.
type FleetRequest struct {
	// Node is the node to act on; empty: the node that answers.
	Node string `json:"node,omitempty"`
	// State is where the node goes at the load balancer: drain, ready or
	// maint (drain only).
	State string `json:"state,omitempty"`
	// Wait makes a drain return once the node's traffic has stopped.
	Wait  bool   `json:"wait,omitempty"`
	Actor string `json:"actor,omitempty"`
}

// FleetStatus is the answer of the fleet endpoints: every node, lost ones
// included.
type FleetStatus struct {
	// Node is the node that answered.
	Node  string       `json:"node"`
	Nodes []fleet.Node `json:"nodes"`
}

// fleetRoutes serves the fleet endpoints.
func fleetRoutes(mux *http.ServeMux, api API, log *slog.Logger) {
	for path, call := range map[string]func(context.Context, FleetRequest) (*FleetStatus, error){
		"POST /api/fleet/drain":  api.FleetDrain,
		"POST /api/fleet/forget": api.FleetForget,
	} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			var req FleetRequest
			if !decode(w, r, &req) {
				return
			}
			st, err := call(r.Context(), req)
			reply(w, log, st, err)
		})
	}
}

// FleetDrain moves a node at the load balancer (drain, ready, maint).
func (c *Client) FleetDrain(ctx context.Context, req FleetRequest) (*FleetStatus, error) {
	var st FleetStatus
	return &st, c.do(ctx, http.MethodPost, "/api/fleet/drain", req, &st)
}

// FleetForget removes a lost node from the fleet.
func (c *Client) FleetForget(ctx context.Context, req FleetRequest) (*FleetStatus, error) {
	var st FleetStatus
	return &st, c.do(ctx, http.MethodPost, "/api/fleet/forget", req, &st)
}
