package control

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/handoff-dev/handoff/internal/dbproxy"
)

// DBStatus is the answer to GET /api/db/status: `handoff db status`.
type DBStatus struct {
	Databases []DatabaseStatus `json:"databases"`
}

// DatabaseStatus is one database endpoint: where it listens, its primary
// and that server's role, the replicas the primary knows, its client
// connections (dbproxy.Stats), and the running or last switchover.
type DatabaseStatus struct {
	dbproxy.Stats
	Listen string `json:"listen"`
	// Role is the primary's own answer: primary, standby (Postgres in
	// recovery), read-only (MySQL read_only on), or unknown when it could
	// not be asked (RoleError says why).
	Role      string `json:"role"`
	RoleError string `json:"role_error,omitempty"`
	// Replicas are the servers that replicate from the primary, as far as
	// handoff can see them (docs/databases.md, "Status and metrics");
	// ReplicasError says why they could not be read, when they could not.
	Replicas      []Replica `json:"replicas"`
	ReplicasError string    `json:"replicas_error,omitempty"`
	// Switchover is the switchover in progress, or the last one; nil when
	// the endpoint has had none. SwitchoverError says why its record could
	// not be read.
	Switchover      *SwitchoverStatus `json:"switchover,omitempty"`
	SwitchoverError string            `json:"switchover_error,omitempty"`
}

// Replica is one server replicating from an endpoint's primary. Fields
// that the source cannot tell are left out (nil lags: unknown, which is
// not the same as no lag).
type Replica struct {
	// Source says where this was read: "pg_stat_replication" (Postgres,
	// on the primary), "replica hosts" (MySQL/MariaDB's SHOW REPLICA HOSTS
	// on the primary: no lag) or "replica status" (the replica's own SHOW
	// REPLICA STATUS, asked when the last switchover named it).
	Source string `json:"source"`
	// Addr is where the replica is: its client address as the primary
	// sees it (Postgres), or the host:port it reports (MySQL).
	Addr string `json:"addr"`
	// Name is Postgres' application_name, or MySQL's server_id.
	Name string `json:"name,omitempty"`
	// State is Postgres' walsender state (streaming, catchup, ...) with
	// its sync_state, or MySQL's IO and SQL threads' running states.
	State string `json:"state,omitempty"`
	// WriteLag, FlushLag and ReplayLag are Postgres' measured lags
	// (pg_stat_replication's *_lag; Postgres clears them a moment after
	// the replica caught up with an idle primary).
	WriteLag  *time.Duration `json:"write_lag_ns,omitempty"`
	FlushLag  *time.Duration `json:"flush_lag_ns,omitempty"`
	ReplayLag *time.Duration `json:"replay_lag_ns,omitempty"`
	// LagBytes is how much WAL the replica has still to replay (Postgres:
	// pg_current_wal_lsn() - replay_lsn).
	LagBytes *int64 `json:"lag_bytes,omitempty"`
	// SecondsBehind is MySQL's Seconds_Behind_Master from the replica.
	SecondsBehind *int64 `json:"seconds_behind,omitempty"`
	// Error is why the replica's own status could not be read.
	Error string `json:"error,omitempty"`
}

// SwitchoverStatus is a switchover as its journal record tells it, with
// the servers' URLs stripped of their passwords.
type SwitchoverStatus struct {
	// Kind is the replication: postgres-physical, postgres-logical,
	// mysql-gtid.
	Kind     string        `json:"kind"`
	From     string        `json:"from"`
	To       string        `json:"to"`
	FromAddr string        `json:"from_addr"`
	ToAddr   string        `json:"to_addr"`
	Deadline time.Duration `json:"deadline_ns"`
	// Migrate is the migrations' directory of a migrate-on-copy (--migrate),
	// whose read-only Window bounds it as a whole; Reverse is set for a
	// logical switchover with --reverse.
	Migrate string        `json:"migrate,omitempty"`
	Window  time.Duration `json:"window_ns,omitempty"`
	Reverse bool          `json:"reverse,omitempty"`
	Started time.Time     `json:"started"`
	// Step is the step now (or the last one: done, rolled-back).
	Step string `json:"step"`
	// Running is true until the switchover is done or rolled back; a
	// record left unfinished by a killed handoff stays running until the
	// restarted one recovers it.
	Running bool `json:"running"`
	// Steps are the steps taken, each with when it began after the start
	// and, once the next one began, how long it took.
	Steps []SwitchoverStep `json:"steps"`
	// Error is why it was rolled back (or failed after the promotion).
	Error     string `json:"error,omitempty"`
	Recovered bool   `json:"recovered,omitempty"`
}

// SwitchoverStep is one step of a switchover.
type SwitchoverStep struct {
	Step string        `json:"step"`
	At   time.Duration `json:"at_ns"`
	// Took is how long until the next step began; 0 for the step now.
	Took time.Duration `json:"took_ns,omitempty"`
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
