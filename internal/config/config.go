// Package config reads handoff's one YAML file. Every key has a default;
// an unknown key or a bad value is an error that names the key and its line.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Config is the whole of handoff.yaml after defaults are applied.
type Config struct {
	// Listen are the gateway's listening addresses.
	Listen []string `yaml:"listen"`
	// Socket is the control API's unix socket (mode 0600).
	Socket string `yaml:"socket"`
	// Admin is the token-guarded HTTP listener: dashboard, /api/, /metrics.
	Admin Admin `yaml:"admin"`
	// State is the state store: a SQLite file path, or a postgres:// URL.
	State string `yaml:"state"`
	// Logs is the directory that holds each instance's log file.
	Logs string `yaml:"logs"`
	// AccessLog writes one structured log line per proxied request.
	AccessLog bool `yaml:"access_log"`
	// Database is the application's database, which migrations change.
	Database Database `yaml:"database"`
	// Gateway tunes the data path.
	Gateway Gateway `yaml:"gateway"`
	// ReadOnly and Maintenance are defaults for every app's modes.
	ReadOnly    ReadOnly    `yaml:"readonly"`
	Maintenance Maintenance `yaml:"maintenance"`
	// Hold bounds what a paused gateway keeps waiting, over all apps.
	Hold Hold `yaml:"hold"`
	// Apps are the applications handoff manages, in file order.
	Apps Apps `yaml:"apps"`
	// Databases are the database endpoints handoff fronts (databases.go).
	Databases Databases `yaml:"databases"`
	// Node names this handoff among the nodes sharing a Postgres state
	// (fleet.go); Fleet says how they roll a deploy and tell the load balancer.
	Node  string `yaml:"node"`
	Fleet Fleet  `yaml:"fleet"`

	// Path is the file the config was read from ("" for defaults).
	Path string `yaml:"-"`
}

// Admin configures the admin listener. It is off unless Listen is set.
type Admin struct {
	Listen    string `yaml:"listen"`
	TokenFile string `yaml:"token_file"`
}

// Database is the application database that `handoff migrate` changes.
type Database struct {
	URL         string   `yaml:"url"`
	Migrations  string   `yaml:"migrations"`
	LockTimeout Duration `yaml:"lock_timeout"`
	// Backfill is the default throttle of backfills; a migration's marker
	// options and the command line override it.
	Backfill Backfill `yaml:"backfill"`
	// Soak is how long a release pipeline waits, once every instance runs a
	// release with the migration, before it runs the contract phase.
	Soak Duration `yaml:"soak"`
	// Escalate bounds how long a DDL statement that keeps losing its lock
	// to live traffic may hold new requests at the gateway to take it
	// (docs/migrations.md); off never holds them.
	Escalate Escalate `yaml:"escalate"`
}

// Escalate is the bound of a DDL statement's hold on new requests, or off (0).
type Escalate Duration

// maxEscalate caps the hold: longer is a pause, which an operator takes
// with 'handoff pause'.
const maxEscalate = 10 * time.Second

// D returns the bound; 0 is off.
func (e Escalate) D() time.Duration { return time.Duration(e) }

func (e *Escalate) parse(s string) error {
	if s == "off" {
		*e = 0
		return nil
	}
	var d Duration
	if err := d.parse(s); err != nil {
		return fmt.Errorf("want a duration such as 500ms, or off, got %q", s)
	}
	if d.D() > maxEscalate {
		return fmt.Errorf("at most %s (a longer hold is a pause: 'handoff pause'), got %q", maxEscalate, s)
	}
	*e = Escalate(d)
	return nil
}

// Backfill tunes batched data changes (see docs/migrations.md).
type Backfill struct {
	// Batch is the first batch's size in rows.
	Batch int `yaml:"batch"`
	// BatchTime is the batch duration the size adapts to; 0 keeps Batch.
	BatchTime Duration `yaml:"batch_time"`
	// Throttle is adaptive (the default: full speed while nothing
	// suffers), fixed (the duty cycle Duty) or off.
	Throttle string `yaml:"throttle"`
	// Duty is the fixed throttle's percentage of time spent in batches,
	// the rest resting (25 when unset). Given without throttle, it
	// selects the fixed throttle, as it did before there was another.
	Duty int `yaml:"duty"`
	// Rate caps rows per second; 0 is no cap.
	Rate int `yaml:"rate"`
	// MaxLag pauses while a Postgres replica lags more; 0 ignores lag.
	MaxLag Duration `yaml:"max_lag"`
	// Workers run disjoint key ranges in parallel; the adaptive throttle
	// runs from one to this many at a time. 0: 2 adaptive, else 1.
	Workers int `yaml:"workers"`
	// Retries bounds the attempts at a conflicting batch before the run stops.
	Retries int `yaml:"retries"`
}

