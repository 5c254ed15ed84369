package control

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/switchover"
)

// SwitchoverRequest is the body of POST /api/db/switchover: `handoff db
// switchover NAME --to URL [--deadline 5s]`.
type SwitchoverRequest struct {
	// Name is the database endpoint (databases: in the config).
	Name string `json:"name"`
	// To is the replica's URL (postgres:// or mysql://). Its user, password
	// and database are used on the current primary too.
	To string `json:"to"`
	// Deadline bounds the whole window in which the app is held; 0 is
	// switchover.DefaultDeadline.
	Deadline config.Duration `json:"deadline,omitempty"`
	Actor    string          `json:"actor,omitempty"`
}

// SwitchoverAPI is implemented by a server with database endpoints.
type SwitchoverAPI interface {
	// DBSwitchover runs a switchover and returns its record: step done,
	// or rolled-back with its error. A switchover refused by its
	// preconditions (nothing changed) is an error.
	DBSwitchover(ctx context.Context, req SwitchoverRequest) (*switchover.Record, error)
}

// switchoverRoutes serves POST /api/db/switchover.
func switchoverRoutes(mux *http.ServeMux, api SwitchoverAPI, log *slog.Logger) {
	mux.HandleFunc("POST /api/db/switchover", func(w http.ResponseWriter, r *http.Request) {
		var req SwitchoverRequest
		if !decode(w, r, &req) {
			return
		}
		rec, err := api.DBSwitchover(r.Context(), req)
		reply(w, log, rec, err)
	})
}

// DBSwitchover asks the server to run a switchover.
func (c *Client) DBSwitchover(ctx context.Context, req SwitchoverRequest) (*switchover.Record, error) {
	var rec switchover.Record
	return &rec, c.do(ctx, http.MethodPost, "/api/db/switchover", req, &rec)
}
