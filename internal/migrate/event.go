package migrate

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
	"github.com/handoff-dev/handoff/internal/evolve"
)

// EventKind says what a Migrator is doing.
type EventKind string

// The events, in the order a phase produces them.
const (
	EventPhaseStart   EventKind = "phase_start"   // a phase of a migration begins
	EventStatement    EventKind = "statement"     // a statement is about to run
	EventLockRetry    EventKind = "lock_retry"    // a statement gave up a lock wait and will be retried
	EventIndexCleanup EventKind = "index_cleanup" // an invalid index left by a failed concurrent build is dropped
	EventReplayed     EventKind = "replayed"      // a statement run again on resume found its effect there: counted applied (see Err)
	EventEscalate     EventKind = "escalate"      // an attempt ran while live requests were held; see Reason and Held
	EventPhaseDone    EventKind = "phase_done"    // the phase is recorded as done
	EventBackfill     EventKind = "backfill"      // progress of a backfill; see Backfill
)

// Event is one report of progress. The CLI prints them; the release
// pipeline forwards them.
type Event struct {
	Kind      EventKind `json:"event"`
	Migration string    `json:"migration"`
	Phase     Phase     `json:"phase"`
	File      string    `json:"file"`
	Line      int       `json:"line,omitempty"`
	Attempt   int       `json:"attempt,omitempty"`
	Reason    string    `json:"reason,omitempty"`
	Index     string    `json:"index,omitempty"`
	Err       error     `json:"-"`
	// Backfill is the evolve event of an EventBackfill.
	Backfill *evolve.Event `json:"backfill,omitempty"`
	// Held is how long an EventEscalate held new requests.
	Held time.Duration `json:"held_ns,omitempty"`
}

func (m *Migrator) emit(e Event) {
	if m.opts.Progress == nil {
		return
	}
	m.emitMu.Lock()
	defer m.emitMu.Unlock()
	m.opts.Progress(e)
}

// preflight loads and verifies the history (forward), then checks every statement
// of every pending phase: its syntax, by the database's parser, and the
// lint. It returns every problem at once, each at its file and line.
func (m *Migrator) preflight(ctx context.Context) (map[string]map[Phase]*applied, error) {
	hist, err := m.forward(ctx)
	if err != nil {
		return nil, err
	}
	var errs []error
	var pending []*Migration
	for _, mig := range m.ms {
		if done(hist, mig, Contract) || !mig.Has(Contract) && expanded(hist, mig) {
			continue
		}
		pending = append(pending, mig)
		for _, p := range Phases {
			if s := mig.Sections[p]; s != nil && !done(hist, mig, p) {
				errs = append(errs, m.checkSyntax(ctx, mig, s)...)
				errs = append(errs, m.checkKey(ctx, mig, s)...)
			}
		}
	}
	ran := func(mig *Migration, p Phase) bool { return done(hist, mig, p) }
	for _, f := range LintPending(pending, m.d.Name(), m.opts.Allow, ran) {
		if f.Rule == ruleSyntax {
			continue // the server's own parser judged the syntax above, and it may be newer than the lint's
		}
		errs = append(errs, f)
	}
	return hist, errors.Join(errs...)
}

func (m *Migrator) checkSyntax(ctx context.Context, mig *Migration, s *Section) []error {
	var errs []error
	for _, st := range s.Statements {
		err := m.d.CheckSyntax(ctx, st.Bind(func(int) string { return "NULL" }))
		var se *dialect.SyntaxError
		switch {
		case err == nil:
		case errors.As(err, &se):
			line := st.Line
			if se.Line > 0 {
				line += se.Line - 1
			}
			errs = append(errs, &FileError{File: mig.Path, Line: line, Msg: "syntax error: " + se.Msg})
		default:
			errs = append(errs, fmt.Errorf("check syntax of %s:%d: %w", mig.Path, st.Line, err))
		}
	}
	return errs
}

// checkKey refuses, before anything runs, a backfill whose key column
// exists with a type no backfill can range over: finding it only at the
// backfill, after the expand ran, would leave a half-done release. A table
// or column that is not there yet may be made by the expand: it is
// checked again when the backfill starts.
func (m *Migrator) checkKey(ctx context.Context, mig *Migration, s *Section) []error {
	b := s.Backfill
	if b == nil || b.Table == "" || b.Key == "" {
		return nil
	}
	if _, err := m.d.KeyKind(ctx, b.Table, b.Key); errors.Is(err, dialect.ErrUnsupportedKey) {
		return []error{&FileError{File: mig.Path, Line: s.Line, Msg: "backfill " + err.Error()}}
	}
	if ok, err := m.tableExists(ctx, b.Table); err == nil && !ok && !mentions(mig.Sections[Expand], b.Table) {
		return []error{&FileError{File: mig.Path, Line: s.Line, Msg: fmt.Sprintf("backfill table=%s: no such table, and the migration's expand does not create it", b.Table)}}
	}
	return nil
}

// tableExists reports whether the database has the table.
func (m *Migrator) tableExists(ctx context.Context, table string) (bool, error) {
	q := `SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1`
	if m.d.Name() == "postgres" {
		q = `SELECT count(*) FROM pg_class WHERE oid = to_regclass($1)`
	}
	var n int
	err := m.d.DB().QueryRowContext(ctx, q, table).Scan(&n)
	return n > 0, err
}

// mentions reports whether a section's statements name the table (an
// expand that creates or renames it into place).
func mentions(s *Section, table string) bool {
	if s == nil {
		return false
	}
	for _, st := range s.Statements {
		if strings.Contains(strings.ToLower(st.SQL), strings.ToLower(table)) {
			return true
		}
	}
	return false
}
