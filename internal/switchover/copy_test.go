package switchover

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/migrate"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// roGateway is the gateway as a migrate-on-copy sees it: a read-only mode
// that refuses new writes (the 503 a client would get) and a hold that
// waits for the writes already admitted.
type roGateway struct {
	mu       sync.Mutex
	cond     *sync.Cond
	on       bool
	inFlight int
	ons      []time.Duration
	offs     int
}

func newROGateway() *roGateway {
	g := &roGateway{}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *roGateway) On(_ context.Context, d time.Duration) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.on = true
	g.ons = append(g.ons, d)
	return nil
}

func (g *roGateway) Off(context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.on = false
	g.offs++
	return nil
}

func (g *roGateway) isOn() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.on
}

// admit is a write request arriving: refused while read-only is on.
func (g *roGateway) admit() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.on {
		return false
	}
	g.inFlight++
	return true
}

func (g *roGateway) done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inFlight--
	g.cond.Broadcast()
}

func (g *roGateway) Hold(ctx context.Context) (func(), error) {
	stop := context.AfterFunc(ctx, func() { g.mu.Lock(); g.cond.Broadcast(); g.mu.Unlock() })
	defer stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.inFlight > 0 {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		g.cond.Wait()
	}
	return func() {}, nil
}

// siteLoad is an app behind the gateway: writers whose writes are refused
// while read-only is on (counted, not failures) and readers that must
// never fail.
type siteLoad struct {
	writes             *load
	reads, failedReads atomic.Int64
	readErr            atomic.Value
	stop               chan struct{}
	wg                 sync.WaitGroup
}

