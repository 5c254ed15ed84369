package migrate

import (
	"context"
	"database/sql/driver"
	"fmt"
)

// exclusive runs f while no other handoff runs a DDL phase on the same
// database. Several nodes of a fleet deploy the same release, and each
// node's deploy whose contract waits wakes up when the last old instance
// is gone — at about the same moment on every node. Serialised, the first
// applies the phase and the others, reading the history only once they
// hold the lock, find it done. Postgres: a session-level advisory lock on
// a connection of its own (held across the phase's transactions and its
// CONCURRENTLY statements, which do not wait for an idle session). SQLite
// is a file on one host whose writers its own locks serialise.
func (m *Migrator) exclusive(ctx context.Context, f func() error) error {
	if m.d.Name() != "postgres" {
		return f()
	}
	conn, err := m.d.DB().Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock(hashtext('handoff: migration phases'))`); err != nil {
		return fmt.Errorf("migrate: wait for another handoff's migration phase: %w", err)
	}
	// Unlocked on this connection whatever ctx says; if that fails, the
	// connection is closed (driver.ErrBadConn from Raw makes database/sql discard it), and
	// with it the lock.
	defer func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext('handoff: migration phases'))`); err != nil {
			conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	return f()
}
