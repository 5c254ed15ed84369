package evolve

import (
	"context"
	"fmt"
	"strconv"

	"github.com/handoff-dev/handoff/internal/dialect"
)

// A key is an int64 (dialect.KeyInt) or a string (dialect.KeyText). Keys
// are stored as text in the checkpoint tables, integers in decimal.

func encodeKey(v any) string {
	switch k := v.(type) {
	case int64:
		return strconv.FormatInt(k, 10)
	case string:
		return k
	}
	panic(fmt.Sprintf("evolve: key of type %T", v))
}

func decodeKey(kind dialect.KeyKind, s string) (any, error) {
	if kind == dialect.KeyText {
		return s, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("decode key %q: %w", s, err)
	}
	return n, nil
}

// keyLess orders keys as Go does; for text keys that is byte order, which
// agrees with the database's for the ASCII keys that text keys usually are.
func keyLess(a, b any) bool {
	switch x := a.(type) {
	case int64:
		return x < b.(int64)
	case string:
		return x < b.(string)
	}
	return false
}

// successor returns a key just above k: the exclusive end of a range whose
// largest key is k.
func successor(k any) any {
	switch x := k.(type) {
	case int64:
		return x + 1
	case string:
		// No text value lies between s and s+"\x01" in byte order, and
		// Postgres text cannot hold "\x00".
		return x + "\x01"
	}
	return k
}

// span is a half-open range of keys [lo, hi).
type span struct{ lo, hi any }

// split cuts an integer span into n nearly equal parts; other spans are
// walked by one worker, since their keys cannot be divided by arithmetic.
func (s span) split(n int) []span {
	lo, ok := s.lo.(int64)
	if !ok || n <= 1 {
		return []span{s}
	}
	hi := s.hi.(int64)
	width := (hi - lo) / int64(n)
	if width < 1 {
		return []span{s}
	}
	var parts []span
	for i := 0; i < n; i++ {
		end := lo + width
		if i == n-1 {
			end = hi
		}
		parts = append(parts, span{lo, end})
		lo = end
	}
	return parts
}

// nextHi finds the end of the next batch of size rows starting at cur
// within part: arithmetic for integer keys, keyset for text keys.
func (r *runner) nextHi(ctx context.Context, cur, partHi any, size int) (any, error) {
	if c, ok := cur.(int64); ok {
		return min(c+int64(size), partHi.(int64)), nil
	}
	if r.job.Table == "" {
		return partHi, nil
	}
	next, ok, err := r.d.KeyAfter(ctx, r.job.Table, r.job.Key, cur, size)
	if err != nil {
		return nil, err
	}
	if !ok || !keyLess(next, partHi) {
		return partHi, nil
	}
	return next, nil
}

// fraction is how far cur is through [lo, hi), for integer keys.
func fraction(lo, hi, cur any) (float64, bool) {
	l, ok := lo.(int64)
	if !ok {
		return 0, false
	}
	h, c := hi.(int64), cur.(int64)
	if h <= l {
		return 1, true
	}
	return float64(c-l) / float64(h-l), true
}
