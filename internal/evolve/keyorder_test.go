package evolve

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// The test binary is also the process that a test kills with SIGKILL in
// the middle of a backfill (after tableflip's tests): run with envChild
// set, it runs counterJob on the database named by envChildDB and exits.
const (
	envChild   = "EVOLVE_TEST_CHILD"
	envChildDB = "EVOLVE_TEST_DB"
)

func TestMain(m *testing.M) {
	if os.Getenv(envChild) == "" {
		os.Exit(m.Run())
	}
	// A child outlives its test only if the test binary dies; cap the damage.
	time.AfterFunc(2*time.Minute, func() { os.Exit(9) })
	ctx := context.Background()
	d, err := dialect.Open(ctx, os.Getenv(envChildDB), 100*time.Millisecond)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	s := keyOrderSettings()
	s.Rate = 1500 // slow enough to be killed in the middle
	if _, err := Run(ctx, d, counterJob(d, s), nil); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// counterJob adds one to n of every row in its batch: a row the walk
// skips or covers twice shows as n other than 1.
func counterJob(d dialect.Dialect, s Settings) Job {
	return Job{Name: "0001_count", Table: "items", Key: "k", Settings: s, Statements: []string{
		`UPDATE items SET n = n + 1 WHERE k >= ` + d.Param(1) + ` AND k < ` + d.Param(2),
	}}
}

func keyOrderSettings() Settings {
	s := fast()
	s.Batch, s.Workers = 37, 3
	return s
}

// adversarialKeys are keys whose order differs between byte order and the
// usual collations: case, accents (precomposed and combining), punctuation
// and spaces that ICU ignores at the first level, prefixes, the empty
// string, digits compared as text.
var adversarialKeys = []string{
	"", " ", "  ", "\t", "a", "A", "a ", " a", "ab", "aB", "Ab", "AB", "a b", "a-b", "a_b", "a.b", "a'b", "-ab", "_ab",
	"abc", "abcd", "abcde", "ABC", "Abc", "é", "e", "E", "É", "e\u0301", "ê", "ë", "ez", "éz", "resume", "résumé",
	"Résumé", "RESUME", "co-op", "coop", "co op", "Coop", "1", "01", "10", "2", "9", "z", "Z", "zz", "~", "!",
	"\u00a0", "ß", "ss", "SS", "straße", "strasse", "Straße", "æ", "ae", "Æ", "ø", "o", "œ", "oe", "ı", "i", "İ",
	"I", "ﬁ", "fi", "中", "中文", "😀", "a😀", "zzz", "ZZZ", "\u00ff", "\u0100", "ǆ", "dž", "Ǆ",
}

// keyPieces build random keys that mix the same hazards.
var keyPieces = []string{"a", "A", "b", "B", "z", "Z", "é", "É", "e\u0301", "e", "ß", "s", " ", "-", "_", ".", "'",
	"!", "~", "0", "1", "9", "ä", "Ä", "ø", "æ", "中", "😀", "ı", "I", "ǆ"}

// asciiKeys are for SQLite, whose NOCASE folds ASCII letters only; the
// largest key in NOCASE order is upper case, so that byte order puts the
// lower-case keys after it.
var asciiKeys = []string{"", " ", "a", "A", "B", "b", "a ", "a  ", "ab", "aB", "AB", "a-b", "a_b", "_", "[", "^", "`",
	"0", "10", "9", "z", "Z", "zz", "ZZZZZZZZZZ"}

var asciiPieces = []string{"a", "A", "b", "B", "y", "Y", "z", "Z", " ", "-", "_", "[", "`", "0", "9"}

func randomTextKeys(rng *rand.Rand, n int, fixed, pieces []string) []string {
	keys := append([]string(nil), fixed...)
	for len(keys) < n {
		var b strings.Builder
		for range rng.IntN(7) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		keys = append(keys, b.String())
	}
	return keys
}

func randomUUIDs(rng *rand.Rand, n int) []string {
	keys := []string{
		"00000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-000000000001",
		"7fffffff-ffff-ffff-ffff-ffffffffffff", "80000000-0000-0000-0000-000000000000",
		"ffffffff-ffff-ffff-ffff-fffffffffffe", "0000000a-0000-0000-0000-000000000000",
		"a0000000-0000-0000-0000-000000000000", "00000000-0000-0000-0000-0000000000ff",
	}
	for len(keys) < n {
		var b [16]byte
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		if rng.IntN(4) == 0 { // long shared prefixes
			copy(b[:12], []byte("\x12\x34\x56\x78\x9a\xbc\xde\xf0\x12\x34\x56\x78"))
		}
		keys = append(keys, fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
	}
	return keys
}

// insertKeys fills items with keys, leaving out those the column holds
// equal to one already there, and returns how many rows it has.
func insertKeys(t *testing.T, d dialect.Dialect, keys []string) int {
	t.Helper()
	tx, err := d.DB().Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	for _, k := range keys {
		if _, err := tx.Exec(`INSERT INTO items (k) VALUES (`+d.Param(1)+`) ON CONFLICT DO NOTHING`, k); err != nil {
			t.Fatalf("insert %q: %v", k, err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := d.DB().QueryRow(`SELECT count(*) FROM items`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// checkCounters asserts that every row was changed exactly once.
func checkCounters(t *testing.T, d dialect.Dialect, rows int) {
	t.Helper()
	res, err := d.DB().Query(`SELECT k, n FROM items WHERE n <> 1 ORDER BY k LIMIT 10`)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	var bad []string
	for res.Next() {
		var k string
		var n int
		if err := res.Scan(&k, &n); err != nil {
			t.Fatal(err)
		}
		bad = append(bad, fmt.Sprintf("%q:%d", k, n))
	}
	var wrong int
	if err := d.DB().QueryRow(`SELECT count(*) FROM items WHERE n <> 1`).Scan(&wrong); err != nil {
		t.Fatal(err)
	}
	if wrong > 0 {
		t.Fatalf("%d of %d rows not changed exactly once, e.g. %s", wrong, rows, strings.Join(bad, " "))
	}
}

// killMidway runs the backfill in a child process and kills it with
// SIGKILL once it has committed some rows (or lets it end, if it ends
// first: a run of nothing is caught by the checks that follow).
func killMidway(t *testing.T, url string, d dialect.Dialect, after int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=1", envChildDB+"="+url)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			t.Logf("the child ended before it was killed: %v %s", err, out.String())
			return
		case <-time.After(10 * time.Millisecond):
		}
		var rows sql.NullInt64
		d.DB().QueryRow(`SELECT sum(rows) FROM handoff_evolve_parts WHERE name = '0001_count'`).Scan(&rows)
		if rows.Int64 >= int64(after) || time.Now().After(deadline) {
			break
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-exited
	var rows sql.NullInt64
	d.DB().QueryRow(`SELECT sum(rows) FROM handoff_evolve_parts WHERE name = '0001_count'`).Scan(&rows)
	t.Logf("killed the child after %d rows", rows.Int64)
}

// interrupted runs the backfill and cancels it after a few batches.
func interrupted(t *testing.T, d dialect.Dialect) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	batches := 0
	_, err := Run(ctx, d, counterJob(d, keyOrderSettings()), func(e Event) {
		if e.Kind == EventBatch {
			if batches++; batches == 5 {
				cancel()
			}
		}
	})
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
}

// backfillEveryRowOnce is the property: however the keys sort, a backfill
// killed with SIGKILL, resumed, cancelled and resumed again changes every
// row exactly once, reports every row, and is finished.
func backfillEveryRowOnce(t *testing.T, url string, d dialect.Dialect, rows int) {
	killMidway(t, url, d, rows/4)
	interrupted(t, d)
	res, err := Run(context.Background(), d, counterJob(d, keyOrderSettings()), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.UpToDate {
		t.Fatalf("a backfill of %d rows said it was up to date: %+v", rows, res)
	}
	checkCounters(t, d, rows)
	st, err := Get(context.Background(), d, "0001_count")
	if err != nil {
		t.Fatal(err)
	}
	if !st.Finished || st.State != StateDone || st.Rows != int64(rows) {
		t.Fatalf("status %+v, want done and finished with %d rows", st, rows)
	}
}

// TestKeyOrderPostgres: text keys under byte-order, libc and ICU
// collations, and uuid keys, walked by the database's own order.
func TestKeyOrderPostgres(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("EVOLVE_TEST_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("EVOLVE_TEST_SEED=%d", seed)
	cases := []struct{ name, column, collation string }{
		{"C", `text COLLATE "C"`, "C"},
		{"C.utf8", `text COLLATE "C.utf8"`, "C.utf8"},
		{"libc-en_US", `text COLLATE "en_US.utf8"`, "en_US.utf8"}, // with Debian's locales package
		{"icu", `text COLLATE "en-US-x-icu"`, "en-US-x-icu"},
		{"icu-varchar", `varchar(40) COLLATE "und-x-icu"`, "und-x-icu"},
		{"icu-char", `character(16) COLLATE "en-US-x-icu"`, "en-US-x-icu"},
		// Case- and accent-insensitive: "a" and "A" are one key.
		{"icu-nondeterministic", `text COLLATE ci`, "und-x-icu"},
		{"uuid", `uuid`, ""},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			url := testdb.Postgres(t)
			d := open(t, url)
			if c.collation != "" {
				var ok bool
				if err := d.DB().QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_collation WHERE collname = $1)`, c.collation).Scan(&ok); err != nil {
					t.Fatal(err)
				}
				// A locale generated after the server's initdb has no
				// collation yet: make one, in this database only.
				if _, err := d.DB().Exec(`CREATE COLLATION "` + c.collation + `" (provider = libc, locale = '` + c.collation + `')`); !ok && err != nil {
					t.Skipf("the server has no collation %q (%v); for libc ones: apt-get install locales, locale-gen, restart the server", c.collation, err)
				}
			}
			mustExec(t, d, `CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level1', deterministic = false)`)
			mustExec(t, d, `CREATE TABLE items (k `+c.column+` PRIMARY KEY, n int NOT NULL DEFAULT 0)`)
			rng := rand.New(rand.NewPCG(seed, uint64(i)))
			keys := randomTextKeys(rng, 2500, adversarialKeys, keyPieces)
			if c.name == "uuid" {
				keys = randomUUIDs(rng, 2500)
			}
			rows := insertKeys(t, d, keys)
			backfillEveryRowOnce(t, url, d, rows)
		})
	}
}

// TestKeyOrderSQLite: the same over SQLite's collations; NOCASE puts "a"
// before "B", byte order after it.
func TestKeyOrderSQLite(t *testing.T) {
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	for _, coll := range []string{"BINARY", "NOCASE", "RTRIM"} {
		t.Run(coll, func(t *testing.T) {
			url := testdb.SQLite(t)
			d := open(t, url)
			mustExec(t, d, `CREATE TABLE items (k text COLLATE `+coll+` PRIMARY KEY, n int NOT NULL DEFAULT 0)`)
			rows := insertKeys(t, d, randomTextKeys(rng, 1500, asciiKeys, asciiPieces))
			backfillEveryRowOnce(t, url, d, rows)
		})
	}
}

// TestUnsupportedKeyRefused: a key of another type is refused, naming the
// table and column, before anything is recorded or run.
func TestUnsupportedKeyRefused(t *testing.T) {
	for name, url := range backends {
		t.Run(name, func(t *testing.T) {
			d := open(t, url(t))
			typ := "numeric"
			if name == "sqlite" {
				typ = "blob"
			}
			mustExec(t, d, `CREATE TABLE items (k `+typ+` PRIMARY KEY, n int NOT NULL DEFAULT 0)`)
			mustExec(t, d, `INSERT INTO items (k) VALUES (1)`)
			_, err := Run(context.Background(), d, counterJob(d, fast()), nil)
			if !errors.Is(err, dialect.ErrUnsupportedKey) || !strings.Contains(err.Error(), "items.k") {
				t.Fatalf("want an unsupported key naming items.k, got %v", err)
			}
			if _, err := Get(context.Background(), d, "0001_count"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("a refused backfill left a record: %v", err)
			}
			var n int
			d.DB().QueryRow(`SELECT count(*) FROM items WHERE n <> 0`).Scan(&n)
			if n != 0 {
				t.Fatalf("a refused backfill changed %d rows", n)
			}
		})
	}
}

// TestNullKeysRefused: rows with a NULL key lie in no range; a backfill
// that would leave them out is an error.
func TestNullKeysRefused(t *testing.T) {
	for name, url := range backends {
		t.Run(name, func(t *testing.T) {
			d := open(t, url(t))
			mustExec(t, d, `CREATE TABLE items (id int, k text, n int NOT NULL DEFAULT 0)`)
			mustExec(t, d, `INSERT INTO items (id, k) VALUES (1, 'a'), (2, NULL), (3, 'b')`)
			_, err := Run(context.Background(), d, counterJob(d, fast()), nil)
			if err == nil || !strings.Contains(err.Error(), "items.k") || !strings.Contains(err.Error(), "NULL") {
				t.Fatalf("want an error about NULL keys in items.k, got %v", err)
			}
			if ok, _ := Finished(context.Background(), d, "0001_count"); ok {
				t.Fatal("a backfill that left rows out is finished")
			}
		})
	}
}

// TestNothingDoneIsAnError: a first pass whose walk covered none of the
// table's rows (here: a checkpoint whose range misses them all, as a walk
// in the wrong order leaves) is an error naming the table and the range,
// not "done"; a pass whose statement had nothing to change is done.
func TestNothingDoneIsAnError(t *testing.T) {
	for name, url := range backends {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			d := open(t, url(t))
			seed(t, d, 100)
			if err := EnsureSchema(ctx, d); err != nil {
				t.Fatal(err)
			}
			mustExec(t, d, `INSERT INTO handoff_evolve (name, state, run, key_kind, range_lo, range_hi, owner, heartbeat, started_at)
				VALUES ('0001_lower', 'running', 1, 'int', '500', '600', 'gone:1', '', '')`)
			mustExec(t, d, `INSERT INTO handoff_evolve_parts (name, part, lo, hi, cursor) VALUES ('0001_lower', 0, '500', '600', '600')`)
			_, err := Run(ctx, d, sqlJob(d, fast()), nil)
			if err == nil || !strings.Contains(err.Error(), "items") || !strings.Contains(err.Error(), "[500, 600)") {
				t.Fatalf("want an error naming items and [500, 600), got %v", err)
			}
			if st, _ := Get(ctx, d, "0001_lower"); st.Finished || st.State != StateFailed {
				t.Fatalf("status after a pass that saw no rows: %+v", st)
			}
			// The next run starts the pass over, on the keys it finds.
			if res, err := Run(ctx, d, sqlJob(d, fast()), nil); err != nil || res.Rows == 0 {
				t.Fatalf("the pass started over: %+v %v", res, err)
			}
			checkOnce(t, d, 100)

			job := sqlJob(d, fast())
			job.Name = "0002_noop"
			job.Statements[0] += " AND 1 = 0"
			if res, err := Run(ctx, d, job, nil); err != nil || res.Rows != 0 {
				t.Fatalf("a pass with nothing to change: %+v %v", res, err)
			}
			if ok, err := Finished(ctx, d, "0002_noop"); !ok || err != nil {
				t.Fatalf("a pass that covered every row with nothing to change is not finished: %v", err)
			}
		})
	}
}

// TestICUFirstAfterLast is the report: under an ICU collation the first
// key ("apple") is after the last ("Date") in byte order. The backfill
// said "up to date" and was done with none of the rows changed.
func TestICUFirstAfterLast(t *testing.T) {
	ctx := context.Background()
	d := open(t, testdb.Postgres(t))
	mustExec(t, d, `CREATE TABLE items (k text COLLATE "en-US-x-icu" PRIMARY KEY, n int NOT NULL DEFAULT 0)`)
	mustExec(t, d, `INSERT INTO items (k) VALUES ('apple'), ('Banana'), ('cherry'), ('Date')`)
	res, err := Run(ctx, d, counterJob(d, fast()), nil)
	if err != nil || res.UpToDate || res.Rows != 4 {
		t.Fatalf("a first run over 4 rows: %+v %v", res, err)
	}
	checkCounters(t, d, 4)
	st, err := Get(ctx, d, "0001_count")
	if err != nil || st.Lo != "apple" || !st.Finished {
		t.Fatalf("status %+v %v", st, err)
	}
}
