package switchover

import (
	"bufio"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/store"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// The engine run as a process of its own (this test binary re-executed),
// journaling to a real SQLite store, killed with SIGKILL as it reaches a
// step: recovery from the journal finishes or rolls back, and leaves
// exactly one writable primary, the one the endpoint points at, with every
// row written before.
func TestSwitchoverKilledMidWayRecovers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		at       Step
		finishes bool
		mariadb  bool
	}{
		// Fencing (the fence perhaps half-applied) rolls back by the same
		// path as CatchingUp, and Repointing finishes by the same path as
		// Promoting; each is run once here, on one of the two servers,
		// to keep the package's time within CI's bounds.
		{CatchingUp, false, false}, // Postgres: fenced
		{Promoting, true, false},   // Postgres: recorded, not yet promoted: the point of no return
		{Fencing, false, true},     // MariaDB: recorded, read_only perhaps set
		{Repointing, true, true},   // MariaDB: replication reset, replica writable
	} {
		name := string(tc.at)
		if tc.mariadb {
			name = "mariadb-" + name
		}
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var s killServers
			if tc.mariadb {
				s = mariadbKillServers(t)
			} else {
				s = pgKillServers(t)
			}
			journal := filepath.Join(t.TempDir(), "state.db")

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "HANDOFF_SWITCHOVER_CHILD=1", "CHILD_JOURNAL="+journal,
				"CHILD_FROM="+s.fromURL, "CHILD_TO="+s.toURL, "CHILD_STOP_AT="+string(tc.at))
			cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = cmd.Stdout
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			reached := make(chan bool, 1)
			go func() {
				sc := bufio.NewScanner(out)
				ok := false
				for sc.Scan() {
					t.Logf("child: %s", sc.Text())
					if sc.Text() == "stopped at "+string(tc.at) && !ok {
						ok = true
						reached <- true
					}
				}
				if !ok {
					reached <- false
				}
			}()
			select {
			case ok := <-reached:
				if !ok {
					t.Fatalf("the child ended before step %s", tc.at)
				}
			case <-ctx.Done():
				t.Fatal("the child did not reach its step")
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			_ = cmd.Wait()

			// The restarted handoff: read the record, point the endpoint
			// where it says, recover.
			st, err := store.Open(ctx, journal)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var rec Record
			if ok, err := st.Get(ctx, JournalKind, "main", &rec); err != nil || !ok {
				t.Fatalf("journal: %v, %v", ok, err)
			}
			if rec.Step != tc.at {
				t.Fatalf("journal at %s, want %s", rec.Step, tc.at)
			}
			ep := newAppDB(t, rec.Primary(), s.open)
			pair, err := Reopen(ctx, rec)
			if err != nil {
				t.Fatal(err)
			}
			defer pair.Close()
			rec, err = Recover(ctx, rec, pair, ep, st)
			if err != nil {
				t.Fatalf("recover: %v", err)
			}
			want, wantStep, other := s.fromAddr, RolledBack, s.toAddr
			if tc.finishes {
				want, wantStep, other = s.toAddr, Done, s.fromAddr
			}
			var saved Record
			if _, err := st.Get(ctx, JournalKind, "main", &saved); err != nil || saved.Step != wantStep || !saved.Recovered {
				t.Fatalf("recovered to %s (journal %s, recovered %v, %v); want %s", rec.Step, saved.Step, saved.Recovered, err, wantStep)
			}
			if ep.current() != want {
				t.Fatalf("endpoint at %s, want %s", ep.current(), want)
			}
			// Exactly one writable primary (to the app's user): the
			// endpoint's, with every row.
			wdb, err := s.open(want)
			if err != nil {
				t.Fatal(err)
			}
			defer wdb.Close()
			var n int
			if err := wdb.QueryRow("SELECT count(*) FROM acks").Scan(&n); err != nil || n != 100 {
				t.Fatalf("%s after recovery: %d rows, %v; want 100", want, n, err)
			}
			if _, err := wdb.Exec(s.insertOne); err != nil {
				t.Fatalf("write on %s after recovery: %v", want, err)
			}
			odb, err := s.open(other)
			if err != nil {
				t.Fatal(err)
			}
			defer odb.Close()
			if _, err := odb.Exec(s.insertOne); err == nil {
				t.Fatalf("%s is writable too: two primaries", other)
			}
		})
	}
}

// killServers is a primary with 100 rows and its replica, for the kill test.
type killServers struct {
	fromURL, toURL   string
	fromAddr, toAddr string
	open             func(addr string) (*sql.DB, error) // as the app's user
	insertOne        string
}

func pgKillServers(t *testing.T) killServers {
	old := testdb.NewPG(t)
	old.Exec(t, "postgres", "CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL); INSERT INTO acks (note) SELECT 'before' FROM generate_series(1, 100)")
	standby := old.Standby(t)
	return killServers{fromURL: old.URL("postgres"), toURL: standby.URL("postgres"), fromAddr: old.Addr(), toAddr: standby.Addr(),
		open: pgOpen, insertOne: "INSERT INTO acks (note) VALUES ('after')"}
}

func mariadbKillServers(t *testing.T) killServers {
	old, replica := newMariaDBPair(t)
	old.Exec(t, "app", "INSERT INTO acks (note) SELECT 'before' FROM seq_1_to_100")
	waitReplicated(t, replica.Addr(), 100)
	return killServers{fromURL: myURL(old), toURL: myURL(replica), fromAddr: old.Addr(), toAddr: replica.Addr(),
		open: myOpen, insertOne: "INSERT INTO acks (note) VALUES ('after')"}
}

func waitReplicated(t *testing.T, addr string, rows int) {
	db, err := myOpen(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		var n int
		if db.QueryRow("SELECT count(*) FROM acks").Scan(&n) == nil && n == rows {
			return
		}
	}
	t.Fatalf("the replica %s did not get %d rows", addr, rows)
}

// TestMain runs the kill test's child process when it is one.
func TestMain(m *testing.M) {
	if os.Getenv("HANDOFF_SWITCHOVER_CHILD") == "1" {
		runChild()
		return
	}
	os.Exit(m.Run())
}

// runChild runs a switchover that stops at CHILD_STOP_AT until the parent
// kills it; it exits 1 if the switchover ends first.
func runChild() {
	ctx := context.Background()
	fail := func(err error) {
		fmt.Println("child:", err)
		os.Exit(1)
	}
	st, err := store.Open(ctx, os.Getenv("CHILD_JOURNAL"))
	if err != nil {
		fail(err)
	}
	pair, err := Open(ctx, os.Getenv("CHILD_FROM"), os.Getenv("CHILD_TO"))
	if err != nil {
		fail(err)
	}
	stopAt := Step(os.Getenv("CHILD_STOP_AT"))
	o := Options{Name: "main", Deadline: 30 * time.Second, Journal: st,
		From: os.Getenv("CHILD_FROM"), To: os.Getenv("CHILD_TO"), OnStep: func(r Record) {
			if r.Step == stopAt {
				fmt.Println("stopped at " + string(r.Step))
				time.Sleep(time.Hour) // until the parent's SIGKILL
			}
		}}
	if dir := os.Getenv("CHILD_MIGRATE"); dir != "" { // copy_kill_test.go
		_, err = RunCopy(ctx, pair, CopyOptions{Options: o, Dir: dir, Window: 5 * time.Minute, ReadOnly: newROGateway()})
	} else {
		_, err = Run(ctx, pair, o)
	}
	fail(fmt.Errorf("the switchover ended before step %s: %v", stopAt, err))
}
