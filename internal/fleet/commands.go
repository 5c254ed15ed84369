package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
)

// channel is the NOTIFY channel that carries new command IDs.
const channel = "handoff_fleet"

// Command is one fleet-wide (or one node's) instruction. Its kind says
// what to do; what it changes is recorded in the shared state before it is
// sent, so a command says "read the state again" rather than carrying it,
// and a node that missed it catches up from the state.
type Command struct {
	ID   int64           `json:"id"`
	Kind string          `json:"kind"`
	Args json.RawMessage `json:"args,omitempty"`
	// Target is the node it is for; empty: every node.
	Target string `json:"target,omitempty"`
	By     string `json:"by"`
}

// Result is a command every target acknowledged.
type Result struct {
	Command Command `json:"command"`
	// Acked are the nodes that applied it (this one included), with the
	// time each took from the send to its acknowledgement.
	Acked map[string]time.Duration `json:"acked"`
	// Slowest is the longest of those times.
	Slowest time.Duration `json:"slowest"`
}

// Send records a command, notifies the nodes and waits until every target
// has acknowledged it, bounded by the ack timeout. If any target is lost
// it is refused before anything is recorded, naming the lost nodes.
//
// appliedHere says the caller has already carried the command out on this
// node (its own change, made under its own locks): this node's
// acknowledgement is recorded with the command.
func (f *Fleet) Send(ctx context.Context, c Command, appliedHere bool) (*Result, error) {
	return f.SendWait(ctx, c, appliedHere, f.opts.AckTimeout)
}

// SendWait is Send with its own bound on the wait for acknowledgements,
// for a command a node acknowledges only when it is done (a deploy on
// that node; see ErrAckLater).
func (f *Fleet) SendWait(ctx context.Context, c Command, appliedHere bool, wait time.Duration) (*Result, error) {
	return f.SendUnder(ctx, nil, c, appliedHere, wait, nil)
}

// SendUnder is SendWait for the leader of an operation: in the one
// transaction that records the command, it checks that lease is still the
// current one and saves the operation's state that state(id) returns
// (which holds the command's ID, so that a node that takes the operation
// over can wait for the same acknowledgement: AwaitAck). A deposed leader
// — paused past its lease, not yet aware of it — sends nothing: the
// command and the state that says it was sent are written together or not
// at all (ErrLeaseLost).
func (f *Fleet) SendUnder(ctx context.Context, lease *Lease, c Command, appliedHere bool, wait time.Duration, state func(id int64) any) (*Result, error) {
	nodes, err := f.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	var targets []string
	var lost []Node
	for _, n := range nodes {
		if c.Target != "" && n.Name != c.Target {
			continue
		}
		if n.Lost {
			lost = append(lost, n)
			continue
		}
		targets = append(targets, n.Name)
	}
	if len(lost) > 0 {
		return nil, &LostError{Nodes: lost}
	}
	if c.Target != "" && len(targets) == 0 {
		return nil, fmt.Errorf("fleet: there is no node %s (the nodes: %s)", c.Target, f.names(ctx))
	}
	c.By = f.opts.Node
	start := time.Now()
	var within func(tx pgx.Tx) error
	if lease != nil {
		within = func(tx pgx.Tx) error {
			if err := lease.check(ctx, tx); err != nil {
				return err
			}
			return lease.save(ctx, tx, state(c.ID))
		}
	}
	if err := f.record(ctx, &c, appliedHere && slices.Contains(targets, f.opts.Node), within); err != nil {
		return nil, err
	}
	return f.awaitAcks(ctx, c, targets, start, wait)
}

// AwaitAck waits, up to wait, for node's acknowledgement of command id,
// sent earlier (by this node or another): a node that takes over an
// operation waits for what its leader had asked.
func (f *Fleet) AwaitAck(ctx context.Context, id int64, kind, node string, wait time.Duration) (*Result, error) {
	return f.awaitAcks(ctx, Command{ID: id, Kind: kind, Target: node}, []string{node}, time.Now(), wait)
}

// CheckLive returns a *LostError if a node that target names (every node
// for "") is lost: a caller checks before it changes anything.
func (f *Fleet) CheckLive(ctx context.Context, target string) error {
	nodes, err := f.Nodes(ctx)
	if err != nil {
		return err
	}
	var lost []Node
	for _, n := range nodes {
		if n.Lost && (target == "" || n.Name == target) {
			lost = append(lost, n)
		}
	}
	if len(lost) > 0 {
		return &LostError{Nodes: lost}
	}
	return nil
}