func (b Backfill) validate(bad func(key, format string, args ...any)) {
	switch b.Throttle {
	case "", "adaptive", "fixed", "off":
	default:
		bad("database.backfill.throttle", "want adaptive, fixed or off, got %q", b.Throttle)
	}
	if b.Duty < 0 || b.Duty > 100 {
		bad("database.backfill.duty", "want a percentage from 1 to 100, got %d", b.Duty)
	}
	if b.Batch < 1 {
		bad("database.backfill.batch", "must be at least 1")
	}
	if b.Retries < 0 {
		bad("database.backfill.retries", "must not be negative")
	}
	if b.Workers < 0 {
		bad("database.backfill.workers", "must not be negative (0: the throttle's choice)")
	}
}

// Gateway tunes client connections.
type Gateway struct {
	// IdleTimeout closes a client's keep-alive connection after this long idle.
	IdleTimeout Duration `yaml:"idle_timeout"`
	// MaxHeaderBytes bounds a request's header block.
	MaxHeaderBytes ByteSize `yaml:"max_header_bytes"`
	// RetryBuffer is how much of a request body is kept so that the request
	// can be retried on another instance if its first one fails before
	// answering. Bodies beyond it are streamed and not retried.
	RetryBuffer ByteSize `yaml:"retry_buffer"`
	// HeaderTimeout bounds reading a request head.
	HeaderTimeout Duration `yaml:"header_timeout"`
	// BodyTimeout bounds the wait for each read of a request body: a body
	// that stops coming gets 408.
	BodyTimeout Duration `yaml:"body_timeout"`
	// ResponseTimeout bounds the wait for an instance's response head: an
	// instance that says nothing gets the request 504.
	ResponseTimeout Duration `yaml:"response_timeout"`
	// MaxConnections caps client connections; 0 derives it from the
	// descriptor limit. One over the cap gets 503 and Retry-After.
	MaxConnections int `yaml:"max_connections"`
}

// ReadOnly configures read-only mode.
type ReadOnly struct {
	// Allow lists path prefixes that may still write (a login form, say).
	Allow []string `yaml:"allow"`
	// Banner is the default text injected into HTML pages.
	Banner string `yaml:"banner"`
	// WarnAfter makes `status` warn when read-only has been on this long.
	WarnAfter Duration `yaml:"warn_after"`
	// RetryAfter is sent with refused writes.
	RetryAfter Duration `yaml:"retry_after"`
}

// Maintenance configures maintenance mode.
type Maintenance struct {
	// Page is an HTML file served instead of the built-in page.
	Page string `yaml:"page"`
	// RetryAfter is the default Retry-After of the maintenance page.
	RetryAfter Duration `yaml:"retry_after"`
}

// Hold bounds the requests a paused gateway holds.
type Hold struct {
	MaxRequests int      `yaml:"max_requests"`
	MaxBytes    ByteSize `yaml:"max_bytes"`
}

// Kind is what an app does: serve HTTP, or run jobs.
type Kind string

// The kinds of app.
const (
	KindHTTP   Kind = "http"
	KindWorker Kind = "worker"
	KindTCP    Kind = "tcp"
)

