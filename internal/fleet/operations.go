package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// An operation is what a lease's holder leads (a fleet deploy): its plan
// and progress are kept in the shared state under the lease's name,
// written only under the lease (fenced), so that when the leader dies and
// its lease expires another node takes the lease and finds where it
// stopped. A finished operation's row is deleted.

// Save writes the operation's state under the lease: refused
// (ErrLeaseLost) once another node holds it.
func (l *Lease) Save(ctx context.Context, state any) error {
	return l.Fenced(ctx, func(tx pgx.Tx) error { return l.save(ctx, tx, state) })
}

// save writes the operation's state in tx, which has checked the lease.
func (l *Lease) save(ctx context.Context, tx pgx.Tx, state any) error {
	body, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("fleet: save %s: %w", l.name, err)
	}
	_, err = tx.Exec(ctx, `INSERT INTO handoff_fleet_operations (name, state, token, updated) VALUES ($1, $2, $3, now())
		ON CONFLICT (name) DO UPDATE SET state = $2, token = $3, updated = now()`, l.name, body, l.token)
	if err != nil {
		return fmt.Errorf("fleet: save %s: %w", l.name, err)
	}
	return nil
}

// Load reads the operation's state, if one was saved and not finished.
func (l *Lease) Load(ctx context.Context, state any) (bool, error) {
	return l.f.loadOperation(ctx, l.name, state)
}

// Finish deletes the operation's state under the lease: it is done (or
// undone) on every node.
func (l *Lease) Finish(ctx context.Context) error {
	return l.Fenced(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM handoff_fleet_operations WHERE name = $1`, l.name); err != nil {
			return fmt.Errorf("fleet: finish %s: %w", l.name, err)
		}
		return nil
	})
}

func (f *Fleet) loadOperation(ctx context.Context, name string, state any) (bool, error) {
	var body []byte
	err := f.pool.QueryRow(ctx, `SELECT state FROM handoff_fleet_operations WHERE name = $1`, name).Scan(&body)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("fleet: read %s: %w", name, err)
	}
	if err := json.Unmarshal(body, state); err != nil {
		return false, fmt.Errorf("fleet: read %s: %w", name, err)
	}
	return true, nil
}

// Operation is an unfinished operation as any node sees it.
type Operation struct {
	Name  string          `json:"name"`
	State json.RawMessage `json:"state"`
	// Holder is the node whose lease it is under, and Orphaned says the
	// lease has expired: its leader is gone, and a node may take it over.
	Holder   string        `json:"holder"`
	Orphaned bool          `json:"orphaned"`
	Updated  time.Duration `json:"updated_ago_ns"`
}

// Operations lists the unfinished operations.
func (f *Fleet) Operations(ctx context.Context) ([]Operation, error) {
	rows, err := f.pool.Query(ctx, `SELECT o.name, o.state, coalesce(l.holder, ''), l.expires IS NULL OR l.expires < now(), now() - o.updated
		FROM handoff_fleet_operations o LEFT JOIN handoff_fleet_leases l USING (name) ORDER BY o.name`)
	if err != nil {
		return nil, fmt.Errorf("fleet: list operations: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Operation, error) {
		var o Operation
		var state []byte
		err := r.Scan(&o.Name, &state, &o.Holder, &o.Orphaned, &o.Updated)
		o.State = state
		return o, err
	})
}

// RestartedSince says whether node's process started after command id was
// sent: the process that received the command is gone, and will not
// acknowledge it.
func (f *Fleet) RestartedSince(ctx context.Context, node string, id int64) bool {
	var after bool
	err := f.pool.QueryRow(ctx, `SELECT n.started > c.at FROM handoff_fleet_nodes n, handoff_fleet_commands c WHERE n.name = $1 AND c.id = $2`, node, id).Scan(&after)
	return err == nil && after
}