// record writes the command (and this node's ack) and notifies, in one
// transaction: the notification is delivered at commit, when the row is
// there to be read.
//
// Senders take turns (a transaction-level advisory lock, first thing), so
// that commands commit in the order of their ids: a node reads the
// commands after the last id it applied (applyNew), and a command whose
// id was drawn first but committed after a later one's would be behind
// that mark when it became visible, and never applied.
func (f *Fleet) record(ctx context.Context, c *Command, ackHere bool, within func(tx pgx.Tx) error) error {
	tx, err := f.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("fleet: send %s: %w", c.Kind, err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('handoff: fleet commands'))`); err != nil {
		return fmt.Errorf("fleet: send %s: %w", c.Kind, err)
	}
	var args any
	if len(c.Args) > 0 {
		args = c.Args
	}
	if err := tx.QueryRow(ctx, `INSERT INTO handoff_fleet_commands (kind, target, args, by_node) VALUES ($1, $2, $3, $4) RETURNING id`,
		c.Kind, c.Target, args, c.By).Scan(&c.ID); err != nil {
		return fmt.Errorf("fleet: send %s: %w", c.Kind, err)
	}
	if ackHere {
		if _, err := tx.Exec(ctx, `INSERT INTO handoff_fleet_acks (command, node) VALUES ($1, $2)`, c.ID, f.opts.Node); err != nil {
			return fmt.Errorf("fleet: send %s: %w", c.Kind, err)
		}
	}
	if within != nil {
		if err := within(tx); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, channel, fmt.Sprint(c.ID)); err != nil {
		return fmt.Errorf("fleet: send %s: %w", c.Kind, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("fleet: send %s: %w", c.Kind, err)
	}
	return nil
}

// ackPoll is how often a sender reads the acknowledgements: a tenth of the
// 1 s a fleet-wide mode change is allowed.
const ackPoll = 10 * time.Millisecond

func (f *Fleet) awaitAcks(ctx context.Context, c Command, targets []string, start time.Time, wait time.Duration) (*Result, error) {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	res := &Result{Command: c, Acked: map[string]time.Duration{}}
	failed := map[string]string{}
	var lastLostCheck time.Time
	var restarted []string
	for {
		rows, err := f.pool.Query(ctx, `SELECT a.node, a.error, a.at - c.at FROM handoff_fleet_acks a
			JOIN handoff_fleet_commands c ON c.id = a.command WHERE a.command = $1`, c.ID)
		if err == nil {
			for rows.Next() {
				var node, msg string
				var took time.Duration
				if err := rows.Scan(&node, &msg, &took); err != nil {
					break
				}
				if msg != "" {
					failed[node] = msg
					continue
				}
				// The sender's own wait: the database's clock measures
				// the ack, but what a caller sees is its own.
				if _, ok := res.Acked[node]; !ok {
					res.Acked[node] = max(took, 0)
				}
			}
			rows.Close()
			err = rows.Err()
		}
		var missing []string
		for _, n := range targets {
			if _, ok := res.Acked[n]; !ok && failed[n] == "" {
				missing = append(missing, n)
			}
		}
		if len(missing) == 0 && len(failed) == 0 {
			for _, d := range res.Acked {
				res.Slowest = max(res.Slowest, d)
			}
			return res, nil
		}
		// A target lost while it works (killed, cut off), or restarted
		// since the command was sent, will not answer: a long wait (a
		// deploy) ends as soon as that is known. A restart is believed
		// once the acknowledgements have been read again after it was
		// seen: its process before may have written one as it stopped.
		restarted = slices.DeleteFunc(restarted, func(n string) bool { return !slices.Contains(missing, n) })
		lost, again := f.silentOf(ctx, c.ID, missing, &lastLostCheck)
		if len(again) > 0 && len(restarted) == 0 {
			restarted = again
			continue
		}
		if len(missing) == 0 || ctx.Err() != nil || len(lost) > 0 || len(restarted) > 0 {
			acked := make([]string, 0, len(res.Acked))
			for n := range res.Acked {
				acked = append(acked, n)
			}
			return nil, &AckError{Command: c, Missing: missing, Lost: lost, Restarted: restarted, Failed: failed, Acked: acked, Timeout: wait}
		}
		select {
		case <-ctx.Done():
		case <-time.After(ackPoll):
		}
		_ = err // a failed read is retried until the deadline
	}
}

// silentOf returns those of nodes that are lost, and those whose process
// started after command id was sent (a restart, an upgrade: the new
// process applies only commands newer than itself), looking at most once
// a heartbeat. A restarted node's acknowledgement may still be read: the
// process before it may have written it as it stopped.
func (f *Fleet) silentOf(ctx context.Context, id int64, nodes []string, last *time.Time) (lost, restarted []string) {
	if len(nodes) == 0 || time.Since(*last) < f.opts.Heartbeat {
		return nil, nil
	}
	*last = time.Now()
	all, err := f.Nodes(ctx)
	if err != nil {
		return nil, nil
	}
	for _, n := range all {
		switch {
		case !slices.Contains(nodes, n.Name):
		case n.Lost:
			lost = append(lost, n.Name)
		case f.RestartedSince(ctx, n.Name, id):
			restarted = append(restarted, n.Name)
		}
	}
	return lost, restarted
}

// poke asks the command loop to read the commands now.
func (f *Fleet) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// monitorCommands applies the commands for this node, one at a time, when
// a notification or a heartbeat pokes it.
func (f *Fleet) monitorCommands(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		}
		if err := f.applyNew(ctx); err != nil && ctx.Err() == nil {
			f.log.Debug("fleet: read commands", "error", err)
		}
	}
}

// applyNew applies every command newer than the last one seen that is for
// this node and not yet acknowledged by it, and acknowledges each.
func (f *Fleet) applyNew(ctx context.Context) error {
	qctx, cancel := context.WithTimeout(ctx, max(f.opts.Heartbeat, time.Second))
	defer cancel()
	rows, err := f.pool.Query(qctx, `SELECT c.id, c.kind, c.target, c.args, c.by_node FROM handoff_fleet_commands c
		WHERE c.id > $1 AND c.target IN ('', $2)
		AND NOT EXISTS (SELECT 1 FROM handoff_fleet_acks a WHERE a.command = c.id AND a.node = $2)
		ORDER BY c.id`, f.applied, f.opts.Node)
	if err != nil {
		return err
	}
	cmds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Command, error) {
		var c Command
		var args []byte
		err := r.Scan(&c.ID, &c.Kind, &c.Target, &args, &c.By)
		c.Args = decodeArgs(args)
		return c, err
	})
	if err != nil {
		return err
	}
	for _, c := range cmds {
		msg := ""
		err := f.opts.Apply(ctx, c)
		if errors.Is(err, ErrAckLater) {
			continue
		}
		if err != nil {
			msg = err.Error()
			f.log.Warn("fleet: apply a command", "command", c.ID, "kind", c.Kind, "by", c.By, "error", err)
		}
		actx, cancel := context.WithTimeout(ctx, max(f.opts.Heartbeat, time.Second))
		_, err = f.pool.Exec(actx, `INSERT INTO handoff_fleet_acks (command, node, error) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, c.ID, f.opts.Node, msg)
		cancel()
		if err != nil {
			// Applied but not acknowledged: applying again is harmless
			// (a command says "read the state"), so it is retried.
			return err
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cmds {
		f.applied = max(f.applied, c.ID)
	}
	return nil
}

