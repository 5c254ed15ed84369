package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Lease is the right to lead one fleet operation (a fleet deploy), held by
// one node at a time for a bounded time and renewed while it runs. Its
// token grows with every new holder: a write fenced by it is refused once
// another node holds the lease, however late the old leader's write
// arrives (docs/fleet.md says why a lease and not an advisory lock).
type Lease struct {
	f     *Fleet
	name  string
	token int64

	ctx    context.Context // done once the lease is lost or released
	cancel context.CancelCauseFunc
	wg     sync.WaitGroup
}

// Acquire takes the lease name for this node, or returns a *HeldError
// naming the node that holds it. The lease is renewed in the background
// every third of fleet.lease; if a renewal fails, Done is closed and
// every fenced write fails, so the operation stops.
func (f *Fleet) Acquire(ctx context.Context, name string) (*Lease, error) {
	l, err := f.acquire(ctx, name)
	if err != nil {
		return nil, err
	}
	l.wg.Add(1)
	go func() { defer l.wg.Done(); l.monitorRenewal() }()
	return l, nil
}

func (f *Fleet) acquire(ctx context.Context, name string) (*Lease, error) {
	var token int64
	err := f.pool.QueryRow(ctx, `INSERT INTO handoff_fleet_leases AS l (name, holder, token, expires)
		VALUES ($1, $2, 1, now() + $3)
		ON CONFLICT (name) DO UPDATE SET holder = $2, token = l.token + 1, expires = now() + $3
		WHERE l.expires < now()
		RETURNING token`, name, f.opts.Node, f.opts.Lease).Scan(&token)
	if errors.Is(err, pgx.ErrNoRows) {
		held := &HeldError{Name: name}
		if err := f.pool.QueryRow(ctx, `SELECT holder, expires - now() FROM handoff_fleet_leases WHERE name = $1`, name).Scan(&held.Holder, &held.Expires); err != nil {
			return nil, fmt.Errorf("fleet: acquire %s: %w", name, err)
		}
		return nil, held
	}
	if err != nil {
		return nil, fmt.Errorf("fleet: acquire %s: %w", name, err)
	}
	lctx, cancel := context.WithCancelCause(context.Background())
	return &Lease{f: f, name: name, token: token, ctx: lctx, cancel: cancel}, nil
}

// Token is the lease's fencing token.
func (l *Lease) Token() int64 { return l.token }

// Done is closed once the lease is lost or released; Err says which.
func (l *Lease) Done() <-chan struct{} { return l.ctx.Done() }

// Err is why the lease ended, or nil while it is held.
func (l *Lease) Err() error { return context.Cause(l.ctx) }

func (l *Lease) monitorRenewal() {
	t := time.NewTimer(l.f.opts.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		if err := l.renew(l.ctx); err != nil {
			if l.ctx.Err() == nil {
				l.cancel(err)
			}
			return
		}
		t.Reset(l.f.opts.Lease / 3)
	}
}

// renew extends the lease if this node still holds it under its token.
func (l *Lease) renew(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, l.f.opts.Lease/3)
	defer cancel()
	tag, err := l.f.pool.Exec(ctx, `UPDATE handoff_fleet_leases SET expires = now() + $3
		WHERE name = $1 AND token = $2 AND expires > now()`, l.name, l.token, l.f.opts.Lease)
	if err != nil {
		return fmt.Errorf("fleet: renew the lease %s: %w", l.name, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLeaseLost
	}
	return nil
}

// Fenced runs fn in a transaction that first checks, holding the lease's
// row, that this lease is still the current one and unexpired; if not, fn
// does not run and ErrLeaseLost is returned. The row stays locked until
// commit, so no new holder can take over between the check and fn's
// writes.
func (l *Lease) Fenced(ctx context.Context, fn func(tx pgx.Tx) error) error {
	tx, err := l.f.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("fleet: fenced write under %s: %w", l.name, err)
	}
	defer tx.Rollback(ctx)
	if err := l.check(ctx, tx); err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// check locks the lease's row in tx and returns ErrLeaseLost unless this
// lease is still the current one and unexpired.
func (l *Lease) check(ctx context.Context, tx pgx.Tx) error {
	var ok bool
	err := tx.QueryRow(ctx, `SELECT token = $2 AND expires > now() FROM handoff_fleet_leases WHERE name = $1 FOR UPDATE`, l.name, l.token).Scan(&ok)
	if errors.Is(err, pgx.ErrNoRows) || err == nil && !ok {
		return ErrLeaseLost
	}
	if err != nil {
		return fmt.Errorf("fleet: fenced write under %s: %w", l.name, err)
	}
	return nil
}

// Release gives the lease up at once, so that the next operation need not
// wait for it to expire.
func (l *Lease) Release(ctx context.Context) error {
	l.cancel(errors.New("fleet: lease released"))
	l.wg.Wait()
	if _, err := l.f.pool.Exec(ctx, `UPDATE handoff_fleet_leases SET expires = now() WHERE name = $1 AND token = $2`, l.name, l.token); err != nil {
		return fmt.Errorf("fleet: release the lease %s: %w", l.name, err)
	}
	return nil
}
