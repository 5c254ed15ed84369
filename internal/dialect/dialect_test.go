package dialect

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/testdb"
)

// backends names every dialect the contract suite runs against.
var backends = map[string]func(t *testing.T) string{
	"sqlite":   func(t *testing.T) string { return testdb.SQLite(t) },
	"postgres": func(t *testing.T) string { return testdb.Postgres(t) },
}

func open(t *testing.T, url string) Dialect {
	t.Helper()
	d, err := Open(context.Background(), url, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Error(err)
		}
	})
	return d
}

// TestDialectContract runs one body against every dialect.
func TestDialectContract(t *testing.T) {
	for name, url := range backends {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			d := open(t, url(t))
			exec(t, d, `CREATE TABLE items (id bigint PRIMARY KEY, code text NOT NULL, title text)`)
			exec(t, d, `CREATE INDEX items_code ON items (code)`)
			for i := 1; i <= 20; i++ {
				exec(t, d, `INSERT INTO items (id, code, title) VALUES (`+d.Param(1)+`, `+d.Param(2)+`, 'x')`, i*3, string(rune('a'+i)))
			}
			t.Run("keys", func(t *testing.T) { checkKeys(ctx, t, d) })
			t.Run("syntax", func(t *testing.T) { checkSyntax(ctx, t, d) })
			t.Run("conflict", func(t *testing.T) { checkConflict(ctx, t, d) })
			if !d.NoTransaction("VACUUM") || d.NoTransaction("ALTER TABLE items ADD COLUMN x int") {
				t.Error("VACUUM runs outside a transaction, ALTER TABLE inside one")
			}
			if ok, valid, err := d.IndexValid(ctx, "items", "items_code"); ok == "" || !valid || err != nil {
				t.Errorf("index items_code: exists=%v valid=%v err=%v", ok, valid, err)
			}
			if ok, _, err := d.IndexValid(ctx, "items", "nope"); ok != "" || err != nil {
				t.Errorf("missing index: exists=%v err=%v", ok, err)
			}
			if lag, err := d.ReplicationLag(ctx); lag != 0 || err != nil {
				t.Errorf("replication lag without replicas: %v %v", lag, err)
			}
		})
	}
}

func exec(t *testing.T, d Dialect, q string, args ...any) {
	t.Helper()
	if _, err := d.DB().Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func checkKeys(ctx context.Context, t *testing.T, d Dialect) {
	if k, err := d.KeyKind(ctx, "items", "id"); k != KeyInt || err != nil {
		t.Errorf("id: %v %v", k, err)
	}
	if k, err := d.KeyKind(ctx, "items", "code"); k != KeyText || err != nil {
		t.Errorf("code: %v %v", k, err)
	}
	if _, err := d.KeyKind(ctx, "items", "nope"); err == nil {
		t.Error("a missing key column is an error")
	}
	lo, hi, ok, err := IntKeyBounds(ctx, d, "items", "id")
	if !ok || err != nil || lo != 3 || hi != 60 {
		t.Errorf("bounds: %v %v %v %v", lo, hi, ok, err)
	}
	first, last, ok, err := KeyEnds(ctx, d, "items", "code")
	if !ok || err != nil || first != "b" || last != "u" {
		t.Errorf("text ends: %q %q %v %v", first, last, ok, err)
	}
	next, ok, err := NextKey(ctx, d, "items", "code", "c", "z", 1)
	if !ok || err != nil || next != "e" {
		t.Errorf("text keyset: %v %v %v", next, ok, err)
	}
	if _, ok, _ := NextKey(ctx, d, "items", "code", "c", "e", 1); ok {
		t.Error("a key at the range's exclusive end is outside it")
	}
	split, err := SplitKeys(ctx, d, "items", "code", "b", "z", []int{4, 9, 40})
	if err != nil || fmt.Sprint(split) != "[g l]" {
		t.Errorf("split: %q %v", split, err)
	}
	above, err := KeyAbove(ctx, d, "items", "code", KeyText, last)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := CountKeys(ctx, d, "items", "code", first, above); n != 20 || err != nil {
		t.Errorf("rows in [first, above last): %d %v", n, err)
	}
	if n, err := CountKeys(ctx, d, "items", "id", int64(4), int64(12)); n != 2 || err != nil {
		t.Errorf("rows in [4, 12): %d %v", n, err)
	}
	if n, err := NullKeys(ctx, d, "items", "title"); n != 0 || err != nil {
		t.Errorf("NULL titles: %d %v", n, err)
	}
	if ok, err := HasRows(ctx, d, "items"); !ok || err != nil {
		t.Errorf("has rows: %v %v", ok, err)
	}
	if n, err := d.EstimateRows(ctx, "items"); n != 20 || err != nil {
		t.Errorf("rows: %d %v", n, err)
	}
}

func checkSyntax(ctx context.Context, t *testing.T, d Dialect) {
	if err := d.CheckSyntax(ctx, "ALTER TABLE not_yet ADD COLUMN x int"); err != nil {
		t.Errorf("a well-formed statement on a missing table: %v", err)
	}
	err := d.CheckSyntax(ctx, "UPDATE items\nSET title = 'a'\nWHER id = 1")
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("a misspelt WHERE: got %v, want a syntax error", err)
	}
	if d.Name() == "postgres" && se.Line != 3 {
		t.Errorf("syntax error line: got %d, want 3 (%v)", se.Line, se)
	}
	var n int
	if err := d.DB().QueryRow(`SELECT count(*) FROM items WHERE title = 'a'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("checking syntax changed data: %d %v", n, err)
	}
}

// checkConflict holds a write lock in one transaction and shows that a
// second writer gives up within its lock timeout with a retryable error.
func checkConflict(ctx context.Context, t *testing.T, d Dialect) {
	holder, err := d.BeginWrite(ctx, 0, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Rollback()
	if _, err := holder.Exec(`UPDATE items SET title = 'held' WHERE id = 3`); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = func() error {
		tx, err := d.BeginWrite(ctx, 0, 100*time.Millisecond)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		_, err = tx.Exec(`UPDATE items SET title = 'second' WHERE id = 3`)
		return err
	}()
	if err == nil {
		t.Fatal("second writer did not wait for the lock")
	}
	if c := d.Classify(err); !c.Retryable() {
		t.Errorf("lock conflict classified as %v (%v)", c, err)
	}
	if waited := time.Since(start); waited > 2*time.Second {
		t.Errorf("second writer waited %v, want about the lock timeout", waited)
	}
	if d.Classify(errors.New("boom")).Retryable() {
		t.Error("an unknown error is permanent")
	}
}

// TestEnsureTablesConcurrent has several processes' worth of pools create
// the same tables at the same moment, as two handoff commands starting
// together do; every one must succeed.
func TestEnsureTablesConcurrent(t *testing.T) {
	for name, url := range backends {
		t.Run(name, func(t *testing.T) {
			u := url(t)
			pools := make([]Dialect, 6)
			for i := range pools {
				pools[i] = open(t, u)
			}
			for round := range 5 {
				stmt := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS book_%d (id bigint PRIMARY KEY, note text)`, round)
				errs := make(chan error, len(pools))
				for _, d := range pools {
					go func() { errs <- d.EnsureTables(context.Background(), stmt) }()
				}
				for range pools {
					if err := <-errs; err != nil && !d0Busy(pools[0], err) {
						t.Fatalf("round %d: %v", round, err)
					}
				}
			}
		})
	}
}

