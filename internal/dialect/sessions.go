package dialect

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"time"
)

// SessionWatcher is implemented by the dialects whose server shows its
// other sessions (Postgres's pg_stat_activity): what a backfill needs to
// tell whether its batches make live work wait. SQLite has one writer at a
// time and no such view; a batch that gets in the way there shows up as
// busy conflicts instead.
type SessionWatcher interface {
	// BeginTagged is BeginWrite with the session named tag, so that the
	// sessions it blocks can be told from those other work blocks; one
	// round trip as BeginWrite's. The name stays on the pooled connection
	// after the transaction: whatever else the caller runs on it is its
	// own work too, not live work.
	BeginTagged(ctx context.Context, isolation sql.IsolationLevel, lockTimeout time.Duration, tag string) (*sql.Tx, error)
	// Sessions looks at the database's other client sessions now.
	Sessions(ctx context.Context, tag string) (Sessions, error)
}

// Sessions is one look at the other sessions of the database.
type Sessions struct {
	// Active counts the sessions running a statement, other than the
	// caller's own and those tagged with the tag (live work, roughly).
	Active int
	// Blocked counts the sessions waiting for a lock that a session tagged
	// with the tag holds, and LongestWait is how long the longest of them
	// has waited so far.
	Blocked     int
	LongestWait time.Duration
}

// maxTagLen is Postgres's NAMEDATALEN-1: a longer application_name is
// truncated by the server, and the comparison in Sessions would miss it.
const maxTagLen = 63

func pgTag(tag string) string {
	if len(tag) > maxTagLen {
		return tag[:maxTagLen]
	}
	return tag
}

// BeginTagged sets application_name for the session (set_config's
// is_local false) in the statement that sets the transaction's lock
// timeout: a transaction-local name would revert at COMMIT, and the
// session's next BEGIN would show as untagged live work for a moment.
func (p *postgres) BeginTagged(ctx context.Context, iso sql.IsolationLevel, lockTimeout time.Duration, tag string) (*sql.Tx, error) {
	tx, err := p.db.BeginTx(ctx, &sql.TxOptions{Isolation: iso})
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	_, err = tx.ExecContext(ctx, `SELECT set_config('lock_timeout', $1, true), set_config('application_name', $2, false)`,
		strconv.FormatInt(max(lockTimeout.Milliseconds(), 1), 10)+"ms", pgTag(tag))
	if err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("set lock_timeout and application_name: %w", err)
	}
	return tx, nil
}

// Sessions asks pg_blocking_pids only of the sessions that wait for a
// lock (the documentation warns against calling it often for many):
// AND's left side is evaluated first and is false for all the others.
func (p *postgres) Sessions(ctx context.Context, tag string) (Sessions, error) {
	const q = `WITH s AS (
		SELECT a.pid, a.state, a.application_name, a.wait_event_type, a.query_start
		FROM pg_stat_activity a
		WHERE a.backend_type = 'client backend' AND a.datname = current_database() AND a.pid <> pg_backend_pid())
	SELECT
		count(*) FILTER (WHERE state = 'active' AND application_name <> $1),
		count(*) FILTER (WHERE w.blocked),
		COALESCE(EXTRACT(EPOCH FROM max(clock_timestamp() - query_start) FILTER (WHERE w.blocked)), 0)::float8
	FROM s, LATERAL (SELECT s.wait_event_type = 'Lock' AND application_name <> $1 AND EXISTS (
		SELECT 1 FROM pg_stat_activity b WHERE b.pid = ANY (pg_blocking_pids(s.pid)) AND b.application_name = $1)) w(blocked)`
	var st Sessions
	var secs float64
	if err := p.db.QueryRowContext(ctx, q, pgTag(tag)).Scan(&st.Active, &st.Blocked, &secs); err != nil {
		return Sessions{}, fmt.Errorf("read sessions: %w", err)
	}
	st.LongestWait = time.Duration(secs * float64(time.Second))
	return st, nil
}

var _ SessionWatcher = (*postgres)(nil)
