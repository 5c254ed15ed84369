package switchover

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// appDB is the test's database endpoint at the app's level: the app's
// transactions go through it, Pause holds new ones and waits for the open
// ones, Repoint moves new transactions to another server. It implements
// Endpoint the way dbproxy's does on the wire, without a wire.
type appDB struct {
	open func(addr string) (*sql.DB, error)

	mu       sync.Mutex
	cond     *sync.Cond
	paused   bool
	inTx     int
	addr     string
	pools    map[string]*sql.DB
	pausedAt time.Time
	resumed  time.Time
	repoints []string
}

func newAppDB(t *testing.T, addr string, open func(addr string) (*sql.DB, error)) *appDB {
	a := &appDB{open: open, addr: addr, pools: map[string]*sql.DB{}}
	a.cond = sync.NewCond(&a.mu)
	t.Cleanup(func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		for _, p := range a.pools {
			p.Close()
		}
	})
	return a
}

func (a *appDB) Pause(ctx context.Context) error {
	a.mu.Lock()
	a.paused = true
	a.pausedAt = time.Now()
	a.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { a.mu.Lock(); a.cond.Broadcast(); a.mu.Unlock() })
	defer stop()
	a.mu.Lock()
	defer a.mu.Unlock()
	for a.inTx > 0 {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.cond.Wait()
	}
	return nil
}

func (a *appDB) Repoint(addr string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.addr = addr
	a.repoints = append(a.repoints, addr)
	return nil
}

func (a *appDB) Resume() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.paused = false
	a.resumed = time.Now()
	a.cond.Broadcast()
}

func (a *appDB) current() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.addr
}

// tx runs fn in a transaction on the current server, after any pause.
func (a *appDB) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	a.mu.Lock()
	for a.paused {
		a.cond.Wait()
	}
	a.inTx++
	addr := a.addr
	pool := a.pools[addr]
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		a.inTx--
		a.cond.Broadcast()
		a.mu.Unlock()
	}()
	if pool == nil {
		p, err := a.open(addr)
		if err != nil {
			return err
		}
		a.mu.Lock()
		if a.pools[addr] == nil {
			a.pools[addr] = p
		} else {
			p.Close()
		}
		pool = a.pools[addr]
		a.mu.Unlock()
	}
	tx, err := pool.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// txer runs the app's transactions: the in-test endpoint, or a pool
// connected to a real one.
type txer interface {
	tx(ctx context.Context, fn func(*sql.Tx) error) error
	current() string // the server new transactions go to
}

// load is an app writing rows through the endpoint and recording every
// write the database acknowledged (its COMMIT returned nil).
type load struct {
	db      txer
	insert  string // one parameter: the writer's note; returns the new id
	mu      sync.Mutex
	acked   map[int64]string
	commits []commit
	failed  atomic.Int64
	refused atomic.Int64 // by the gateway (startGatedLoad)
	errs    []error
	stop    chan struct{}
	wg      sync.WaitGroup
}

type commit struct {
	at   time.Time
	addr string
}

// startLoad runs writers until stop or maxDuration, each writing as fast as
// its transactions commit, never retrying a failed one.
func startLoad(t *testing.T, db txer, insert string, writers int) *load {
	return startGatedLoad(t, db, insert, writers, nil)
}

// admitter is a gateway in front of the writers (copy_test.go): a write
// it does not admit is refused (the read-only 503), retried later, and
// not a failure.
type admitter interface {
	admit() bool
	done()
}