// d0Busy tolerates SQLite's busy answer, which callers retry; Postgres must
// never fail here.
func d0Busy(d Dialect, err error) bool { return d.Name() == "sqlite" && d.Classify(err) == Busy }

// TestKeysInCollationOrder: an ICU collation orders "a" before "B", byte
// order after it; the key functions follow the column, and a uuid's end
// lies above its last key.
func TestKeysInCollationOrder(t *testing.T) {
	ctx := context.Background()
	d := open(t, testdb.Postgres(t))
	exec(t, d, `CREATE TABLE items (code text COLLATE "en-US-x-icu" PRIMARY KEY, u uuid)`)
	exec(t, d, `INSERT INTO items (code, u) VALUES ('a', 'ffffffff-ffff-ffff-ffff-fffffffffffe'), ('B', NULL), ('c', '00000000-0000-0000-0000-0000000000ff')`)
	if k, err := d.KeyKind(ctx, "items", "u"); k != KeyUUID || err != nil {
		t.Errorf("uuid: %v %v", k, err)
	}
	first, last, ok, err := KeyEnds(ctx, d, "items", "code")
	if first != "a" || last != "c" || !ok || err != nil {
		t.Fatalf("ends: %q %q %v %v", first, last, ok, err)
	}
	if next, ok, err := NextKey(ctx, d, "items", "code", "a", "c", 0); next != "B" || !ok || err != nil {
		t.Errorf("after a: %q %v %v", next, ok, err)
	}
	above, err := KeyAbove(ctx, d, "items", "code", KeyText, last)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := CountKeys(ctx, d, "items", "code", first, above); n != 3 || err != nil {
		t.Errorf("rows in [a, above c): %d %v", n, err)
	}
	if above, err := KeyAbove(ctx, d, "items", "u", KeyUUID, "ffffffff-ffff-ffff-ffff-fffffffffffe"); above != "ffffffff-ffff-ffff-ffff-ffffffffffff" || err != nil {
		t.Errorf("above the last uuid: %q %v", above, err)
	}
	if _, err := KeyAbove(ctx, d, "items", "u", KeyUUID, "ffffffff-ffff-ffff-ffff-ffffffffffff"); err == nil {
		t.Error("no uuid lies above the largest")
	}
	if n, err := NullKeys(ctx, d, "items", "u"); n != 1 || err != nil {
		t.Errorf("NULL uuids: %d %v", n, err)
	}
}

// A URL of another database (or a mistyped scheme) is refused before it
// is opened, its password in no error: it was opened as a SQLite path,
// and the whole URL echoed in the error.
func TestOpenRefusesOtherSchemesWithoutTheirPassword(t *testing.T) {
	_, err := Open(context.Background(), "mysql://app:hunter2@db.internal:3306/app", time.Second)
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), `"mysql"`) {
		t.Fatalf("want a refusal naming the scheme alone: %v", err)
	}
}
