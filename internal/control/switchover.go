package control

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/switchover"
)

// SwitchoverRequest is the body of POST /api/db/switchover: `handoff db
// switchover NAME --to URL [--deadline 5s] [--reverse | --migrate DIR
// [--window 10m]]`.
type SwitchoverRequest struct {
	// Name is the database endpoint (databases: in the config).
	Name string `json:"name"`
	// To is the replica's URL (postgres:// or mysql://). Its user, password
	// and database are used on the current primary too.
	To string `json:"to"`
	// Deadline bounds the whole window in which the app is held; 0 is
	// switchover.DefaultDeadline.
	Deadline config.Duration `json:"deadline,omitempty"`
	// Reverse, on a logical switchover, subscribes the old primary to the
	// new one after the promotion, so that a switch back loses nothing.
	Reverse bool `json:"reverse,omitempty"`
	// Migrate, an absolute directory on the server's host, makes it a
	// migrate-on-copy: the site read-only for at most Window (0 is
	// switchover.DefaultWindow) while these migrations run on the replica.
	Migrate string          `json:"migrate,omitempty"`
	Window  config.Duration `json:"window,omitempty"`
	Actor   string          `json:"actor,omitempty"`
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