func startSite(t *testing.T, ep *appDB, gw *roGateway) *siteLoad {
	s := &siteLoad{stop: make(chan struct{})}
	// Writes go through the gateway: admitted ones run as the load's.
	s.writes = startGatedLoad(t, ep, pgInsert, 8, gw)
	for range 4 {
		s.wg.Go(func() {
			for {
				select {
				case <-s.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := ep.tx(ctx, func(tx *sql.Tx) error {
					var n int
					return tx.QueryRowContext(ctx, "SELECT count(*) FROM acks").Scan(&n)
				})
				cancel()
				s.reads.Add(1)
				if err != nil {
					s.failedReads.Add(1)
					s.readErr.Store(err)
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	t.Cleanup(s.halt)
	return s
}

func (s *siteLoad) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	s.wg.Wait()
	s.writes.halt()
}

func (s *siteLoad) checkReads(t *testing.T) {
	t.Helper()
	if n := s.failedReads.Load(); n > 0 {
		t.Fatalf("%d of %d reads failed: %v", n, s.reads.Load(), s.readErr.Load())
	}
	t.Logf("%d reads, none failed; %d writes refused by read-only", s.reads.Load(), s.writes.refused.Load())
}

// copyMigrations writes a migration directory.
func copyMigrations(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// copyWindow is generous for a loaded host under the race detector.
const copyWindow = 3 * time.Minute

// copyDeadline is the copy cases' switchover deadline (see copyCase.run).
const copyDeadline = 12 * time.Second

const addExtra = `-- handoff:expand
ALTER TABLE acks ADD COLUMN extra text DEFAULT 'new';

-- handoff:backfill table=acks key=id batch=500
UPDATE acks SET extra = 'old:' || note WHERE id >= :lo AND id < :hi;

-- handoff:contract
ALTER TABLE acks ALTER COLUMN extra SET NOT NULL;
`

func columnExists(t *testing.T, db *sql.DB, table, col string) bool {
	t.Helper()
	var ok bool
	if err := db.QueryRow("SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = $1 AND column_name = $2)", table, col).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// warmParser starts the lint's parser (compiled on first use: a minute
// and more under the race detector on a loaded host) before a test's load
// starts, whose writers stop after 90 s.
func warmParser(t *testing.T) {
	parserOnce.Do(func() {
		ms, err := migrate.Load(copyMigrations(t, map[string]string{"0001_x.sql": addExtra}))
		if err != nil {
			t.Fatal(err)
		}
		migrate.Lint(ms, "postgres", nil)
	})
}

var parserOnce sync.Once

type copyCase struct {
	old, standby *testdb.PG
	ep           *appDB
	gw           *roGateway
	site         *siteLoad
	j            *memJournal
}

func startCopyCase(t *testing.T) *copyCase { return startCopyCaseOf(t, false) }

// startCopyCaseOf: the copy is a physical standby, or with logical a
// subscriber (a major-version move's copy).
func startCopyCaseOf(t *testing.T, logical bool) *copyCase {
	old := testdb.NewPG(t)
	old.Exec(t, "postgres", "CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL)")
	c := &copyCase{old: old, gw: newROGateway(), j: &memJournal{}}
	if logical {
		c.standby = testdb.NewPG(t)
		c.standby.Subscribe(t, old, "postgres", "handoff_move")
	} else {
		c.standby = old.Standby(t)
	}
	warmParser(t)
	c.ep = newAppDB(t, old.Addr(), pgOpen)
	c.site = startSite(t, c.ep, c.gw)
	c.site.writes.waitAcked(t, 200)
	return c
}

func (c *copyCase) run(t *testing.T, ctx context.Context, dir string, window time.Duration) (Record, error) {
	pair, err := OpenPostgres(ctx, c.old.URL("postgres"), c.standby.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	return RunCopy(ctx, pair, CopyOptions{
		// A deadline above the default: its quarter is how long a
		// transaction may have been open when the switchover checks, and
		// on a loaded CI machine one of the load's INSERTs once stayed
		// open 1.9 s, past the default's 1.25 s, and the check refused.
		Options: Options{Name: "main", From: c.old.URL("postgres"), To: c.standby.URL("postgres"),
			Deadline: copyDeadline, Endpoint: c.ep, Gate: c.gw, Journal: c.j},
		Dir: dir, Window: window, ReadOnly: c.gw,
		Migrate: migrate.Options{Progress: func(e migrate.Event) {
			if e.Kind == migrate.EventLockRetry && e.Attempt < 4 {
				t.Logf("migration retried: %s %s line %d: %s: %v", e.Migration, e.Phase, e.Line, e.Reason, e.Err)
			}
		}},
	})
}

// The migrations run on the copy, contract included, while the site is
// read-only; the endpoint then moves to it. The old server keeps its
// schema; reads never fail; writes are refused in the window only.
func TestCopyPostgresMigratesAndSwaps(t *testing.T) {
	t.Parallel()
	for _, logical := range []bool{false, true} {
		name := "physical"
		if logical {
			name = "logical"
		}
		t.Run(name, func(t *testing.T) { copyMigratesAndSwaps(t, logical) })
	}
}

func copyMigratesAndSwaps(t *testing.T, logical bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*copyWindow)
	defer cancel()
	c := startCopyCaseOf(t, logical)
	dir := copyMigrations(t, map[string]string{"0001_extra.sql": addExtra})
	rec, err := c.run(t, ctx, dir, copyWindow)
	if err != nil {
		t.Fatalf("migrate-on-copy: %v (steps %v)", err, rec.Steps)
	}
	t.Logf("steps %v", rec.Steps)
	if rec.Step != Done || c.ep.current() != c.standby.Addr() || c.gw.isOn() {
		t.Fatalf("step %s, endpoint at %s, read-only %v; want done, on %s, off", rec.Step, c.ep.current(), c.gw.isOn(), c.standby.Addr())
	}
	if len(c.gw.ons) != 1 || c.gw.ons[0] != copyWindow+readOnlyMargin {
		t.Fatalf("read-only switched on %v; want once, for the window and its margin", c.gw.ons)
	}
	var steps []Step
	for _, s := range rec.Steps {
		steps = append(steps, s.Step)
	}
	want := []Step{ReadOnlyOn, Fencing, CatchingUp, Promoting, Migrating, Repointing, Resuming, Done}
	if strings.Join(stepNames(steps), ",") != strings.Join(stepNames(want), ",") {
		t.Fatalf("steps %v, want %v", steps, want)
	}
	l := c.site.writes
	acked := l.ackedCount()
	l.waitAcked(t, acked+200) // writes land again, on the copy
	c.site.halt()
	c.site.checkReads(t)
	l.checkNoFailures(t)
	if c.site.writes.refused.Load() == 0 {
		t.Fatal("no write was refused: the window was not read-only")
	}
	newDB, oldDB := pgDB(t, c.standby.Addr()), pgDB(t, c.old.Addr())
	l.checkAllOn(t, newDB, "acks")
	if !columnExists(t, newDB, "acks", "extra") || columnExists(t, oldDB, "acks", "extra") {
		t.Fatal("the column should be on the copy only")
	}
	var nulls, backfilled int
	if err := newDB.QueryRow("SELECT count(*) FILTER (WHERE extra IS NULL), count(*) FILTER (WHERE extra LIKE 'old:%') FROM acks").Scan(&nulls, &backfilled); err != nil || nulls != 0 || backfilled == 0 {
		t.Fatalf("on the copy: %d rows with extra NULL, %d backfilled (%v)", nulls, backfilled, err)
	}
	var notNull string
	if err := newDB.QueryRow("SELECT is_nullable FROM information_schema.columns WHERE table_name = 'acks' AND column_name = 'extra'").Scan(&notNull); err != nil || notNull != "NO" {
		t.Fatalf("the contract did not run on the copy: is_nullable %q (%v)", notNull, err)
	}
	if logical {
		// Sequences were copied past the old primary's: no collision on
		// the first inserts on the copy (the load's, checked above), and
		// the subscription is gone.
		var subs int
		if err := newDB.QueryRow("SELECT count(*) FROM pg_subscription").Scan(&subs); err != nil || subs != 0 {
			t.Fatalf("%d subscriptions left on the copy (%v)", subs, err)
		}
	}
	// The old server is left fenced, untouched: nothing writes to it.
	if _, err := oldDB.Exec("INSERT INTO acks (note) VALUES ('after')"); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Fatalf("write on the old server after the swap: %v; want read-only", err)
	}
}

func stepNames(s []Step) []string {
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = string(x)
	}
	return out
}

// A migration that fails on the copy reverts: the endpoint stays on the
// old server, which is writable again with its schema untouched, and
// read-only goes off. No read failed, no admitted write failed.
func TestCopyPostgresFailedMigrationReverts(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*copyWindow)
	defer cancel()
	c := startCopyCase(t)
	dir := copyMigrations(t, map[string]string{
		"0001_extra.sql": "-- handoff:expand\nALTER TABLE acks ADD COLUMN extra text;\n",
		// Fails when it runs: the notes are not numbers.
		"0002_bad.sql": "-- handoff:contract\nALTER TABLE acks ALTER COLUMN note TYPE int USING note::int;\n",
	})
	rec, err := c.run(t, ctx, dir, copyWindow)
	var serr *Error
	if !errors.As(err, &serr) || !serr.RolledBack || serr.Step != Migrating {
		t.Fatalf("migrate-on-copy: %v; want reverted at %s", err, Migrating)
	}
	if !strings.Contains(err.Error(), "rebuild it") {
		t.Fatalf("the error does not say the copy must be rebuilt: %v", err)
	}
	t.Logf("reverted: %v; steps %v", err, rec.Steps)
	if rec.Step != RolledBack || c.ep.current() != c.old.Addr() || c.gw.isOn() || c.gw.offs != 1 {
		t.Fatalf("step %s, endpoint at %s, read-only %v (off %d times)", rec.Step, c.ep.current(), c.gw.isOn(), c.gw.offs)
	}
	var saved Record
	if ok, _ := c.j.Get(ctx, JournalKind, "main", &saved); !ok || saved.Step != RolledBack || saved.Migrate != dir {
		t.Fatalf("journal: %+v", saved)
	}
	l := c.site.writes
	acked := l.ackedCount()
	l.waitAcked(t, acked+200) // the old server takes writes again
	c.site.halt()
	c.site.checkReads(t)
	l.checkNoFailures(t)
	oldDB := pgDB(t, c.old.Addr())
	l.checkAllOn(t, oldDB, "acks")
	if columnExists(t, oldDB, "acks", "extra") {
		t.Fatal("the old server's schema changed")
	}
	if _, err := oldDB.Exec("INSERT INTO acks (note) VALUES ('direct')"); err != nil {
		t.Fatalf("direct write on the old server after the revert: %v", err)
	}
}

// Bad input changes nothing: a migration file that does not parse, a
// window of a day, MariaDB.
func TestCopyRefuses(t *testing.T) {
	ctx := context.Background()
	bad := copyMigrations(t, map[string]string{"0001_x.sql": "-- handoff:expand\n-- handoff:expand\nSELECT 1;\n"})
	badSQL := copyMigrations(t, map[string]string{"0001_x.sql": "-- handoff:expand\nALTER TABLE acks ADD COLUMN;\n"})
	gw := newROGateway()
	fake := &fakePair{kind: "postgres-physical"}
	for _, tc := range []struct {
		o    CopyOptions
		want string
	}{
		{CopyOptions{Dir: bad, ReadOnly: gw}, "--migrate"},
		{CopyOptions{Dir: badSQL, ReadOnly: gw}, "grammar"},
		{CopyOptions{Dir: t.TempDir(), ReadOnly: gw}, "no migration files"},
		{CopyOptions{Dir: bad, ReadOnly: gw, Window: 24 * time.Hour}, "--window"},
		{CopyOptions{Dir: bad}, "read-only mode"},
	} {
		_, err := RunCopy(ctx, fake, tc.o)
		var serr *Error
		if !errors.As(err, &serr) || serr.RolledBack || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v; want refused with %q", tc.o, err, tc.want)
		}
	}
	if _, err := RunCopy(ctx, &fakePair{kind: "mysql-gtid"}, CopyOptions{Dir: bad, ReadOnly: gw}); err == nil || !strings.Contains(err.Error(), "MariaDB") {
		t.Errorf("MariaDB: %v", err)
	}
	if len(gw.ons) != 0 || len(fake.calls) != 0 {
		t.Fatalf("a refused migrate-on-copy changed something: read-only %v, pair %v", gw.ons, fake.calls)
	}
}
