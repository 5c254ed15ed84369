package switchover

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/testdb"
)

const myInsert = "INSERT INTO acks (note) VALUES (?) RETURNING id"

// The app connects as a user of its own: read_only does not stop root.
func myOpen(addr string) (*sql.DB, error) {
	db, err := sql.Open("mysql", "app@tcp("+addr+")/app?timeout=5s")
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(16)
	return db, nil
}

func myURL(m *testdb.MariaDB) string { return fmt.Sprintf("mysql://root@%s/", m.Addr()) }

func newMariaDBPair(t *testing.T) (old, replica *testdb.MariaDB) {
	old = testdb.NewMariaDB(t)
	old.Exec(t, "", "CREATE DATABASE app",
		"CREATE TABLE app.acks (id bigint AUTO_INCREMENT PRIMARY KEY, note varchar(64) NOT NULL)",
		"CREATE USER app@'127.0.0.1'", "GRANT ALL ON app.* TO app@'127.0.0.1'")
	return old, old.Replica(t)
}

func myServers(old, replica *testdb.MariaDB) servers {
	return servers{oldAddr: old.Addr(), newAddr: replica.Addr(), open: myOpen, insert: myInsert,
		pair: func(ctx context.Context) (Pair, error) { return OpenMySQL(ctx, myURL(old), myURL(replica)) }}
}

// TestSwitchoverMariaDBOverTLS: both servers refuse plaintext
// (require_secure_transport), the replica replicates over TLS, and the
// switchover's URLs ask for TLS with the endpoint config's words
// (?tls=verify-full&tls_ca_file=); it runs under load as in plaintext.
func TestSwitchoverMariaDBOverTLS(t *testing.T) {
	t.Parallel()
	old, replica := newMariaDBPair(t)
	files := old.ServeTLS(t)
	replica.Exec(t, "", "STOP SLAVE", "CHANGE MASTER TO MASTER_SSL = 1", "START SLAVE")
	replica.ServeTLS(t)
	tlsOpen := func(addr string) (*sql.DB, error) {
		db, err := sql.Open("mysql", "app@tcp("+addr+")/app?timeout=5s&tls=skip-verify")
		if err != nil {
			return nil, err
		}
		db.SetMaxOpenConns(16)
		return db, nil
	}
	if plain, err := myOpen(old.Addr()); err == nil {
		if err := plain.Ping(); err == nil {
			t.Fatal("the old primary takes a plaintext client: the test proves nothing")
		}
		plain.Close()
	}
	q := "?tls=verify-full&tls_ca_file=" + files.CA
	s := servers{oldAddr: old.Addr(), newAddr: replica.Addr(), open: tlsOpen, insert: myInsert,
		pair: func(ctx context.Context) (Pair, error) { return OpenMySQL(ctx, myURL(old)+q, myURL(replica)+q) }}
	switchoverUnderLoad(t, s, "mysql-gtid")
}

// TestMySQLURLs: what a mysql:// URL may say, and the errors for what it
// may not.
func TestMySQLURLs(t *testing.T) {
	for raw, want := range map[string]string{
		"mysql://root:pw@db.internal/app":                               "",
		"mariadb://root@10.0.0.7:3307/?tls=require":                     "",
		"mysql://root@db.internal/?tls=verify-full":                     "",
		"mysql://root@db.internal/?tls=maybe":                           "want disable, require or verify-full",
		"mysql://root@db.internal/?tls=require&tls_ca_file=/etc/ca.pem": "tls_ca_file is used with tls=verify-full only",
		"mysql://root:pw@db.internal/?sslmode=verify-full":              "unknown parameter sslmode",
		"postgres://root@db.internal/":                                  "want mysql://",
	} {
		cfg, addr, err := mysqlConfig(raw)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", raw, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: error %v, want %q", raw, err, want)
		case want != "" && strings.Contains(err.Error(), ":pw@"):
			t.Errorf("%s: the error shows the password: %v", raw, err)
		case err == nil && (cfg.Addr != addr || !strings.Contains(addr, ":")):
			t.Errorf("%s: address %q, config's %q", raw, addr, cfg.Addr)
		case err == nil && strings.Contains(raw, "tls=") != (cfg.TLS != nil):
			t.Errorf("%s: TLS %v", raw, cfg.TLS != nil)
		}
	}
}

