package migrate

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/dialect"
	"github.com/handoff-dev/handoff/internal/evolve"
)

// BackfillSpec is the marker line of a backfill phase:
//
//	-- handoff:backfill table=items key=id batch=1000
//	-- handoff:backfill command="./evolve.py --from {lo} --to {hi}" range=1..250000
type BackfillSpec struct {
	Table, Key string
	// Verify is what "not done" means (verify="title_lower IS NULL"): a
	// condition no row may match once the backfill has run; the contract
	// is refused while rows do.
	Verify string
	// Command is set for a command backfill; the SQL form has statements.
	Command string
	// Range is an explicit inclusive key range (range=1..250000).
	Range *evolve.Range
	// tune applies the marker's throttle options over the defaults.
	tune []func(*evolve.Settings)
}

// Settings returns base with the marker's options applied.
func (b *BackfillSpec) Settings(base evolve.Settings) evolve.Settings {
	for _, f := range b.tune {
		f(&base)
	}
	return base
}

// BackfillOptions lists the options a backfill marker takes.
var BackfillOptions = []string{"batch", "batch_time", "command", "duty", "isolation", "key", "lock_timeout",
	"max_lag", "range", "rate", "retries", "table", "throttle", "verify", "workers"}

var (
	optionRE = regexp.MustCompile(`^\s*([A-Za-z_]+)=("(?:[^"\\]|\\.)*"|\S*)`)
	rangeRE  = regexp.MustCompile(`^(-?\d+)\.\.(-?\d+)$`)
)

var isolations = map[string]sql.IsolationLevel{
	"read_committed": sql.LevelReadCommitted, "repeatable_read": sql.LevelRepeatableRead, "serializable": sql.LevelSerializable,
}

func parseBackfill(options string, stmts []Statement, line int, fail func(int, string, ...any) error) (*BackfillSpec, error) {
	opts, err := splitOptions(options)
	if err != nil {
		return nil, fail(line, "%v", err)
	}
	b := &BackfillSpec{}
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := b.option(k, opts[k]); err != nil {
			return nil, fail(line, "backfill option %s: %v", k, err)
		}
	}
	return b, b.check(stmts, line, fail)
}

func splitOptions(s string) (map[string]string, error) {
	opts := map[string]string{}
	for s = strings.TrimSpace(s); s != ""; s = strings.TrimSpace(s) {
		m := optionRE.FindStringSubmatch(s)
		if m == nil {
			return nil, fmt.Errorf("want key=value options, got %q", s)
		}
		v := m[2]
		if strings.HasPrefix(v, `"`) {
			u, err := strconv.Unquote(v)
			if err != nil {
				return nil, fmt.Errorf("option %s: bad quoted value %s", m[1], v)
			}
			v = u
		}
		if _, dup := opts[m[1]]; dup {
			return nil, fmt.Errorf("option %s given twice", m[1])
		}
		opts[m[1]] = v
		s = s[len(m[0]):]
	}
	return opts, nil
}

// option applies one key=value of a backfill marker.
func (b *BackfillSpec) option(k, v string) error {
	tune := func(f func(*evolve.Settings)) { b.tune = append(b.tune, f) }
	switch k {
	case "table", "key":
		if !dialect.ValidIdent(v) {
			return fmt.Errorf("want a plain identifier, got %q", v)
		}
		if k == "table" {
			b.Table = v
		} else {
			b.Key = v
		}
	case "command":
		if strings.TrimSpace(v) == "" {
			return fmt.Errorf("must not be empty")
		}
		b.Command = v
	case "verify":
		if strings.TrimSpace(v) == "" || strings.Contains(v, ";") {
			return fmt.Errorf("want a condition such as verify=\"title_lower IS NULL\", got %q", v)
		}
		b.Verify = v
	case "range":
		m := rangeRE.FindStringSubmatch(v)
		if m == nil {
			return fmt.Errorf("want LO..HI, got %q", v)
		}
		lo, _ := strconv.ParseInt(m[1], 10, 64)
		hi, _ := strconv.ParseInt(m[2], 10, 64)
		if hi < lo {
			return fmt.Errorf("%d is above %d", lo, hi)
		}
		b.Range = &evolve.Range{Lo: lo, Hi: hi}
	case "batch", "workers", "retries", "duty":
		// duty=N alone selects the fixed throttle, as it did before the
		// adaptive one; a throttle= option (applied after it) wins.
		n, err := strconv.Atoi(strings.TrimSuffix(v, "%"))
		if err != nil || n < 0 || (n == 0 && k != "retries") || (k == "duty" && n > 100) {
			return fmt.Errorf("want a whole number%s, got %q", map[bool]string{true: " from 1 to 100", false: " above 0"}[k == "duty"], v)
		}
		tune(func(s *evolve.Settings) {
			switch k {
			case "batch":
				s.Batch = n
			case "workers":
				s.Workers = n
			case "retries":
				s.Retries = n
			case "duty":
				*s = s.Fixed(n)
			}
		})
	case "batch_time", "max_lag", "lock_timeout":
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("want a duration such as 100ms or 10s, got %q", v)
		}
		tune(func(s *evolve.Settings) {
			switch k {
			case "batch_time":
				s.BatchTime = d
			case "max_lag":
				s.MaxLag = d
			case "lock_timeout":
				s.LockTimeout = d
			}
		})
	case "rate":
		r, err := strconv.ParseFloat(v, 64)
		if err != nil || r < 0 {
			return fmt.Errorf("want rows per second, got %q", v)
		}
		tune(func(s *evolve.Settings) { s.Rate = r })
	case "isolation":
		iso, ok := isolations[v]
		if !ok {
			return fmt.Errorf("want read_committed, repeatable_read or serializable, got %q", v)
		}
		tune(func(s *evolve.Settings) { s.Isolation = iso })
	case "throttle":
		mode, err := evolve.ParseThrottle(v)
		if err != nil || v == "" {
			return fmt.Errorf("want adaptive, fixed or off, got %q", v)
		}
		tune(func(s *evolve.Settings) { *s = s.Throttled(mode) })
	default:
		return fmt.Errorf("unknown (want one of %s)", strings.Join(BackfillOptions, ", "))
	}
	return nil
}

