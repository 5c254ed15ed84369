package control

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/handoff-dev/handoff/internal/dbproxy"
)

// DBStatus is the answer to GET /api/db/status: `handoff db status`.
type DBStatus struct {
	Databases []DatabaseStatus `json:"databases"`
}

// DatabaseStatus is one database endpoint: where it listens, its primary
// and that server's role, and its client connections (dbproxy.Stats).
type DatabaseStatus struct {
	dbproxy.Stats
	Listen string `json:"listen"`
	// Role is the primary's own answer: primary, standby (Postgres in
	// recovery), read-only (MySQL read_only on), or unknown when it could
	// not be asked (RoleError says why).
	Role      string `json:"role"`
	RoleError string `json:"role_error,omitempty"`
}

// DBStatusAPI is implemented by a server that runs database endpoints.
type DBStatusAPI interface {
	DBStatus(ctx context.Context) (*DBStatus, error)
}

// dbStatusRoutes serves GET /api/db/status.
func dbStatusRoutes(mux *http.ServeMux, api DBStatusAPI, log *slog.Logger) {
	mux.HandleFunc("GET /api/db/status", func(w http.ResponseWriter, r *http.Request) {
		st, err := api.DBStatus(r.Context())
		reply(w, log, st, err)
	})
}

// DBStatus asks for the database endpoints' status.
func (c *Client) DBStatus(ctx context.Context) (*DBStatus, error) {
	var st DBStatus
	return &st, c.do(ctx, http.MethodGet, "/api/db/status", nil, &st)
}
