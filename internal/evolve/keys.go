package evolve

import (
	"context"
	"fmt"
	"math"
	"strconv"

	"github.com/handoff-dev/handoff/internal/dialect"
)

// key is one value of a backfill's key column: an integer, or a text or
// uuid value as the database prints it. Integers are compared here, where
// arithmetic is exact. Text and uuid keys are never compared in Go: Go's
// byte order is not the column's (an ICU collation sorts "a" before "B"),
// so every question that orders them — where a range ends, what the next
// batch is, how to split the range — is a query on the column (see
// dialect/keys.go), and a part is done when its cursor is the very value
// recorded as its end.
type key struct {
	kind dialect.KeyKind
	n    int64  // KeyInt
	s    string // KeyText, KeyUUID
}

func intKey(n int64) key { return key{kind: dialect.KeyInt, n: n} }

func textKey(kind dialect.KeyKind, s string) key { return key{kind: kind, s: s} }

// String is the key as the checkpoint tables store it: integers in decimal.
func (k key) String() string {
	if k.kind == dialect.KeyInt {
		return strconv.FormatInt(k.n, 10)
	}
	return k.s
}

// arg is the key as a bind parameter.
func (k key) arg() any {
	if k.kind == dialect.KeyInt {
		return k.n
	}
	return k.s
}

func parseKey(kind dialect.KeyKind, s string) (key, error) {
	switch kind {
	case dialect.KeyText, dialect.KeyUUID:
		return textKey(kind, s), nil
	case dialect.KeyInt:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return key{}, fmt.Errorf("decode key %q: %w", s, err)
		}
		return intKey(n), nil
	}
	return key{}, fmt.Errorf("decode key %q: unknown key kind %q", s, kind)
}

// span is a half-open range of keys [lo, hi) in the column's order.
type span struct{ lo, hi key }

// intKeyEnd is the exclusive end of an integer range whose last key is
// last; what names the key column or the range in an error.
func intKeyEnd(what string, last int64) (key, error) {
	if last == math.MaxInt64 {
		return key{}, fmt.Errorf("%s: its largest value %d leaves no exclusive end for the last batch", what, last)
	}
	return intKey(last + 1), nil
}

// split cuts an integer span into n nearly equal parts by arithmetic.
func (s span) split(n int) []span {
	if s.lo.kind != dialect.KeyInt || n <= 1 {
		return []span{s}
	}
	width := (s.hi.n - s.lo.n) / int64(n)
	if width < 1 {
		return []span{s}
	}
	var parts []span
	lo := s.lo.n
	for i := 0; i < n; i++ {
		end := lo + width
		if i == n-1 {
			end = s.hi.n
		}
		parts = append(parts, span{intKey(lo), intKey(end)})
		lo = end
	}
	return parts
}

// parts cuts the run's span into one part per worker: integers by
// arithmetic, text and uuid keys at keys the database picks, about
// total/n rows apart, read in one statement so that they are in order.
func (r *runner) parts(ctx context.Context, sp span, total int64) ([]span, error) {
	n := r.job.Settings.maxWorkers()
	if sp.lo.kind == dialect.KeyInt || n <= 1 || r.job.Table == "" || total < int64(n) {
		return sp.split(n), nil
	}
	var offsets []int
	for i := 1; i < n; i++ {
		offsets = append(offsets, int(total*int64(i)/int64(n))-1) // keys after lo: lo is row 0
	}
	cuts, err := dialect.SplitKeys(ctx, r.d, r.job.Table, r.job.Key, sp.lo.s, sp.hi.s, offsets)
	if err != nil {
		return nil, err
	}
	var parts []span
	lo := sp.lo
	for _, c := range cuts {
		if c == lo.s {
			continue // a key that several offsets landed on
		}
		parts = append(parts, span{lo, textKey(lo.kind, c)})
		lo = textKey(lo.kind, c)
	}
	return append(parts, span{lo, sp.hi}), nil
}

// nextHi finds the exclusive end of the next batch of about size rows
// from cur within the part ending at partHi: for integers, size keys on
// from the first row at or after cur (arithmetic, past a gap: ids taken
// from a clock or a jumped sequence leave gaps wider than a batch, and
// walking them batch by batch would take years); for text and uuid keys
// the size-th key the column orders after cur and before partHi, or
// partHi when there are fewer.
func (r *runner) nextHi(ctx context.Context, cur, partHi key, size int) (key, error) {
	if cur.kind == dialect.KeyInt {
		from := cur.n
		if r.job.Table != "" && r.job.Range == nil {
			first, ok, err := dialect.FirstIntKey(ctx, r.d, r.job.Table, r.job.Key, cur.n, partHi.n)
			if err != nil || !ok {
				return partHi, err // no row left in the part: one batch covers the rest
			}
			from = first
		}
		if partHi.n-from <= int64(size) {
			return partHi, nil
		}
		return intKey(from + int64(size)), nil
	}
	if r.job.Table == "" {
		return partHi, nil
	}
	next, ok, err := dialect.NextKey(ctx, r.d, r.job.Table, r.job.Key, cur.s, partHi.s, size-1)
	if err != nil || !ok {
		return partHi, err
	}
	return textKey(cur.kind, next), nil
}

// fraction is how far cur is through [lo, hi), for integer keys.
func fraction(lo, hi, cur key) (float64, bool) {
	if lo.kind != dialect.KeyInt {
		return 0, false
	}
	if hi.n <= lo.n {
		return 1, true
	}
	return float64(cur.n-lo.n) / float64(hi.n-lo.n), true
}
