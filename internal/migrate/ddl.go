package migrate

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
)

// StatementError is a statement the database refused, at its file and line.
type StatementError struct {
	File  string
	Line  int
	Phase Phase
	Err   error
}

func (e *StatementError) Error() string {
	return fmt.Sprintf("%s:%d: %s: %v", e.File, e.Line, e.Phase, e.Err)
}

func (e *StatementError) Unwrap() error { return e.Err }

// group is a run of statements that execute together: in one transaction,
// or (noTx) one statement on its own outside any transaction.
type group struct {
	stmts []Statement
	noTx  bool
}

func (m *Migrator) groups(s *Section) []group {
	var gs []group
	for _, st := range s.Statements {
		if m.d.NoTransaction(st.SQL) {
			gs = append(gs, group{stmts: []Statement{st}, noTx: true})
			continue
		}
		if n := len(gs); n > 0 && !gs[n-1].noTx {
			gs[n-1].stmts = append(gs[n-1].stmts, st)
			continue
		}
		gs = append(gs, group{stmts: []Statement{st}})
	}
	return gs
}

// runPhase runs a DDL phase (expand, contract, rollback) of m, resuming at
// the group the history says it reached. Each transactional group commits
// with its history step, so a phase without CONCURRENTLY statements either
// applies whole or not at all.
// resumed says an earlier run began the phase (its history row exists):
// its statement at step may have run already (see runNoTx).
func (m *Migrator) runPhase(ctx context.Context, mig *Migration, s *Section, step int, resumed bool) error {
	m.emit(Event{Kind: EventPhaseStart, Migration: mig.Name, Phase: s.Phase, File: mig.Path, Line: s.Line})
	gs := m.groups(s)
	if len(gs) == 0 {
		gs = []group{{}} // a phase of only comments still gets its history row
	}
	for i := step; i < len(gs); i++ {
		last := i == len(gs)-1
		var err error
		if gs[i].noTx {
			err = m.runNoTx(ctx, mig, s, gs[i].stmts[0], i, last, resumed && i == step)
		} else {
			err = m.runTx(ctx, mig, s, gs[i].stmts, i, last)
		}
		if err != nil {
			return err
		}
	}
	m.emit(Event{Kind: EventPhaseDone, Migration: mig.Name, Phase: s.Phase, File: mig.Path, Line: s.Line})
	return nil
}

// runTx runs statements and the history step in one transaction whose lock
// waits give up after the lock timeout; it retries the whole group, so that
// a long transaction elsewhere never makes live queries queue behind ours.
func (m *Migrator) runTx(ctx context.Context, mig *Migration, s *Section, stmts []Statement, step int, last bool) error {
	return m.retryLocks(ctx, mig, s, stmts, func() (Statement, error) {
		tx, err := m.d.BeginWrite(ctx, 0, m.opts.LockTimeout)
		if err != nil {
			return Statement{Line: s.Line}, err
		}
		defer tx.Rollback()
		if err := m.hist.begin(ctx, tx, mig, s, m.opts.AppliedBy); err != nil {
			return Statement{Line: s.Line}, fmt.Errorf("record phase: %w", err)
		}
		for _, st := range stmts {
			m.emit(Event{Kind: EventStatement, Migration: mig.Name, Phase: s.Phase, File: mig.Path, Line: st.Line})
			if _, err := tx.ExecContext(ctx, st.SQL); err != nil {
				return st, err
			}
		}
		if err := m.hist.advance(ctx, tx, mig, s.Phase, step+1, last); err != nil {
			return Statement{Line: s.Line}, fmt.Errorf("record phase: %w", err)
		}
		return Statement{Line: s.Line}, tx.Commit()
	})
}

// runNoTx runs a statement that cannot run in a transaction. A CREATE
// INDEX CONCURRENTLY that fails (a lock timeout while it waits for old
// transactions, say) leaves an INVALID index behind: it is dropped before
// the statement is tried again, and an index a crashed run finished is kept.
//
// Its history step is advanced after the statement, not with it: a run
// killed in between leaves the statement done and the step not. So again
// — replay — a statement whose effect is there already (ALTER TYPE … ADD
// VALUE of a label that exists, a DROP … CONCURRENTLY of an index that is
// gone) counts as applied, where it would fail the phase for good.
func (m *Migrator) runNoTx(ctx context.Context, mig *Migration, s *Section, st Statement, step int, last, replay bool) error {
	if err := m.hist.begin(ctx, m.d.DB(), mig, s, m.opts.AppliedBy); err != nil {
		return fmt.Errorf("record phase %s of %s: %w", s.Phase, mig.Name, err)
	}
	table, index := concurrentIndex(st.SQL)
	deadline := time.Now().Add(m.opts.DDLRetryFor)
	err := m.retryLocks(ctx, mig, s, []Statement{st}, func() (Statement, error) {
		if index != "" {
			qualified, valid, err := m.d.IndexValid(ctx, table, index)
			if err != nil {
				return st, err
			}
			if valid {
				return st, nil // built by a run that crashed before recording it
			}
			if qualified != "" {
				if err := m.dropInvalid(ctx, mig, s, st, qualified); err != nil {
					return st, err
				}
			}
		}
		m.emit(Event{Kind: EventStatement, Migration: mig.Name, Phase: s.Phase, File: mig.Path, Line: st.Line})
		err := m.d.ExecNoTx(ctx, st.SQL, m.noTxLockTimeout(st.SQL, deadline))
		if err != nil && replay && m.d.Classify(err) == dialect.AlreadyDone {
			m.emit(Event{Kind: EventReplayed, Migration: mig.Name, Phase: s.Phase, File: mig.Path, Line: st.Line, Err: err})
			return st, nil
		}
		if err != nil && index != "" {
			if qualified, valid, cerr := m.d.IndexValid(context.WithoutCancel(ctx), table, index); cerr == nil && qualified != "" && !valid {
				err = errors.Join(err, m.dropInvalid(context.WithoutCancel(ctx), mig, s, st, qualified))
			}
		}
		return st, err
	})
	if err != nil {
		return err
	}
	if err := m.hist.advance(ctx, m.d.DB(), mig, s.Phase, step+1, last); err != nil {
		return fmt.Errorf("record phase %s of %s: %w", s.Phase, mig.Name, err)
	}
	return nil
}

