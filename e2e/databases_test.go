package e2e

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/testdb"
	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib"
)

// TestDatabaseEndpointServeAndUpgrade: `handoff serve` fronts the real
// Postgres on a database endpoint; the app's pools (pgxpool with its
// statement cache, database/sql over pgx's stdlib, both with a connection
// lifetime below the drain bound, as docs/databases.md advises) run
// transactions through it without pause; `handoff db status --json`
// reports the primary, its role and the connections; `handoff upgrade`
// hands the endpoint's listener to the new process while the old one
// closes its sessions between transactions; no client sees an error, and
// afterwards the sessions are the new process's.
func TestDatabaseEndpointServeAndUpgrade(t *testing.T) {
	dbURL := testdb.Postgres(t)
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	listen := freeAddr(t)
	n := newNode(t, fmt.Sprintf("databases:\n  main:\n    kind: postgres\n    listen: %q\n    primary: %q\n", listen, u.Host))
	through := *u
	through.Host = listen
	through.RawQuery = "sslmode=disable"
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	pcfg, err := pgxpool.ParseConfig(through.String())
	if err != nil {
		t.Fatal(err)
	}
	pcfg.MaxConns, pcfg.MaxConnLifetime, pcfg.MaxConnLifetimeJitter = 6, 3*time.Second, 500*time.Millisecond
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	sqlDB, err := sql.Open("pgx", through.String())
	if err != nil {
		t.Fatal(err)
	}
	defer sqlDB.Close()
	sqlDB.SetMaxOpenConns(4)
	sqlDB.SetConnMaxLifetime(3 * time.Second)
	if _, err := pool.Exec(ctx, "CREATE TABLE w (worker int, seq int, PRIMARY KEY (worker, seq))"); err != nil {
		t.Fatal(err)
	}

	var (
		commits, failures atomic.Int64
		stop              atomic.Bool
		mu                sync.Mutex
		firstErr          error
		wg                sync.WaitGroup
	)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; !stop.Load() && seq < 100000; seq++ {
				var err error
				if w%2 == 0 {
					err = pgxTx(ctx, pool, w, seq)
				} else {
					err = sqlTx(ctx, sqlDB, w, seq)
				}
				if err != nil {
					failures.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("worker %d seq %d: %w", w, seq, err)
					}
					mu.Unlock()
					return
				}
				commits.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	waitUntil(t, 20*time.Second, "transactions through the endpoint", func() bool { return commits.Load() >= 100 })

	var st control.DBStatus
	if err := json.Unmarshal([]byte(n.must("db", "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Databases) != 1 || st.Databases[0].Name != "main" || st.Databases[0].Primary != u.Host ||
		st.Databases[0].Role != "primary" || st.Databases[0].Connections == 0 || st.Databases[0].Listen != listen {
		t.Fatalf("db status: %+v", st)
	}
	t.Logf("db status before the upgrade:\n%s", n.must("db", "status"))
	metrics := adminGet(t, n, "/metrics")
	for _, want := range []string{`handoff_database_connections{database="main",state="idle"}`,
		`handoff_database_connections{database="main",state="in_transaction"}`, `handoff_database_paused{database="main"} 0`,
		`handoff_database_sessions_moved_total{database="main"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics has no %s:\n%s", want, grepLines(metrics, "handoff_database"))
		}
	}

	var up control.Upgrade
	if err := json.Unmarshal([]byte(n.must("upgrade", "--json")), &up); err != nil {
		t.Fatal(err)
	}
	atUpgrade := commits.Load()
	waitUntil(t, 60*time.Second, "the old handoff to close its sessions and exit", func() bool { return !processAlive(up.OldPID) })
	waitUntil(t, 10*time.Second, "transactions after the upgrade", func() bool { return commits.Load() >= atUpgrade+200 })
	stop.Store(true)
	wg.Wait()
	if f := failures.Load(); f > 0 {
		t.Fatalf("%d client errors across the upgrade; the first: %v", f, firstErr)
	}
	if err := json.Unmarshal([]byte(n.must("db", "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d commits, %d after the upgrade began; db status after:\n%s", commits.Load(), commits.Load()-atUpgrade, n.must("db", "status"))
	if st.Databases[0].Connections == 0 {
		t.Fatalf("no connection in the new process: %+v", st)
	}
}

func pgxTx(ctx context.Context, pool *pgxpool.Pool, w, seq int) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, "INSERT INTO w VALUES ($1, $2)", w, seq); err != nil {
		return err
	}
	var n int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM w WHERE worker = $1", w).Scan(&n); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

func sqlTx(ctx context.Context, db *sql.DB, w, seq int) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "INSERT INTO w VALUES ($1, $2)", w, seq); err != nil {
		return err
	}
	return tx.Commit()
}

// TestMySQLDatabaseEndpointServeAndUpgrade: the same for MariaDB through
// go-sql-driver/mysql (which checks a pooled connection before reusing
// it): db status, then an upgrade under load, zero errors.
func TestMySQLDatabaseEndpointServeAndUpgrade(t *testing.T) {
	m := testdb.NewMariaDB(t)
	m.Exec(t, "", "CREATE DATABASE app", "CREATE TABLE app.w (worker INT, seq INT, PRIMARY KEY (worker, seq))")
	listen := freeAddr(t)
	n := newNode(t, fmt.Sprintf("databases:\n  cat:\n    kind: mysql\n    listen: %q\n    primary: %q\n", listen, m.Addr()))
	db, err := sql.Open("mysql", fmt.Sprintf("root@tcp(%s)/app?timeout=5s", listen))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(6)
	db.SetConnMaxLifetime(3 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var (
		commits, failures atomic.Int64
		stop              atomic.Bool
		mu                sync.Mutex
		firstErr          error
		wg                sync.WaitGroup
	)
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := 0; !stop.Load() && seq < 100000; seq++ {
				err := func() error {
					tx, err := db.BeginTx(ctx, nil)
					if err != nil {
						return err
					}
					defer tx.Rollback()
					if _, err := tx.ExecContext(ctx, "INSERT INTO w VALUES (?, ?)", w, seq); err != nil {
						return err
					}
					return tx.Commit()
				}()
				if err != nil {
					failures.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = fmt.Errorf("worker %d seq %d: %w", w, seq, err)
					}
					mu.Unlock()
					return
				}
				commits.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	waitUntil(t, 20*time.Second, "transactions through the endpoint", func() bool { return commits.Load() >= 100 })
	var st control.DBStatus
	if err := json.Unmarshal([]byte(n.must("db", "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Databases) != 1 || st.Databases[0].Role != "primary" || st.Databases[0].Kind != "mysql" || st.Databases[0].Connections == 0 {
		t.Fatalf("db status: %+v", st)
	}
	var up control.Upgrade
	if err := json.Unmarshal([]byte(n.must("upgrade", "--json")), &up); err != nil {
		t.Fatal(err)
	}
	atUpgrade := commits.Load()
	waitUntil(t, 60*time.Second, "the old handoff to close its sessions and exit", func() bool { return !processAlive(up.OldPID) })
	waitUntil(t, 10*time.Second, "transactions after the upgrade", func() bool { return commits.Load() >= atUpgrade+200 })
	stop.Store(true)
	wg.Wait()
	if f := failures.Load(); f > 0 {
		t.Fatalf("%d client errors across the upgrade; the first: %v", f, firstErr)
	}
	var rows int64
	if err := db.QueryRow("SELECT count(*) FROM w").Scan(&rows); err != nil || rows != commits.Load() {
		t.Fatalf("%d rows for %d commits (%v)", rows, commits.Load(), err)
	}
	t.Logf("%d commits, %d after the upgrade began", commits.Load(), commits.Load()-atUpgrade)
}
