// Package control is handoff's control API: JSON over HTTP, served on the
// unix socket (file mode 0600) and on the token-guarded admin listener, and
// the client the CLI uses. Each CLI command's flags are one request here.
package control

import (
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/fleet"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/store"
	"github.com/handoff-dev/handoff/internal/supervisor"
	"github.com/handoff-dev/handoff/internal/tcpproxy"
)

// Status is the answer to GET /api/status.
type Status struct {
	// PID is the handoff server's process (it changes with each upgrade).
	PID  int         `json:"pid"`
	Apps []AppStatus `json:"apps"`
	// Migrations are the database's migrations, when database: is configured.
	Migrations []Migration `json:"migrations,omitempty"`
	// MigrationDirs are where those migrations are: the config's directory
	// and the current releases' own (what `handoff migrate` uses by default).
	MigrationDirs []string `json:"migration_dirs,omitempty"`
	Warnings      []string `json:"warnings,omitempty"`
	// Node is this node's name and Nodes every node, when the state is
	// shared by a fleet (docs/fleet.md).
	Node  string       `json:"node,omitempty"`
	Nodes []fleet.Node `json:"nodes,omitempty"`
}

// AppStatus is one app: the gateway's view plus its releases, deploy and
// supervised instances.
type AppStatus struct {
	gateway.AppStatus
	Current   string                `json:"current,omitempty"`
	Previous  string                `json:"previous,omitempty"`
	Deploy    *deploy.Deploy        `json:"deploy,omitempty"` // the deploy in progress, or the last one
	Instances []supervisor.Instance `json:"instances,omitempty"`
	// Releases are the releases that served through this handoff process,
	// side by side, by their own numbers.
	Releases []ReleaseHealth `json:"releases,omitempty"`
	// TCP is a tcp app's listeners and connection counts.
	TCP *tcpproxy.Stats `json:"tcp,omitempty"`
}

// ReleaseHealth is what the gateway saw of one release's answers since
// this handoff process began to route to it.
type ReleaseHealth struct {
	Release  string  `json:"release"`
	Requests int64   `json:"requests"`
	Share2xx float64 `json:"share_2xx"`
	Share3xx float64 `json:"share_3xx"` // redirects: a release that sends everyone to a login page shows here
	Share4xx float64 `json:"share_4xx"`
	Share5xx float64 `json:"share_5xx"`
	// Failed counts requests its instances failed (the gateway answered
	// 502/504), also in Share5xx.
	Failed int64   `json:"failed"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
}

// HealthOf summarizes a release's counters.
func HealthOf(c gateway.ReleaseCounts) ReleaseHealth {
	return ReleaseHealth{Release: c.Release, Requests: c.Requests(), Share2xx: c.Share(2), Share3xx: c.Share(3),
		Share4xx: c.Share(4), Share5xx: c.Share(5), Failed: c.Failed,
		P50Ms: float64(c.Quantile(0.5).Microseconds()) / 1000, P99Ms: float64(c.Quantile(0.99).Microseconds()) / 1000}
}

// Migration is one migration's state, for status and the dashboard.
type Migration struct {
	// ID is the file's name without .sql, e.g. 0007_title_lower.
	ID     string  `json:"id"`
	Phases []Phase `json:"phases"`
	// Backfill is the progress of its backfill, when it has one.
	Backfill *Backfill `json:"backfill,omitempty"`
	// WaitingFor lists what keeps its contract phase from running: the
	// instances and workers still on a release without this migration.
	WaitingFor []string `json:"waiting_for,omitempty"`
}

// Phase is one phase of a migration: expand, backfill or contract.
type Phase struct {
	Name     string    `json:"name"`
	State    string    `json:"state"` // pending, running, done, failed
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	Error    string    `json:"error,omitempty"`
}

// Backfill is a backfill's progress.
type Backfill struct {
	State      string  `json:"state"` // running, paused, done, failed, cancelled
	Rows       int64   `json:"rows"`
	Total      int64   `json:"total"`
	RowsPerSec float64 `json:"rows_per_sec"`
	ETASeconds float64 `json:"eta_seconds"`
}

// Releases is the answer to GET /api/releases.
type Releases struct {
	Releases []Release `json:"releases"`
}

// Release is one recorded release, its state, and every process still
// running from it.
type Release struct {
	deploy.ReleaseRecord
	// State is current, previous, draining (processes still run from it),
	// or unused.
	State     string                `json:"state"`
	Processes []supervisor.Instance `json:"processes"`
}

// ModeRequest switches a mode on or off, for one app or (App "") all apps.
// It is the body of POST /api/readonly, /api/maintenance, /api/pause and
// /api/resume.
type ModeRequest struct {
	App        string          `json:"app,omitempty"`
	On         bool            `json:"on"`
	Banner     string          `json:"banner,omitempty"`
	For        config.Duration `json:"for,omitempty"`         // readonly: switch off after this long
	RetryAfter config.Duration `json:"retry_after,omitempty"` // maintenance
	Max        config.Duration `json:"max,omitempty"`         // pause: hold each request at most this long
	Actor      string          `json:"actor,omitempty"`
}

// RollbackRequest is the body of POST /api/rollback.
type RollbackRequest struct {
	App   string `json:"app"`
	Actor string `json:"actor,omitempty"`
	// Strategy is how the previous release goes back: empty means as the
	// app deploys (rolling when it has several bricks), like any deploy.
	Strategy deploy.Strategy `json:"strategy,omitempty"`
	// Force rolls back past a release whose release command ran.
	Force bool `json:"force,omitempty"`
}

// DeployRequest is the body of POST /api/deploy.
type DeployRequest = deploy.Request

// Events is the answer to GET /api/events.
type Events struct {
	Events []store.Event `json:"events"`
}

// Error is the body of every error answer.
type Error struct {
	Error string `json:"error"`
}

// Line is one line of a streamed answer (application/x-ndjson): progress
// lines, then one line with the result or the error.
type Line struct {
	Progress *deploy.Progress `json:"progress,omitempty"`
	Deploy   *deploy.Deploy   `json:"deploy,omitempty"`
	Error    string           `json:"error,omitempty"`
	// Interrupted: the server stopped or handed over mid-deploy; the next
	// server process finishes the deploy (see InterruptedError).
	Interrupted bool `json:"interrupted,omitempty"`
}

// InterruptedError is a deploy the answering process could not finish: it
// stopped, or handed over to a new process that finishes it.
type InterruptedError struct {
	Deploy *deploy.Deploy
	Msg    string
}

func (e *InterruptedError) Error() string { return e.Msg }

// Upgrade is the answer to POST /api/upgrade.
type Upgrade struct {
	OldPID int    `json:"old_pid"`
	NewPID int    `json:"new_pid"`
	Binary string `json:"binary"`
}
