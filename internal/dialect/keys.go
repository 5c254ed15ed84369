package dialect

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Keys are ordered by the database, in the key column's own order: its
// type's, and for text its collation's (an ICU collation puts "a" before
// "B", byte order after it; SQLite's NOCASE folds case; RTRIM ignores
// trailing spaces). Every question that orders text or uuid keys is asked
// as a query on the column itself, so that the column's collation decides
// it; only integers are compared in Go, where arithmetic is exact. Text
// and uuid keys travel as the database prints them.

// IntKeyBounds returns the smallest and largest key of an integer key
// column, and false when no row has a key.
func IntKeyBounds(ctx context.Context, d Dialect, table, column string) (lo, hi int64, ok bool, err error) {
	q := fmt.Sprintf(`SELECT min(%[1]s), max(%[1]s) FROM %[2]s`, d.Quote(column), d.Quote(table))
	var l, h sql.NullInt64
	if err := d.DB().QueryRowContext(ctx, q).Scan(&l, &h); err != nil {
		return 0, 0, false, fmt.Errorf("read key bounds of %s: %w", table, err)
	}
	return l.Int64, h.Int64, l.Valid, nil
}

// KeyEnds returns the first and the last key of table in the column's
// order, read in one statement, and false when no row has a key.
func KeyEnds(ctx context.Context, d Dialect, table, column string) (first, last string, ok bool, err error) {
	one := `(SELECT %[1]s FROM %[2]s WHERE %[1]s IS NOT NULL ORDER BY %[1]s %[3]s LIMIT 1)`
	k, t := d.Quote(column), d.Quote(table)
	q := `SELECT ` + fmt.Sprintf(one, k, t, "ASC") + `, ` + fmt.Sprintf(one, k, t, "DESC")
	var f, l sql.NullString
	if err := d.DB().QueryRowContext(ctx, q).Scan(&f, &l); err != nil {
		return "", "", false, fmt.Errorf("read key bounds of %s: %w", table, err)
	}
	return f.String, l.String, f.Valid && l.Valid, nil
}

// NextKey returns the key offset rows after the first key that the column
// orders strictly after after and strictly before below (offset 0 is that
// first key), and false when there is none.
func NextKey(ctx context.Context, d Dialect, table, column, after, below string, offset int) (string, bool, error) {
	k := d.Quote(column)
	q := fmt.Sprintf(`SELECT %[1]s FROM %[2]s WHERE %[1]s > %[3]s AND %[1]s < %[4]s ORDER BY %[1]s LIMIT 1 OFFSET %[5]d`,
		k, d.Quote(table), d.Param(1), d.Param(2), max(offset, 0))
	var key string
	err := d.DB().QueryRowContext(ctx, q, after, below).Scan(&key)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("find next key of %s: %w", table, err)
	}
	return key, true, nil
}

// FirstIntKey returns the smallest integer key in [from, below), and
// false when there is none.
func FirstIntKey(ctx context.Context, d Dialect, table, column string, from, below int64) (int64, bool, error) {
	k := d.Quote(column)
	q := fmt.Sprintf(`SELECT min(%[1]s) FROM %[2]s WHERE %[1]s >= %[3]s AND %[1]s < %[4]s`, k, d.Quote(table), d.Param(1), d.Param(2))
	var key sql.NullInt64
	if err := d.DB().QueryRowContext(ctx, q, from, below).Scan(&key); err != nil {
		return 0, false, fmt.Errorf("find next key of %s: %w", table, err)
	}
	return key.Int64, key.Valid, nil
}

// SplitKeys returns, for each offset, the key that many rows after the
// first key strictly between after and below (as NextKey), all read in one
// statement so that they are in the column's order among themselves; a
// key past the last is left out.
func SplitKeys(ctx context.Context, d Dialect, table, column, after, below string, offsets []int) ([]string, error) {
	if len(offsets) == 0 {
		return nil, nil
	}
	k, t := d.Quote(column), d.Quote(table)
	cols := make([]string, len(offsets))
	for i, off := range offsets {
		cols[i] = fmt.Sprintf(`(SELECT %[1]s FROM %[2]s WHERE %[1]s > %[3]s AND %[1]s < %[4]s ORDER BY %[1]s LIMIT 1 OFFSET %[5]d)`,
			k, t, d.Param(1), d.Param(2), max(off, 0))
	}
	vals := make([]sql.NullString, len(offsets))
	dst := make([]any, len(offsets))
	for i := range vals {
		dst[i] = &vals[i]
	}
	if err := d.DB().QueryRowContext(ctx, `SELECT `+strings.Join(cols, ", "), after, below).Scan(dst...); err != nil {
		return nil, fmt.Errorf("split keys of %s: %w", table, err)
	}
	var keys []string
	for _, v := range vals {
		if v.Valid {
			keys = append(keys, v.String)
		}
	}
	return keys, nil
}