// App is one application.
type App struct {
	Name string `yaml:"-"`
	Kind Kind   `yaml:"kind"`
	// Listen are a tcp app's own listening addresses (tcp.go).
	Listen []string `yaml:"listen"`
	// Hosts route requests by Host header; an http app without hosts is the default.
	Hosts []string `yaml:"hosts"`
	// Targets are external instances (host:port) served until a deploy says otherwise.
	Targets []string `yaml:"targets"`
	// Command starts one supervised instance in the release directory.
	Command []string          `yaml:"command"`
	Env     map[string]string `yaml:"env"`
	// ReleaseCommand is the app's own one-off command for a release (its
	// migrator): run once per release, in its directory with the app's
	// environment, before any instance of it starts.
	ReleaseCommand []string `yaml:"release_command"`
	// ReleaseTimeout bounds the release command.
	ReleaseTimeout Duration `yaml:"release_timeout"`
	// Releases is the directory that holds one directory per release.
	Releases     string `yaml:"releases"`
	KeepReleases int    `yaml:"keep_releases"`
	Instances    int    `yaml:"instances"`
	// Bricks groups instances for rolling deploys; 0 means one brick per instance.
	Bricks int    `yaml:"bricks"`
	Health Health `yaml:"health"`
	// StartTimeout bounds how long new instances may take to become healthy.
	StartTimeout Duration `yaml:"start_timeout"`
	DrainTimeout Duration `yaml:"drain_timeout"`
	HoldMax      Duration `yaml:"hold_max"`
	// Stop is how an HTTP instance is stopped once drained.
	Stop Signal `yaml:"stop"`
	// Drain is how a worker is asked to finish its jobs and exit.
	Drain Signal `yaml:"drain"`
	// UsesDatabase says contract phases wait for this app's old releases.
	UsesDatabase bool        `yaml:"uses_database"`
	ReadOnly     ReadOnly    `yaml:"readonly"`
	Maintenance  Maintenance `yaml:"maintenance"`
	// Canary, with steps, makes a canary deploy judge the new release by
	// its own numbers against the old one's and promote or roll back by
	// itself.
	Canary Canary `yaml:"canary"`
}

// Canary is a canary deploy's analysis: the share of new clients at each
// step, how long each step lasts, and how much worse than the old release
// the new one may be.
type Canary struct {
	// Steps are the percents of new clients the new release gets, in
	// order (10, 50); after the last, it is promoted. None: a canary waits
	// for --promote or a rollback.
	Steps []int `yaml:"steps"`
	// Bricks judges each brick of a rolling deploy the same way, against
	// the old release's instances over the same time, before the next
	// brick goes.
	Bricks bool `yaml:"bricks"`
	// Interval is the least a step lasts; MinRequests the least the new
	// release must answer in it; MaxWait ends a step that cannot get that
	// many (a failure: too little traffic to judge).
	Interval    Duration `yaml:"interval"`
	MinRequests int      `yaml:"min_requests"`
	MaxWait     Duration `yaml:"max_wait"`
	// Thresholds, relative to the old release over the same time: the new
	// one fails when its 5xx share exceeds Max5xx × the old one's + 1
	// point, its redirect share MaxRedirects × + 5 points, or its p99
	// MaxP99 × + 50 ms.
	Max5xx       float64 `yaml:"max_5xx"`
	MaxRedirects float64 `yaml:"max_redirects"`
	MaxP99       float64 `yaml:"max_p99"`
}

// Health is an app's active health check.
type Health struct {
	Path     string   `yaml:"path"`
	Interval Duration `yaml:"interval"`
	Timeout  Duration `yaml:"timeout"`
	// RestartAfter is how long a supervised instance whose process lives
	// may fail its health check before it is restarted; 0 never restarts.
	RestartAfter Duration `yaml:"restart_after"`
	// Send and Expect are a tcp app's check beyond the connect: sent once
	// connected, and what the answer's first bytes must be (an ssh
	// server's "SSH-"). Both empty: a connect is the check (tcp.go).
	Send   string `yaml:"send"`
	Expect string `yaml:"expect"`
}

// Signal is a signal and how long to wait after it before SIGKILL.
type Signal struct {
	Signal  string   `yaml:"signal"`
	Timeout Duration `yaml:"timeout"`
}

// Apps keeps apps in the order the file gives them.
type Apps []*App

// Get returns the named app, or nil.
func (a Apps) Get(name string) *App {
	for _, app := range a {
		if app.Name == name {
			return app
		}
	}
	return nil
}

// Names lists the apps' names in order.
func (a Apps) Names() []string {
	names := make([]string, len(a))
	for i, app := range a {
		names[i] = app.Name
	}
	return names
}