func TestSwitchoverMariaDB(t *testing.T) {
	t.Parallel() // two at a time (GOMAXPROCS): most of each is waiting for servers
	old, replica := newMariaDBPair(t)
	switchoverUnderLoad(t, myServers(old, replica), "mysql-gtid")
	db, err := myOpen(replica.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ro int
	var io sql.NullString
	if err := db.QueryRow("SELECT @@global.read_only").Scan(&ro); err != nil || ro != 0 {
		t.Fatalf("new primary read_only = %d (%v)", ro, err)
	}
	st, err := slaveStatus(context.Background(), sqlDB(t, replica))
	if err != nil || st != nil {
		t.Fatalf("the new primary still replicates: %v %v %v", st, err, io)
	}
}

func sqlDB(t *testing.T, m *testdb.MariaDB) *sql.DB {
	db, err := sql.Open("mysql", m.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// The replica's SQL thread stops and a client that bypasses the endpoint
// writes: the replica cannot catch up, the switchover rolls back.
func TestSwitchoverMariaDBRollsBackPastDeadline(t *testing.T) {
	t.Parallel() // two at a time (GOMAXPROCS): most of each is waiting for servers
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	old, replica := newMariaDBPair(t)
	ep := newAppDB(t, old.Addr(), myOpen)
	l := startLoad(t, ep, myInsert, 16)
	l.waitAcked(t, 300)
	pair, err := OpenMySQL(ctx, myURL(old), myURL(replica))
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	stall := func(r Record) {
		if r.Step == Holding {
			replica.Exec(t, "", "STOP SLAVE SQL_THREAD")
			old.Exec(t, "app", "INSERT INTO acks (note) VALUES ('bypass')")
		}
	}
	g := &gate{}
	const deadline = 2 * time.Second
	start := time.Now()
	rec, err := Run(ctx, pair, Options{Name: "main", Deadline: deadline, Endpoint: ep, Gate: g, OnStep: stall})
	took := time.Since(start)
	var serr *Error
	if !errors.As(err, &serr) || !serr.RolledBack || serr.Step != CatchingUp || !strings.Contains(err.Error(), "deadline 2s passed") {
		t.Fatalf("switchover: %v; want rolled back at %s, the deadline passed", err, CatchingUp)
	}
	t.Logf("rolled back after %v: %v", took.Round(time.Millisecond), err)
	if rec.Step != RolledBack || ep.current() != old.Addr() || g.releaseCall != 1 {
		t.Fatalf("step %s, endpoint at %s, gate released %d times", rec.Step, ep.current(), g.releaseCall)
	}
	acked := l.ackedCount()
	l.waitAcked(t, acked+300)
	l.halt()
	l.checkNoFailures(t)
	oldDB, err := myOpen(old.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer oldDB.Close()
	l.checkAllOn(t, oldDB, "acks")
	var ro int
	if err := sqlDB(t, replica).QueryRow("SELECT @@global.read_only").Scan(&ro); err != nil || ro != 1 {
		t.Fatalf("the replica is writable after the rollback (read_only %d, %v): two primaries", ro, err)
	}
}

// Promoted decides whether a failed promotion rolls back: a replica that
// still replicates is not promoted, however writable (read_only off is
// MariaDB's default); once detached and writable, it is.
func TestMariaDBPromotedNeedsTheReplicaDetached(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	old, replica := newMariaDBPair(t)
	pair, err := OpenMySQL(ctx, myURL(old), myURL(replica))
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	db := sqlDB(t, replica)
	if _, err := db.Exec("SET GLOBAL read_only = 0"); err != nil {
		t.Fatal(err)
	}
	if ok, err := pair.Promoted(ctx); ok || err != nil {
		t.Fatalf("a writable replica that still replicates: promoted %v, %v; want false", ok, err)
	}
	if err := pair.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if ok, err := pair.Promoted(ctx); !ok || err != nil {
		t.Fatalf("after Promote: promoted %v, %v; want true", ok, err)
	}
}