// KeyAbove returns a value that the column orders after every key now in
// table, for the exclusive end of a range whose last key is last. The
// candidates are built from last (uuid: the next uuid; text: last with a
// character of the highest weight appended), and the database judges
// each: the first with no key at or above it is returned.
func KeyAbove(ctx context.Context, d Dialect, table, column string, kind KeyKind, last string) (string, error) {
	var cands []string
	switch kind {
	case KeyUUID:
		if next, ok := nextUUID(last); ok {
			cands = append(cands, next)
		}
	case KeyText:
		// U+FFFF has the highest primary weight in the Unicode collation
		// algorithm's tables (ICU) and sorts after every character in
		// UTF-8 byte order; the others are for collations and encodings
		// that treat it otherwise.
		for _, s := range []string{"\uffff", "\U0010ffff", "\u00ff", "~", "z", "Z", "\u007f"} {
			cands = append(cands, last+s)
		}
	}
	k := d.Quote(column)
	q := fmt.Sprintf(`SELECT count(*) FROM (SELECT 1 FROM %[2]s WHERE %[1]s >= %[3]s LIMIT 1) x`, k, d.Quote(table), d.Param(1))
	var errs []error
	for _, c := range cands {
		var n int
		if err := d.DB().QueryRowContext(ctx, q, c).Scan(&n); err != nil {
			errs = append(errs, err) // an encoding that cannot hold the candidate
			continue
		}
		if n == 0 {
			return c, nil
		}
	}
	return "", errors.Join(fmt.Errorf("key %s.%s: no value sorts after its last key %q, so a range cannot end above it", table, column, last),
		errors.Join(errs...))
}

// nextUUID adds one to a uuid read as a 128-bit number: uuids compare as
// their bytes do (Postgres's uuid_cmp is memcmp).
func nextUUID(s string) (string, bool) {
	hex := []byte(strings.ReplaceAll(s, "-", ""))
	if len(hex) != 32 {
		return "", false
	}
	for i := len(hex) - 1; i >= 0; i-- {
		v, err := strconv.ParseUint(string(hex[i]), 16, 8)
		if err != nil {
			return "", false
		}
		if v < 15 {
			hex[i] = strconv.FormatUint(v+1, 16)[0]
			h := string(hex)
			return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32], true
		}
		hex[i] = '0'
	}
	return "", false // ffffffff-ffff-ffff-ffff-ffffffffffff has no successor
}

// CountKeys counts the rows whose key lies in [lo, hi) in the column's order.
func CountKeys[K int64 | string](ctx context.Context, d Dialect, table, column string, lo, hi K) (int64, error) {
	k := d.Quote(column)
	q := fmt.Sprintf(`SELECT count(*) FROM %[2]s WHERE %[1]s >= %[3]s AND %[1]s < %[4]s`, k, d.Quote(table), d.Param(1), d.Param(2))
	var n int64
	if err := d.DB().QueryRowContext(ctx, q, lo, hi).Scan(&n); err != nil {
		return 0, fmt.Errorf("count rows of %s: %w", table, err)
	}
	return n, nil
}

// NullKeys counts the rows of table whose key is NULL: they lie in no
// range, so a walk over the keys cannot reach them.
func NullKeys(ctx context.Context, d Dialect, table, column string) (int64, error) {
	q := fmt.Sprintf(`SELECT count(*) FROM %[2]s WHERE %[1]s IS NULL`, d.Quote(column), d.Quote(table))
	var n int64
	if err := d.DB().QueryRowContext(ctx, q).Scan(&n); err != nil {
		return 0, fmt.Errorf("count NULL keys of %s: %w", table, err)
	}
	return n, nil
}

// HasRows reports whether table has any row.
func HasRows(ctx context.Context, d Dialect, table string) (bool, error) {
	var n int
	if err := d.DB().QueryRowContext(ctx, `SELECT count(*) FROM (SELECT 1 FROM `+d.Quote(table)+` LIMIT 1) x`).Scan(&n); err != nil {
		return false, fmt.Errorf("read rows of %s: %w", table, err)
	}
	return n > 0, nil
}
