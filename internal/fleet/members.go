package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// schema is the fleet's own tables. Every time is Postgres's now(), never
// a node's clock: whether a node is lost or a lease expired is judged by
// one clock however far the hosts' clocks drift.
var schema = []string{
	// IF NOT EXISTS alone races with another node creating the same table.
	`SELECT pg_advisory_xact_lock(hashtext('handoff: fleet tables'))`,
	`CREATE TABLE IF NOT EXISTS handoff_fleet_nodes (
		name text PRIMARY KEY, host text NOT NULL, instance text NOT NULL, pid int NOT NULL,
		started timestamptz NOT NULL, heartbeat timestamptz NOT NULL,
		drain text NOT NULL DEFAULT 'ready', report jsonb NOT NULL DEFAULT '{}')`,
	`CREATE TABLE IF NOT EXISTS handoff_fleet_commands (
		id bigserial PRIMARY KEY, kind text NOT NULL, target text NOT NULL,
		args jsonb, by_node text NOT NULL, at timestamptz NOT NULL DEFAULT now())`,
	`CREATE TABLE IF NOT EXISTS handoff_fleet_acks (
		command bigint NOT NULL REFERENCES handoff_fleet_commands ON DELETE CASCADE,
		node text NOT NULL, error text NOT NULL DEFAULT '', at timestamptz NOT NULL DEFAULT now(),
		PRIMARY KEY (command, node))`,
	`CREATE TABLE IF NOT EXISTS handoff_fleet_leases (
		name text PRIMARY KEY, holder text NOT NULL, token bigint NOT NULL, expires timestamptz NOT NULL)`,
	// An operation's plan and progress, written by its leader under its
	// lease (operations.go), so that another node can take it over.
	`CREATE TABLE IF NOT EXISTS handoff_fleet_operations (
		name text PRIMARY KEY, state jsonb NOT NULL, token bigint NOT NULL, updated timestamptz NOT NULL DEFAULT now())`,
}

func (f *Fleet) createTables(ctx context.Context) error {
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("fleet: create tables: %w", err)
	}
	defer tx.Rollback(ctx)
	for _, stmt := range schema {
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("fleet: create tables: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("fleet: create tables: %w", err)
	}
	return nil
}

// Node is one node as the fleet sees it.
type Node struct {
	Name      string    `json:"name"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Started   time.Time `json:"started"`
	Heartbeat time.Time `json:"heartbeat"`
	// Since is how long ago its last heartbeat was, by the database's clock.
	Since time.Duration `json:"since_heartbeat_ns"`
	// Lost is true once it has been silent longer than fleet.lost_after.
	Lost bool `json:"lost"`
	// Report carries its drain state: what it was told (ready, draining,
	// maint) or, once its traffic stopped, drained.
	Report
	Self bool `json:"self,omitempty"`
}

// join registers this node, or takes its row over from an earlier process
// of the same name on this host (a restart, a `handoff upgrade`).
func (f *Fleet) join(ctx context.Context, first bool) error {
	var host string
	var since time.Duration
	err := f.pool.QueryRow(ctx, `SELECT host, now() - heartbeat FROM handoff_fleet_nodes WHERE name = $1`, f.opts.Node).Scan(&host, &since)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("fleet: join as %s: %w", f.opts.Node, err)
	case host != f.opts.Host && since < f.opts.LostAfter:
		return fmt.Errorf("fleet: node %s is live on host %s (heartbeat %s ago): give this node another name with node: in its config", f.opts.Node, host, since.Round(time.Millisecond))
	}
	rep, err := json.Marshal(f.opts.Report())
	if err != nil {
		return fmt.Errorf("fleet: join: %w", err)
	}
	// The drain state is kept across restarts: a host drained at the load
	// balancer stays out of rotation until it is told to be ready.
	// A later process of this node (the successor of a `handoff upgrade`)
	// takes the row over; an earlier one that finds its row taken does not
	// take it back, it only puts back a row that was forgotten.
	upsert := ` ON CONFLICT (name) DO UPDATE SET host = $2, instance = $3, pid = $4, started = now(), heartbeat = now()`
	if !first {
		upsert = ` ON CONFLICT (name) DO NOTHING`
	}
	_, err = f.pool.Exec(ctx, `INSERT INTO handoff_fleet_nodes (name, host, instance, pid, started, heartbeat, report)
		VALUES ($1, $2, $3, $4, now(), now(), $5)`+upsert,
		f.opts.Node, f.opts.Host, f.instance, os.Getpid(), rep)
	if err != nil {
		return fmt.Errorf("fleet: join as %s: %w", f.opts.Node, err)
	}
	if !first {
		return nil
	}
	var drain string
	if err := f.pool.QueryRow(ctx, `SELECT drain FROM handoff_fleet_nodes WHERE name = $1`, f.opts.Node).Scan(&drain); err != nil {
		return fmt.Errorf("fleet: join: %w", err)
	}
	f.restored = DrainState(drain)
	// Commands sent before this process started are in the state it
	// restored from; only newer ones are its to apply.
	if err := f.pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM handoff_fleet_commands`).Scan(&f.applied); err != nil {
		return fmt.Errorf("fleet: join: %w", err)
	}
	f.lastBeat = time.Now()
	return nil
}