// Default returns a config with every default filled in and no apps.
func Default() *Config {
	return &Config{
		Listen:    []string{"127.0.0.1:8080"},
		Socket:    "./handoff.sock",
		Admin:     Admin{TokenFile: "./admin.token"},
		State:     "./handoff.db",
		Logs:      "./logs",
		AccessLog: true,
		Database: Database{Migrations: "./migrations", LockTimeout: Duration(100 * time.Millisecond), Escalate: Escalate(500 * time.Millisecond),
			Backfill: Backfill{Batch: 1000, BatchTime: Duration(40 * time.Millisecond),
				MaxLag: Duration(10 * time.Second), Retries: 50}},
		Gateway: Gateway{
			IdleTimeout:    Duration(60 * time.Second),
			MaxHeaderBytes: 64 << 10,
			RetryBuffer:    64 << 10,
			// nginx's client_header_timeout and client_body_timeout are 60 s;
			// a head comes in one packet from any real client.
			HeaderTimeout: Duration(10 * time.Second),
			BodyTimeout:   Duration(60 * time.Second),
			// Twice nginx's proxy_read_timeout: a slow report page should
			// not be cut by the gateway before the app gives up on it.
			ResponseTimeout: Duration(120 * time.Second),
		},
		ReadOnly: ReadOnly{
			Banner:     "This site is in read-only mode for a short upgrade. You can browse, but changes are paused.",
			WarnAfter:  Duration(time.Hour),
			RetryAfter: Duration(60 * time.Second),
		},
		Maintenance: Maintenance{RetryAfter: Duration(60 * time.Second)},
		Hold:        Hold{MaxRequests: 10000, MaxBytes: 64 << 20},
		Fleet:       defaultFleet(),
	}
}

func defaultApp(name string) *App {
	return &App{
		Name:           name,
		Kind:           KindHTTP,
		Releases:       "./releases",
		KeepReleases:   5,
		Instances:      1,
		Health:         Health{Path: "/", Interval: Duration(time.Second), Timeout: Duration(2 * time.Second), RestartAfter: Duration(30 * time.Second)},
		StartTimeout:   Duration(60 * time.Second),
		ReleaseTimeout: Duration(10 * time.Minute),
		DrainTimeout:   Duration(30 * time.Second),
		HoldMax:        Duration(30 * time.Second),
		Stop:           Signal{Signal: "SIGTERM", Timeout: Duration(10 * time.Second)},
		Drain:          Signal{Signal: "SIGTERM", Timeout: Duration(2 * time.Hour)},
		UsesDatabase:   true,
		Canary: Canary{Interval: Duration(30 * time.Second), MinRequests: 50, MaxWait: Duration(5 * time.Minute),
			Max5xx: 2, MaxRedirects: 2, MaxP99: 2},
	}
}

// Load reads and validates the config file at path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	// Absolute, so that two installations side by side never share a
	// path (the node's identity, the socket) because both wrote "./".
	dir, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg.resolvePaths(dir)
	return cfg, nil
}

// resolvePaths makes relative paths relative to the config file's directory,
// so `handoff serve --config /etc/handoff/handoff.yaml` works from anywhere.
func (c *Config) resolvePaths(dir string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) && !isURL(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
	abs(&c.Socket)
	abs(&c.Admin.TokenFile)
	abs(&c.State)
	abs(&c.Logs)
	abs(&c.Database.Migrations)
	abs(&c.Maintenance.Page)
	for _, app := range c.Apps {
		abs(&app.Releases)
		abs(&app.Maintenance.Page)
	}
}

func isURL(s string) bool {
	for _, p := range []string{"postgres://", "postgresql://", "sqlite://", "file:"} {
		if len(s) >= len(p) && s[:len(p)] == p {
			return true
		}
	}
	return false
}

// BrickOf returns the brick (0-based) that instance i of app belongs to.
func (a *App) BrickOf(i int) int {
	return i * a.BrickCount() / a.Instances
}

// IndexesOf lists the instance slots in brick b.
func (a *App) IndexesOf(b int) []int {
	var out []int
	for i := range a.Instances {
		if a.BrickOf(i) == b {
			out = append(out, i)
		}
	}
	return out
}

// BrickCount is the number of bricks, never more than the instances.
func (a *App) BrickCount() int {
	if a.Bricks <= 0 || a.Bricks > a.Instances {
		return a.Instances
	}
	return a.Bricks
}

// Supervised reports whether handoff runs this app's processes itself.
func (a *App) Supervised() bool { return len(a.Command) > 0 }