// ErrAckLater, returned by Options.Apply, says the node acknowledges the
// command itself with Ack once it is done (a deploy runs for minutes; the
// command loop goes on meanwhile).
var ErrAckLater = errors.New("fleet: acknowledged when done")

// Ack acknowledges command id for this node, with the error it ended with.
func (f *Fleet) Ack(ctx context.Context, id int64, failed error) error {
	msg := ""
	if failed != nil {
		msg = failed.Error()
	}
	if _, err := f.pool.Exec(ctx, `INSERT INTO handoff_fleet_acks (command, node, error) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, id, f.opts.Node, msg); err != nil {
		return fmt.Errorf("fleet: acknowledge command %d: %w", id, err)
	}
	return nil
}

// monitorNotifications keeps a connection that LISTENs for new commands
// and pokes the command loop at each. When the connection fails it is
// opened again after a heartbeat; meanwhile the heartbeat's polling
// carries on alone.
func (f *Fleet) monitorNotifications(ctx context.Context) {
	for ctx.Err() == nil {
		if err := f.listen(ctx); err != nil && ctx.Err() == nil {
			f.log.Debug("fleet: LISTEN connection lost; polling until it is back", "error", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(f.opts.Heartbeat):
		}
	}
}

func (f *Fleet) listen(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, max(f.opts.Heartbeat, time.Second))
	conn, err := pgx.ConnectConfig(cctx, f.pool.Config().ConnConfig.Copy())
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "LISTEN "+channel); err != nil {
		return err
	}
	f.poke() // what came while nobody listened
	for {
		// A connection cut off without a reset (a firewall that drops)
		// would wait here for ever: the wait is bounded, and a bounded
		// round trip proves the connection alive.
		wctx, cancel := context.WithTimeout(ctx, 5*f.opts.Heartbeat)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		if err == nil {
			f.poke()
			continue
		}
		if ctx.Err() != nil {
			return nil
		}
		if wctx.Err() == nil || conn.IsClosed() {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, f.opts.Heartbeat)
		err = conn.Ping(pctx)
		cancel()
		if err != nil {
			return err
		}
	}
}
