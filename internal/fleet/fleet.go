// Package fleet lets the handoff nodes that share one Postgres state know
// each other and act together: membership by heartbeats (a silent node is
// lost, shown, never dropped), fleet-wide commands that every live node
// acknowledges (LISTEN/NOTIFY, with polling as the fallback), and leases
// with fencing tokens for the operations one node leads. Its tables live in
// the shared database beside the store's (docs/fleet.md).
package fleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Options configure one node's membership.
type Options struct {
	// DSN is the shared Postgres state (the config's state:).
	DSN string
	// Node is this node's name (the config's node:, else the host's name).
	Node string
	// Host names the machine, so that a second node that takes a live
	// node's name from elsewhere is refused.
	Host string
	// Heartbeat, LostAfter, AckTimeout and Lease are the fleet: keys.
	Heartbeat, LostAfter, AckTimeout, Lease time.Duration
	Logger                                  *slog.Logger
	// Apply carries out a command sent to this node by another; it is
	// called from one goroutine, one command at a time. Its error is
	// returned to the sender, naming this node.
	Apply func(ctx context.Context, c Command) error
	// Report is what this node says of itself at each heartbeat.
	Report func() Report

	// noListen leaves LISTEN off, so that tests see polling alone.
	noListen bool
}

// Report is what a node publishes about itself with each heartbeat.
type Report struct {
	// Gateway are its gateway's addresses; Agent its agent-check port.
	Gateway []string `json:"gateway,omitempty"`
	Agent   string   `json:"agent,omitempty"`
	// Drain is where the node stands at the load balancer.
	Drain DrainState `json:"drain"`
	// Releases are, per app, the releases its gateway routes to.
	Releases map[string][]string `json:"releases,omitempty"`
	// Running are the releases its instances run of the apps that use the
	// database, with the migrations each carries: what a contract phase
	// on any node waits for. RunningReported is false from a node that
	// does not report them (then a contract waits for it, naming it).
	Running         []Running `json:"running,omitempty"`
	RunningReported bool      `json:"running_reported,omitempty"`
	// Instances are, per app and release, how many instances the node's
	// supervisor runs (starting, running or draining): what the fleet's
	// view shows of each host.
	Instances map[string]map[string]int `json:"instances,omitempty"`
}

// ReleasesOf writes the releases the node routes app to as "v42", or
// "v42+v41" during a rollout there, each with the number of instances the
// node runs of it, if it runs any: "v42 ×4+v41 ×1".
func (r Report) ReleasesOf(app string) string {
	out := make([]string, len(r.Releases[app]))
	for i, rel := range r.Releases[app] {
		out[i] = rel
		if n := r.Instances[app][rel]; n > 0 {
			out[i] += fmt.Sprintf(" ×%d", n)
		}
	}
	return strings.Join(out, "+")
}

// Running is one release a node runs of an app that uses the database.
type Running struct {
	App       string `json:"app"`
	Release   string `json:"release"`
	Instances int    `json:"instances,omitempty"`
	// Migrations are those the release carries; Known is false when the
	// node has no record of the release (then it counts as carrying none).
	Migrations []string `json:"migrations,omitempty"`
	Known      bool     `json:"known"`
}

// DrainState is a node's place at the load balancer.
type DrainState string

// The drain states. Draining turns Drained once the node's gateway has
// seen no request for a while and has none in flight.
const (
	Ready    DrainState = "ready"
	Draining DrainState = "draining"
	Drained  DrainState = "drained"
	Maint    DrainState = "maint"
)

// Fleet is this node's membership. Open starts its heartbeat and command
// loops; Close stops them.
type Fleet struct {
	opts     Options
	log      *slog.Logger
	pool     *pgxpool.Pool
	instance string // this process, among processes that used the name before
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	wake     chan struct{} // a notification came: read the commands now

	mu       sync.Mutex
	lastBeat time.Time // when this node's last heartbeat was written
	beatErr  error     // why the last heartbeat failed, if it did
	applied  int64     // the last command ID this node has seen
	restored DrainState
}

