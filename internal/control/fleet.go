package control

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/handoff-dev/handoff/internal/deploy"
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

// FleetDeployer runs fleet deploys; the server implements it (an API
// that does not is answered 404 on /api/fleet/deploy).
type FleetDeployer interface {
	FleetDeploy(ctx context.Context, req FleetDeployRequest) (*FleetDeploy, error)
}

// fleetRoutes serves the fleet endpoints.
func fleetRoutes(mux *http.ServeMux, api API, log *slog.Logger) {
	if fd, ok := api.(FleetDeployer); ok {
		mux.HandleFunc("POST /api/fleet/deploy", func(w http.ResponseWriter, r *http.Request) {
			var req FleetDeployRequest
			if !decode(w, r, &req) {
				return
			}
			d, err := fd.FleetDeploy(r.Context(), req)
			reply(w, log, d, err)
		})
	}
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

// FleetDeployRequest is the body of POST /api/fleet/deploy: a release,
// present on every host under the app's releases: directory, rolled out
// host by host (fleet.batch hosts at a time).
type FleetDeployRequest struct {
	App string `json:"app"`
	// Release is the release's name (a directory's last element: v42 of
	// /srv/web/releases/v42), looked up on each host in its releases:.
	Release  string          `json:"release"`
	Strategy deploy.Strategy `json:"strategy,omitempty"`
	Actor    string          `json:"actor,omitempty"`
}

// FleetDeploy is a fleet deploy's outcome: each host, in the order taken.
type FleetDeploy struct {
	App     string      `json:"app"`
	Release string      `json:"release"`
	Hosts   []FleetHost `json:"hosts"`
}

// FleetHost is what a fleet deploy did on one host.
type FleetHost struct {
	Node  string `json:"node"`
	Batch int    `json:"batch"` // from 1
	// State is pending, draining, deploying, done, failed (its own deploy
	// rolled back by itself), reverted (done, then rolled back after
	// another host failed or the deploy's leader was lost) or
	// revert-failed.
	State  string `json:"state"`
	Detail string `json:"detail,omitempty"`
	// Command is the deploy command's ID while the host deploys: a node
	// that takes the fleet deploy over waits for its acknowledgement.
	Command int64 `json:"command,omitempty"`
}

// FleetDeploy rolls a release out host by host.
func (c *Client) FleetDeploy(ctx context.Context, req FleetDeployRequest) (*FleetDeploy, error) {
	var d FleetDeploy
	return &d, c.do(ctx, http.MethodPost, "/api/fleet/deploy", req, &d)
}
