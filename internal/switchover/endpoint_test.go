package switchover

import (
	"context"
	"database/sql"
	"net"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/dbproxy"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// pooled is an app's own connection pool, connected to the real database
// endpoint: the app knows nothing of the switchover.
type pooled struct {
	db *sql.DB
	ep *dbproxy.Endpoint
}

func (p pooled) tx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

func (p pooled) current() string { return p.ep.Stats().Primary }

// startEndpoint serves a real database endpoint on a loopback port.
func startEndpoint(t *testing.T, kind dbproxy.Kind, primary string) (*dbproxy.Endpoint, string) {
	t.Helper()
	ep, err := dbproxy.New(dbproxy.Options{Name: "main", Kind: kind, Primary: primary, HoldMax: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = ep.Serve(l) }()
	t.Cleanup(func() { _ = ep.Close() })
	return ep, l.Addr().String()
}

// The whole data path: the app's pool (pgx's database/sql driver, its
// statement cache on; go-sql-driver/mysql) connected to dbproxy's real
// endpoint, the switchover moving the endpoint under 16 writers that never
// retry. Zero failed writes, every acknowledged write on the new primary.
func TestSwitchoverThroughTheDatabaseEndpoint(t *testing.T) {
	t.Parallel() // two at a time (GOMAXPROCS): most of each is waiting for servers
	t.Run("postgres-physical", func(t *testing.T) {
		old := testdb.NewPG(t)
		old.Exec(t, "postgres", "CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL)")
		standby := old.Standby(t)
		ep, addr := startEndpoint(t, dbproxy.Postgres, old.Addr())
		db, err := pgOpen(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		throughEndpoint(t, ep, pooled{db, ep}, pgServers(old, standby), pgDB(t, standby.Addr()))
	})
	t.Run("mariadb", func(t *testing.T) {
		old, replica := newMariaDBPair(t)
		ep, addr := startEndpoint(t, dbproxy.MySQL, old.Addr())
		db, err := myOpen(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		newDB, err := myOpen(replica.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer newDB.Close()
		throughEndpoint(t, ep, pooled{db, ep}, myServers(old, replica), newDB)
	})
}

func throughEndpoint(t *testing.T, ep *dbproxy.Endpoint, app pooled, s servers, newDB *sql.DB) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	l := startLoad(t, app, s.insert, 16)
	l.waitAcked(t, 300)
	pair, err := s.pair(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	const deadline = 5 * time.Second
	rec, err := Run(ctx, pair, Options{Name: "main", Deadline: deadline, Endpoint: ep, Gate: &gate{}})
	if err != nil {
		t.Fatalf("switchover: %v (steps %v)", err, rec.Steps)
	}
	acked := l.ackedCount()
	l.waitAcked(t, acked+300)
	l.halt()
	if st := ep.Stats(); st.Primary != s.newAddr || st.Paused {
		t.Fatalf("endpoint: %+v; want at %s, not paused", st, s.newAddr)
	}
	l.checkNoFailures(t)
	l.checkAllOn(t, newDB, "acks")
	gap := l.maxGap()
	t.Logf("%s through the endpoint: longest gap between acknowledged writes %v; moved sessions %d; steps %v", pair.Kind(), gap.Round(time.Millisecond), ep.Stats().Moved, rec.Steps)
	if gap > deadline {
		t.Fatalf("write pause %v exceeds the deadline %v", gap, deadline)
	}
}