// Open creates the fleet's tables if needed, registers this node and
// writes its first heartbeat. A node of the same name that is live on
// another host is refused: two nodes under one name would answer for each
// other.
func Open(ctx context.Context, opts Options) (*Fleet, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Report == nil {
		opts.Report = func() Report { return Report{Drain: Ready} }
	}
	if opts.Apply == nil {
		opts.Apply = func(context.Context, Command) error { return nil }
	}
	cfg, err := pgxpool.ParseConfig(opts.DSN)
	if err != nil {
		return nil, fmt.Errorf("fleet: read the state URL: %w", err)
	}
	// A node cut off from the database must not pile up connections or
	// wait minutes for one; each query has its own deadline too.
	cfg.MaxConns = 4
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("fleet: connect: %w", err)
	}
	f := &Fleet{opts: opts, log: opts.Logger, pool: pool, instance: randomID(), wake: make(chan struct{}, 1)}
	if err := f.createTables(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	if err := f.join(ctx, true); err != nil {
		pool.Close()
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	f.cancel = cancel
	f.wg.Add(2)
	go func() { defer f.wg.Done(); f.monitorHeartbeat(lctx) }()
	go func() { defer f.wg.Done(); f.monitorCommands(lctx) }()
	if !opts.noListen {
		f.wg.Add(1)
		go func() { defer f.wg.Done(); f.monitorNotifications(lctx) }()
	}
	return f, nil
}

// Close stops the loops. The node's row stays: a node that stops is shown
// as lost until it comes back or is forgotten, never silently dropped.
func (f *Fleet) Close() error {
	f.cancel()
	f.wg.Wait()
	f.pool.Close()
	return nil
}

// Name is this node's name.
func (f *Fleet) Name() string { return f.opts.Node }

// Beat writes a heartbeat now, so that a change of this node's report
// (a drain finished) is seen before the next interval.
func (f *Fleet) Beat(ctx context.Context) error { return f.heartbeat(ctx) }

// Health says when this node last wrote its heartbeat, and why the latest
// attempt failed if it did: a node that cannot reach the state keeps
// serving, and says so.
func (f *Fleet) Health() (last time.Time, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastBeat, f.beatErr
}

func randomID() string {
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// HostName is the machine's name for Options.Host.
func HostName() string {
	h, err := os.Hostname()
	if err != nil {
		return "unknown"
	}
	return h
}

// LostError is a fleet-wide command refused because nodes are lost.
type LostError struct {
	Nodes []Node
}

func (e *LostError) Error() string {
	msg := "fleet: "
	for i, n := range e.Nodes {
		if i > 0 {
			msg += ", "
		}
		msg += fmt.Sprintf("node %s is lost (last heartbeat %s ago)", n.Name, n.Since.Round(100*time.Millisecond))
	}
	return msg + ": nothing was changed on any node; bring it back, or remove it from the fleet with 'handoff fleet forget NAME'"
}

// AckError is a fleet-wide command that some nodes did not acknowledge in
// time, or failed.
type AckError struct {
	Command Command
	// Missing did not answer within the ack timeout (or before it was
	// lost: Lost); Failed answered with an error (node → error).
	Missing []string
	Lost    []string
	// Restarted are the missing nodes whose handoff started again after
	// the command was sent: the new process does not apply commands older
	// than itself, so no acknowledgement will come from them.
	Restarted []string
	Failed    map[string]string
	Acked     []string
	Timeout   time.Duration
}

func (e *AckError) Error() string {
	msg := "fleet: " + e.Command.Kind
	if len(e.Lost) > 0 {
		msg += fmt.Sprintf(": node %s was lost before it acknowledged (no heartbeat for fleet.lost_after)", joinNames(e.Lost))
	} else if len(e.Restarted) > 0 {
		msg += fmt.Sprintf(": node %s restarted before it acknowledged (its new process does not carry the command on)", joinNames(e.Restarted))
	} else if len(e.Missing) > 0 {
		msg += fmt.Sprintf(": %s did not acknowledge within %s", joinNames(e.Missing), e.Timeout)
	}
	for _, n := range sortedKeys(e.Failed) {
		msg += fmt.Sprintf(": node %s failed: %s", n, e.Failed[n])
	}
	if len(e.Acked) > 0 {
		msg += fmt.Sprintf(" (acknowledged by %s)", joinNames(e.Acked))
	}
	return msg
}

// HeldError is a lease another node holds.
type HeldError struct {
	Name, Holder string
	Expires      time.Duration // from now
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("fleet: %s is led by node %s (its lease runs %s more)", e.Name, e.Holder, e.Expires.Round(100*time.Millisecond))
}

// ErrLeaseLost is returned by a fenced write of a leader whose lease
// expired or was taken over: the write was not made.
var ErrLeaseLost = errors.New("fleet: the lease was lost (expired or taken over by another node): nothing was written")

func decodeArgs(raw []byte) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	return json.RawMessage(raw)
}