// Restored is the drain state this node had when it last stopped (ready
// for a new node): a host drained at the load balancer stays out of
// rotation across a restart until it is told to be ready.
func (f *Fleet) Restored() DrainState { return f.restored }

// monitorHeartbeat writes the heartbeat every interval and, as the
// fallback for a missed notification, looks for commands.
func (f *Fleet) monitorHeartbeat(ctx context.Context) {
	t := time.NewTimer(f.opts.Heartbeat)
	defer t.Stop()
	beats := 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.heartbeat(ctx)
		f.poke()
		if beats++; beats%pruneEvery == 0 {
			f.prune(ctx)
		}
		t.Reset(f.opts.Heartbeat)
	}
}

// Commands (and their acknowledgements) are kept for a day, then pruned
// by every node every pruneEvery heartbeats: a node reads only the
// commands sent since it started, and a node that takes an operation over
// waits at most one host's deploy for an acknowledgement.
const (
	commandsKept = 24 * time.Hour
	pruneEvery   = 600
)

func (f *Fleet) prune(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, f.opts.LostAfter/2)
	defer cancel()
	_, err := f.pool.Exec(qctx, `DELETE FROM handoff_fleet_commands WHERE at < now() - $1::interval`, commandsKept)
	if err != nil && ctx.Err() == nil {
		f.log.Debug("fleet: prune old commands", "error", err)
	}
	return err
}

func (f *Fleet) heartbeat(ctx context.Context) error {
	rep := f.opts.Report()
	body, err := json.Marshal(rep)
	if err == nil {
		// A heartbeat that cannot be written in half of lost_after is as
		// good as missed; the next one tries afresh.
		qctx, cancel := context.WithTimeout(ctx, f.opts.LostAfter/2)
		var tag int64
		err = f.pool.QueryRow(qctx, `UPDATE handoff_fleet_nodes SET heartbeat = now(), report = $3,
			drain = $4
			WHERE name = $1 AND instance = $2 RETURNING 1`, f.opts.Node, f.instance, body, string(rep.Drain)).Scan(&tag)
		cancel()
		if errors.Is(err, pgx.ErrNoRows) {
			// Forgotten while away: join again. Taken over by a newer
			// process of this node: leave the row to it.
			err = f.join(ctx, false)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil && ctx.Err() != nil {
		return err // stopping
	}
	if err != nil {
		if f.beatErr == nil {
			f.log.Warn("fleet: heartbeat failed; this node keeps serving and shows as lost to the others until it is back", "node", f.opts.Node, "error", err)
		}
		f.beatErr = err
		return err
	}
	if f.beatErr != nil {
		f.log.Info("fleet: heartbeat written again", "node", f.opts.Node, "silent_for", time.Since(f.lastBeat).Round(time.Millisecond))
	}
	f.beatErr, f.lastBeat = nil, time.Now()
	return nil
}

// Nodes lists every node, lost ones included, by name.
func (f *Fleet) Nodes(ctx context.Context) ([]Node, error) {
	rows, err := f.pool.Query(ctx, `SELECT name, host, pid, started, heartbeat, now() - heartbeat, drain, report
		FROM handoff_fleet_nodes ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("fleet: list nodes: %w", err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		var n Node
		var drain string
		var rep []byte
		if err := rows.Scan(&n.Name, &n.Host, &n.PID, &n.Started, &n.Heartbeat, &n.Since, &drain, &rep); err != nil {
			return nil, fmt.Errorf("fleet: list nodes: %w", err)
		}
		if err := json.Unmarshal(rep, &n.Report); err != nil {
			return nil, fmt.Errorf("fleet: node %s's report: %w", n.Name, err)
		}
		n.Drain = DrainState(drain) // the column, kept across restarts, over an old report's
		n.Lost = n.Since > f.opts.LostAfter
		n.Self = n.Name == f.opts.Node
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("fleet: list nodes: %w", err)
	}
	return out, nil
}

// Forget removes a lost node from the fleet (a host taken out of service).
// A live node is refused: it would only join again at its next heartbeat.
func (f *Fleet) Forget(ctx context.Context, name string) error {
	var since time.Duration
	err := f.pool.QueryRow(ctx, `SELECT now() - heartbeat FROM handoff_fleet_nodes WHERE name = $1`, name).Scan(&since)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("fleet: there is no node %s (the nodes: %s)", name, f.names(ctx))
	}
	if err != nil {
		return fmt.Errorf("fleet: forget %s: %w", name, err)
	}
	if since <= f.opts.LostAfter {
		return fmt.Errorf("fleet: node %s is live (heartbeat %s ago): stop its handoff first", name, since.Round(time.Millisecond))
	}
	if _, err := f.pool.Exec(ctx, `DELETE FROM handoff_fleet_nodes WHERE name = $1 AND now() - heartbeat > $2`, name, f.opts.LostAfter); err != nil {
		return fmt.Errorf("fleet: forget %s: %w", name, err)
	}
	return nil
}

func (f *Fleet) names(ctx context.Context) string {
	nodes, err := f.Nodes(ctx)
	if err != nil {
		return "unknown"
	}
	var names []string
	for _, n := range nodes {
		names = append(names, n.Name)
	}
	return strings.Join(names, ", ")
}

func joinNames(names []string) string {
	s := slices.Clone(names)
	slices.Sort(s)
	return strings.Join(s, ", ")
}

func sortedKeys(m map[string]string) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