func startGatedLoad(t *testing.T, db txer, insert string, writers int, gw admitter) *load {
	l := &load{db: db, insert: insert, acked: map[int64]string{}, stop: make(chan struct{})}
	const maxDuration = 90 * time.Second
	deadline := time.Now().Add(maxDuration)
	for w := range writers {
		l.wg.Go(func() {
			for i := 0; time.Now().Before(deadline); i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				if gw != nil && !gw.admit() {
					l.refused.Add(1)
					time.Sleep(5 * time.Millisecond) // the client's retry, after its Retry-After
					continue
				}
				note := fmt.Sprintf("w%d-%d", w, i)
				var id int64
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				addr := ""
				err := db.tx(ctx, func(tx *sql.Tx) error {
					addr = db.current()
					return tx.QueryRowContext(ctx, insert, note).Scan(&id)
				})
				cancel()
				if gw != nil {
					gw.done()
				}
				l.mu.Lock()
				if err != nil {
					l.failed.Add(1)
					if len(l.errs) < 10 {
						l.errs = append(l.errs, err)
					}
				} else {
					l.acked[id] = note
					l.commits = append(l.commits, commit{at: time.Now(), addr: addr})
				}
				l.mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		})
	}
	t.Cleanup(l.halt)
	return l
}

func (l *load) halt() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// ackedCount is how many writes are acknowledged so far (the writers may
// still be running).
func (l *load) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// waitAcked waits until at least n writes are acknowledged.
func (l *load) waitAcked(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if got := l.ackedCount(); got >= n {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("load: fewer than %d writes acknowledged in 60 s (failed %d: %v)", n, l.failed.Load(), l.errs)
}

// maxGap is the longest time between two consecutive acknowledged
// commits: the write pause as the app saw it.
func (l *load) maxGap() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	ts := make([]time.Time, len(l.commits))
	for i, c := range l.commits {
		ts[i] = c.at
	}
	slices.SortFunc(ts, time.Time.Compare)
	var gap time.Duration
	for i := 1; i < len(ts); i++ {
		gap = max(gap, ts[i].Sub(ts[i-1]))
	}
	return gap
}

// firstCommitOn is the time of the first commit acknowledged on addr.
func (l *load) firstCommitOn(addr string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.commits {
		if c.addr == addr {
			return c.at, true
		}
	}
	return time.Time{}, false
}

// checkAllOn asserts that every acknowledged write is in db's table, under
// its id, with its note.
func (l *load) checkAllOn(t *testing.T, db *sql.DB, table string) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	rows, err := db.Query("SELECT id, note FROM " + table)
	if err != nil {
		t.Fatalf("read %s: %v", table, err)
	}
	defer rows.Close()
	have := map[int64]string{}
	for rows.Next() {
		var id int64
		var note string
		if err := rows.Scan(&id, &note); err != nil {
			t.Fatal(err)
		}
		have[id] = note
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	lost := 0
	for id, note := range l.acked {
		if have[id] != note {
			lost++
			if lost <= 5 {
				t.Errorf("acknowledged write id %d (%s) is not on the server (found %q)", id, note, have[id])
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost", lost, len(l.acked))
	}
	t.Logf("all %d acknowledged writes are on the server (%d rows there)", len(l.acked), len(have))
}

func (l *load) checkNoFailures(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.failed.Load(); n > 0 {
		t.Fatalf("%d writes failed: %v", n, errors.Join(l.errs...))
	}
}

// gate is a Gate that records when it held and released.
type gate struct {
	mu                 sync.Mutex
	held, released     time.Time
	holds, releaseCall int
}

func (g *gate) Hold(ctx context.Context) (func(), error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.holds++
	g.held = time.Now()
	return func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.releaseCall++
		g.released = time.Now()
	}, nil
}

// memJournal is a Journal in memory.
type memJournal struct {
	mu   sync.Mutex
	recs map[string][]byte
}

func (j *memJournal) Get(_ context.Context, kind, key string, v any) (bool, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	b, ok := j.recs[kind+"/"+key]
	if !ok {
		return false, nil
	}
	return true, json.Unmarshal(b, v)
}

func (j *memJournal) Put(_ context.Context, kind, key string, v any) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.recs == nil {
		j.recs = map[string][]byte{}
	}
	b, err := json.Marshal(v)
	j.recs[kind+"/"+key] = b
	return err
}
