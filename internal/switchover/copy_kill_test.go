package switchover

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/store"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// A migrate-on-copy run as a process of its own (this test binary, see
// runChild), journaling to a real SQLite store, killed with SIGKILL at a
// step: RecoverCopy reverts before the endpoint moved (the old server
// writable, its schema unchanged, the endpoint on it) and finishes from
// the move on (the endpoint on the migrated copy, the old server still
// fenced); read-only, restored on by the restart, goes off either way.
func TestCopyKilledMidWayRecovers(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		at       Step
		finishes bool
	}{
		{Migrating, false}, // the copy promoted and migrated, the endpoint not moved
		{Repointing, true}, // recorded, not yet moved: the point of no return
	} {
		t.Run(string(tc.at), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			old := testdb.NewPG(t)
			old.Exec(t, "postgres", "CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL); INSERT INTO acks (note) SELECT 'before' FROM generate_series(1, 100)")
			standby := old.Standby(t)
			dir := copyMigrations(t, map[string]string{"0001_extra.sql": "-- handoff:expand\nALTER TABLE acks ADD COLUMN extra text;\n"})
			journal := filepath.Join(t.TempDir(), "state.db")

			cmd := exec.Command(os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), "HANDOFF_SWITCHOVER_CHILD=1", "CHILD_JOURNAL="+journal, "CHILD_MIGRATE="+dir,
				"CHILD_FROM="+old.URL("postgres"), "CHILD_TO="+standby.URL("postgres"), "CHILD_STOP_AT="+string(tc.at))
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

			st, err := store.Open(ctx, journal)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			var rec Record
			if ok, err := st.Get(ctx, JournalKind, "main", &rec); err != nil || !ok || rec.Step != tc.at || rec.Migrate != dir {
				t.Fatalf("journal: %+v (%v, %v)", rec, ok, err)
			}
			ep := newAppDB(t, rec.Primary(), pgOpen)
			ro := newROGateway()
			ro.on = true // as a restarted serve restores it
			pair, err := Reopen(ctx, rec)
			if err != nil {
				t.Fatal(err)
			}
			defer pair.Close()
			rec, err = RecoverCopy(ctx, rec, pair, ep, ro, st)
			if err != nil {
				t.Fatalf("recover: %v", err)
			}
			if ro.isOn() {
				t.Fatal("read-only left on")
			}
			want, wantStep := old.Addr(), RolledBack
			if tc.finishes {
				want, wantStep = standby.Addr(), Done
			}
			var saved Record
			if _, err := st.Get(ctx, JournalKind, "main", &saved); err != nil || saved.Step != wantStep || !saved.Recovered {
				t.Fatalf("recovered to %s (journal %s, %v); want %s", rec.Step, saved.Step, err, wantStep)
			}
			if ep.current() != want {
				t.Fatalf("endpoint at %s, want %s", ep.current(), want)
			}
			oldDB, newDB := pgDB(t, old.Addr()), pgDB(t, standby.Addr())
			// Killed at migrating, the migrations had not begun; at
			// repointing they had run.
			if columnExists(t, oldDB, "acks", "extra") || tc.finishes != columnExists(t, newDB, "acks", "extra") {
				t.Fatal("the migration should be on the copy only, once it ran")
			}
			_, oldErr := oldDB.Exec("INSERT INTO acks (note) VALUES ('after')")
			if tc.finishes != (oldErr != nil) {
				t.Fatalf("a write on the old server after recovery: %v (finished: %v)", oldErr, tc.finishes)
			}
			var n int
			if err := pgDB(t, want).QueryRow("SELECT count(*) FROM acks").Scan(&n); err != nil || n < 100 {
				t.Fatalf("%s after recovery: %d rows (%v)", want, n, err)
			}
		})
	}
}
