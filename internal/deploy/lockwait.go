package deploy

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/migrate"
)

// lockWait sums a migration step's lock retries — a DDL statement that
// gave up waiting for its lock under lock_timeout and will try again — so
// that a step that waits says so while it waits, in the deploy's progress,
// in status (the step's detail) and in /metrics, rather than one line per
// retry or nothing at all.
type lockWait struct {
	mu       sync.Mutex
	retries  int
	first    time.Time
	where    string // file:line of the statement
	reported time.Time
	// blocker names what the statement likely waits for, when the
	// database can tell (Postgres: the oldest open transaction).
	blocker func() string
}

// note counts a retry and returns the message to report, or "" when one
// went out less than a second ago.
func (w *lockWait) note(e migrate.Event) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.retries == 0 {
		w.first = time.Now()
	}
	w.retries++
	w.where = fmt.Sprintf("%s:%d", filepath.Base(e.File), e.Line)
	if time.Since(w.reported) < time.Second {
		return ""
	}
	w.reported = time.Now()
	msg := w.textLocked(e.Reason)
	if w.blocker != nil {
		if b := w.blocker(); b != "" {
			msg += "; " + b
		}
	}
	return msg
}

func (w *lockWait) textLocked(reason string) string {
	msg := fmt.Sprintf("waiting for a lock at %s: %s over %s", w.where, retries(w.retries), time.Since(w.first).Round(100*time.Millisecond))
	if reason != "" {
		msg += " (" + reason + ")"
	}
	return msg
}

// oldestTransaction names the oldest open transaction of another session
// on a Postgres database — what a DDL statement most likely waits for — as
// far as the role may see it (pg_stat_activity hides other roles' queries
// from a role without pg_read_all_stats), or "".
func oldestTransaction(db *sql.DB) string {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	var pid int
	var state, query string
	var age time.Duration
	var ageText string
	err := db.QueryRowContext(ctx, `SELECT pid, coalesce(state, ''), coalesce(left(query, 120), ''), (extract(epoch FROM now() - xact_start) * 1000)::bigint::text
		FROM pg_stat_activity
		WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND backend_type = 'client backend'
		ORDER BY xact_start LIMIT 1`).Scan(&pid, &state, &query, &ageText)
	if err != nil {
		return ""
	}
	if ms, err := time.ParseDuration(ageText + "ms"); err == nil {
		age = ms
	}
	if query == "" || strings.HasPrefix(query, "<insufficient privilege>") {
		query = "(its query is not visible to this role)"
	}
	return fmt.Sprintf("the oldest open transaction: pid %d, %s for %s: %s", pid, state, age.Round(100*time.Millisecond), query)
}

// summary is what the step's detail keeps once it is over, or "".
func (w *lockWait) summary() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.retries == 0 {
		return ""
	}
	return fmt.Sprintf("waited %s for locks (%s)", time.Since(w.first).Round(100*time.Millisecond), retries(w.retries))
}

// setLive shows msg as the running step's detail in status while it runs.
func (d *Deployer) setLive(depID, msg string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if msg == "" {
		delete(d.live, depID)
		return
	}
	d.live[depID] = msg
}

// liveDetail puts a running step's live detail into dep, as read from the
// store (where the step's detail is written only when it ends).
func (d *Deployer) liveDetail(dep *Deploy) {
	d.mu.Lock()
	msg, ok := d.live[dep.ID]
	d.mu.Unlock()
	if !ok {
		return
	}
	for _, s := range dep.Steps {
		if s.State == Running {
			s.Detail = msg
		}
	}
}

func retries(n int) string {
	if n == 1 {
		return "1 retry"
	}
	return fmt.Sprintf("%d retries", n)
}