// check enforces the two forms of a backfill.
func (b *BackfillSpec) check(stmts []Statement, line int, fail func(int, string, ...any) error) error {
	if (b.Table == "") != (b.Key == "") {
		return fail(line, "backfill needs both table= and key=")
	}
	if b.Command != "" {
		if len(stmts) > 0 {
			return fail(stmts[0].Line, "a command backfill takes no SQL statements")
		}
		if b.Table == "" && b.Range == nil {
			return fail(line, "a command backfill needs table= and key=, or range=LO..HI")
		}
		if b.Table != "" && b.Range != nil {
			return fail(line, "give table= and key=, or range=, not both")
		}
		return nil
	}
	if b.Range != nil {
		return fail(line, "range= is for command backfills; a SQL backfill walks table= and key=")
	}
	if b.Table == "" {
		return fail(line, "backfill needs table= and key= (the key column walked in batches)")
	}
	if len(stmts) == 0 {
		return fail(line, "backfill has no statement and no command=")
	}
	for _, st := range stmts {
		if !st.Uses("lo") || !st.Uses("hi") {
			return fail(st.Line, "a backfill statement must bound its rows with :lo and :hi (WHERE %s >= :lo AND %s < :hi)", b.Key, b.Key)
		}
	}
	return nil
}

// ConfigOptions are a Migrator's options as the config's database section
// sets them: the lock timeout and the base settings of every backfill
// (database.backfill, before a marker's options). It is the one place
// where config becomes options; callers add what is theirs (directories,
// the release, progress, the live signal).
func ConfigOptions(db config.Database) Options {
	b := db.Backfill
	s := evolve.DefaultSettings()
	s.Batch, s.BatchTime, s.Rate = cmp.Or(b.Batch, s.Batch), b.BatchTime.D(), float64(b.Rate)
	s.MaxLag, s.Workers, s.Retries = b.MaxLag.D(), b.Workers, b.Retries
	s.LockTimeout = 0                           // the migrator's (withDefaults), unless a marker sets one
	mode, _ := evolve.ParseThrottle(b.Throttle) // the config checked it
	if b.Throttle == "" && b.Duty > 0 {
		mode = evolve.ThrottleFixed // duty alone: the fixed throttle, as before
	}
	if b.Duty > 0 {
		s.Duty = b.Duty
	}
	s = s.Throttled(mode)
	return Options{LockTimeout: db.LockTimeout.D(), Backfill: &s}
}

// verify counts the rows that still match the backfill's verify
// condition, and refuses the contract while any does: a contract never
// runs on data its backfill did not finish, whatever the checkpoint says.
func (m *Migrator) verify(ctx context.Context, mig *Migration) error {
	s := mig.Sections[Backfill]
	if s == nil || s.Backfill == nil || s.Backfill.Verify == "" {
		return nil
	}
	b := s.Backfill
	var n int64
	q := "SELECT count(*) FROM " + m.d.Quote(b.Table) + " WHERE " + b.Verify
	if err := m.d.DB().QueryRowContext(ctx, q).Scan(&n); err != nil {
		return &FileError{File: mig.Path, Line: s.Line, Msg: fmt.Sprintf("verify=%q: %v", b.Verify, err)}
	}
	if n > 0 {
		return &FileError{File: mig.Path, Line: s.Line, Msg: fmt.Sprintf("contract refused: %d rows of %s still match verify=%q; the backfill has not done them (fix the rows, or run 'handoff migrate contract' again once what wrote them has stopped: its catch-up walks every key)", n, b.Table, b.Verify)}
	}
	return nil
}