// concurrently matches the statements that build or drop without
// blocking the table's reads and writes: [CREATE|DROP] INDEX CONCURRENTLY,
// REINDEX … CONCURRENTLY, DETACH PARTITION … CONCURRENTLY.
var concurrently = regexp.MustCompile(`(?is)^\s*(?:(?:create\s+(?:unique\s+)?|drop\s+)index\s+concurrently\b|reindex\s+(?:\(.*?\)\s*)?\w+\s+concurrently\b|alter\s+table\b.*\bdetach\s+partition\s+\S+\s+concurrently\b)`)

// noTxLockTimeout is the lock timeout of a statement run outside a
// transaction: the DDL lock timeout, but for a CONCURRENTLY statement the
// time left of the retry budget (until deadline). Such a statement's
// waits (for old snapshots, for transactions that use the index) hold up
// no query of the app's; cut short, a CREATE INDEX CONCURRENTLY has
// scanned and sorted the whole table for nothing and builds it all again
// on the retry, and a table whose queries often run longer than the lock
// timeout might never get its index.
func (m *Migrator) noTxLockTimeout(stmt string, deadline time.Time) time.Duration {
	if !concurrently.MatchString(stmt) {
		return m.opts.LockTimeout
	}
	return max(time.Until(deadline), m.opts.LockTimeout)
}

// dropInvalid drops the invalid index qualified (as SQL writes it).
func (m *Migrator) dropInvalid(ctx context.Context, mig *Migration, s *Section, st Statement, qualified string) error {
	m.emit(Event{Kind: EventIndexCleanup, Migration: mig.Name, Phase: s.Phase, File: mig.Path, Line: st.Line, Index: qualified})
	if err := m.d.ExecNoTx(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+qualified, m.opts.LockTimeout); err != nil {
		return fmt.Errorf("drop invalid index %s: %w", qualified, err)
	}
	return nil
}

// cicName matches a CREATE INDEX CONCURRENTLY: the index's name and its
// table, each quoted or not (the table maybe schema-qualified).
var cicName = regexp.MustCompile(`(?is)^\s*create\s+(?:unique\s+)?index\s+concurrently\s+(?:if\s+not\s+exists\s+)?(` + sqlIdent + `)\s+on\s+(?:only\s+)?(` + sqlIdent + `(?:\s*\.\s*` + sqlIdent + `)?)`)

// sqlIdent is an identifier, quoted or not.
const sqlIdent = `(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)`

// concurrentIndex is the index a CREATE INDEX CONCURRENTLY creates: its
// name as the catalog stores it (unquoted names fold to lower case), and
// its table as the statement writes it.
func concurrentIndex(stmt string) (table, name string) {
	m := cicName.FindStringSubmatch(stmt)
	if m == nil {
		return "", ""
	}
	name = m[1]
	if name[0] == '"' {
		name = strings.ReplaceAll(name[1:len(name)-1], `""`, `"`)
	} else {
		name = strings.ToLower(name)
	}
	return m[2], name
}

// retryLocks runs f until it succeeds, retrying lock timeouts, deadlocks,
// serialization failures and busy errors with jittered exponential backoff
// for up to DDLRetryFor. f returns the statement it was at, for the error.
// With Options.Escalate, an attempt after a run of lost locks runs while
// the gateway holds new requests (escalate.go).
func (m *Migrator) retryLocks(ctx context.Context, mig *Migration, s *Section, stmts []Statement, f func() (Statement, error)) error {
	deadline := time.Now().Add(m.opts.DDLRetryFor)
	var esc escalation
	held, line := false, s.Line
	for attempt := 1; ; attempt++ {
		var st Statement
		var err error
		if held {
			st, err = m.underHold(ctx, mig, s, line, attempt, f)
		} else {
			st, err = f()
		}
		if err == nil {
			return nil
		}
		class := m.d.Classify(err)
		if ctx.Err() != nil || !class.Retryable() || time.Now().After(deadline) {
			if ctx.Err() != nil {
				err = ctx.Err()
			}
			return &StatementError{File: mig.Path, Line: st.Line, Phase: s.Phase, Err: err}
		}
		m.emit(Event{Kind: EventLockRetry, Migration: mig.Name, Phase: s.Phase, File: mig.Path, Line: st.Line,
			Attempt: attempt, Reason: class.String(), Err: err})
		held, line = m.opts.Escalate != nil && esc.lose(class), st.Line
		if held {
			continue // at once: the hold's wait for requests in flight is the pause
		}
		if err := dialect.Sleep(ctx, ddlBackoff(attempt)); err != nil {
			return &StatementError{File: mig.Path, Line: st.Line, Phase: s.Phase, Err: err}
		}
	}
}

// ddlBackoff grows from about 50 ms to about 5 s, jittered so that several
// migrators do not retry in step.
func ddlBackoff(attempt int) time.Duration {
	return dialect.BackoffFrom(50*time.Millisecond, 5*time.Second, attempt-1)
}
