package e2e

import (
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/testdb"
)

// siteLoad is HTTP clients through the gateway while the site may be
// read-only: writers whose 503 + Retry-After of read-only is counted as
// refused (by design, and retried), any other non-200 a failure; readers
// that must never fail.
type siteLoad struct {
	*writeLoad
	refused, reads atomic.Int64
}

func startSiteLoad(gateway string, writers, readers int) *siteLoad {
	s := &siteLoad{writeLoad: &writeLoad{acked: map[int64]string{}, stop: make(chan struct{})}}
	deadline := time.Now().Add(3 * time.Minute) // bounded whatever happens
	client := func() *http.Client {
		return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	}
	fail := func(msg string) {
		s.mu.Lock()
		s.failed.Add(1)
		s.errs = append(s.errs, msg)
		s.mu.Unlock()
	}
	for c := range writers {
		s.wg.Go(func() {
			cl := client()
			for i := 0; time.Now().Before(deadline); i++ {
				select {
				case <-s.stop:
					return
				default:
				}
				note := fmt.Sprintf("c%d-%d", c, i)
				resp, err := cl.Post("http://"+gateway+"/write?note="+note, "text/plain", nil)
				if err != nil {
					fail(err.Error())
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				switch {
				case err != nil:
					fail(err.Error())
				case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" && strings.Contains(string(body), "read-only"):
					s.refused.Add(1)
					time.Sleep(20 * time.Millisecond)
				case resp.StatusCode != http.StatusOK:
					fail(fmt.Sprintf("write: %d %s", resp.StatusCode, strings.TrimSpace(string(body))))
				default:
					id, _ := strconv.ParseInt(string(body), 10, 64)
					s.mu.Lock()
					s.acked[id] = note
					s.mu.Unlock()
				}
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	for range readers {
		s.wg.Go(func() {
			cl := client()
			for time.Now().Before(deadline) {
				select {
				case <-s.stop:
					return
				default:
				}
				resp, err := cl.Get("http://" + gateway + "/read")
				if err != nil {
					fail("read: " + err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				s.reads.Add(1)
				if resp.StatusCode != http.StatusOK {
					fail(fmt.Sprintf("read: %d %s", resp.StatusCode, strings.TrimSpace(string(body))))
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	return s
}

func (s *siteLoad) checkNoFailures(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if f := s.failed.Load(); f > 0 {
		t.Fatalf("%d failed requests: %v", f, s.errs[:min(len(s.errs), 5)])
	}
	t.Logf("%d reads and %d acknowledged writes, none failed; %d writes refused by read-only (503 + Retry-After)", s.reads.Load(), len(s.acked), s.refused.Load())
}

// readOnly reports whether the app is read-only, as status shows it.
func readOnly(n *node) bool {
	for _, a := range n.status().Apps {
		if a.Modes.ReadOnly != nil {
			return true
		}
	}
	return false
}

func migrationDir(t *testing.T, files map[string]string) string {
	dir := t.TempDir()
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func pgColumn(t *testing.T, pg *testdb.PG, table, col string) bool {
	t.Helper()
	db, err := sql.Open("pgx", pg.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ok bool
	if err := db.QueryRow("SELECT EXISTS (SELECT 1 FROM information_schema.columns WHERE table_name = $1 AND column_name = $2)", table, col).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

// handoff db switchover --migrate through the real binary under HTTP load:
// the site goes read-only, the migrations run on the standby, the endpoint
// moves to it. Reads never fail; writes get only read-only's 503 +
// Retry-After; every acknowledged write is on the migrated copy; the old
// server's schema is untouched; each step is in the event log.
func TestSwitchoverMigrateOnCopyUnderHTTPLoad(t *testing.T) {
	old := testdb.NewPG(t)
	old.Exec(t, "postgres", "CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL)")
	standby := old.Standby(t)
	n, _ := switchoverNode(t, old)
	dir := migrationDir(t, map[string]string{"0001_extra.sql": `-- handoff:expand
ALTER TABLE acks ADD COLUMN extra text DEFAULT 'new';
-- handoff:backfill table=acks key=id batch=500
UPDATE acks SET extra = 'old:' || note WHERE id >= :lo AND id < :hi;
-- handoff:contract
ALTER TABLE acks ALTER COLUMN extra SET NOT NULL;
`})

	l := startSiteLoad(n.gateway, 16, 8)
	defer l.halt()
	waitUntil(t, 30*time.Second, "writes through the gateway", func() bool { return l.count() >= 300 })
	start := time.Now()
	out := n.must("db", "switchover", "main", "--to", standby.URL("postgres"), "--migrate", dir, "--window", "3m")
	t.Logf("handoff db switchover --migrate (%v):\n%s", time.Since(start).Round(time.Millisecond), out)
	if !strings.Contains(out, "switched: the endpoint points at "+standby.Addr()) || !strings.Contains(out, "migrating") {
		t.Fatalf("output:\n%s", out)
	}
	after := l.count()
	waitUntil(t, 30*time.Second, "writes after the window", func() bool { return l.count() >= after+300 })
	l.halt()
	l.checkNoFailures(t)
	if l.refused.Load() == 0 {
		t.Fatal("no write was refused: the window was not read-only")
	}
	l.checkOn(t, standby)
	if !pgColumn(t, standby, "acks", "extra") || pgColumn(t, old, "acks", "extra") {
		t.Fatal("the new column should be on the migrated copy only")
	}
	for _, step := range []string{"read-only", "fencing", "catching-up", "promoting", "migrating", "repointing", "done"} {
		if !strings.Contains(n.output(), "migrate-on-copy of main: "+step+" at ") {
			t.Errorf("no event for step %s in the log", step)
		}
	}
	if readOnly(n) {
		t.Fatal("read-only still on after the window")
	}
}

// kill -9 of handoff serve while the migrations run on the copy: the
// restarted serve reverts — the endpoint on the old server, unfenced, and
// read-only off — and writes through the gateway go on, on the old server.
func TestSwitchoverMigrateOnCopyKilledServeReverts(t *testing.T) {
	old := testdb.NewPG(t)
	old.Exec(t, "postgres", "CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL)")
	standby := old.Standby(t)
	n, app := switchoverNode(t, old)
	dir := migrationDir(t, map[string]string{
		"0001_extra.sql": "-- handoff:expand\nALTER TABLE acks ADD COLUMN extra text;\n",
		"0002_slow.sql":  "-- handoff:expand\nSELECT pg_sleep(60);\n",
	})
	l := startSiteLoad(n.gateway, 8, 4)
	defer l.halt()
	waitUntil(t, 30*time.Second, "writes through the gateway", func() bool { return l.count() >= 100 })

	done := make(chan result, 1)
	go func() {
		done <- n.cli("db", "switchover", "main", "--to", standby.URL("postgres"), "--migrate", dir, "--window", "5m")
	}()
	waitUntil(t, 120*time.Second, "the first migration on the copy", func() bool { return pgColumn(t, standby, "acks", "extra") })
	n.kill9()
	if r := <-done; r.code == 0 {
		t.Fatalf("the CLI succeeded though its server was killed:\n%s", r.stdout)
	}
	l.halt()
	acked := l.count()
	// The kill cut the app's connections to the endpoint (see
	// TestSwitchoverKilledServeRollsBackOnRestart).
	app.db.SetMaxIdleConns(0)
	app.db.SetMaxIdleConns(16)

	n.start()
	oldDB, err := sql.Open("pgx", old.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer oldDB.Close()
	waitUntil(t, 30*time.Second, "the old server to be writable again", func() bool {
		var ro string
		err := oldDB.QueryRow("SELECT setting FROM pg_settings WHERE name = 'default_transaction_read_only'").Scan(&ro)
		return err == nil && ro == "off"
	})
	waitUntil(t, 30*time.Second, "read-only to be off", func() bool { return !readOnly(n) })
	l2 := startSiteLoad(n.gateway, 8, 4)
	waitUntil(t, 30*time.Second, "writes after the restart", func() bool { return l2.count() >= 100 })
	l2.halt()
	l2.checkNoFailures(t)
	if r := l2.refused.Load(); r > 0 {
		t.Fatalf("%d writes refused after the revert: read-only is still on", r)
	}
	l.checkOn(t, old)
	l2.checkOn(t, old)
	if pgColumn(t, old, "acks", "extra") {
		t.Fatal("the old server's schema changed")
	}
	if !strings.Contains(n.output(), "migrate-on-copy (recovery) of main: rolled-back at ") {
		t.Errorf("no recovery event in the log")
	}
	t.Logf("reverted on restart; %d writes acknowledged before the kill, all on the old server", acked)
}

// --reverse through the real binary under HTTP load: a logical switchover
// (a major-version move's path) whose old server then subscribes to the
// new one; writes made after it reach the old server; the switch back
// with a plain `db switchover --to OLD` loses nothing. Zero failed
// requests throughout.
func TestSwitchoverReverseAndBackUnderHTTPLoad(t *testing.T) {
	old := testdb.NewPG(t)
	old.Exec(t, "postgres", "CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL)")
	sub := testdb.NewPG(t)
	sub.Subscribe(t, old, "postgres", "handoff_move")
	n, _ := switchoverNode(t, old)

	l := startWriteLoad(n.gateway, 16)
	defer l.halt()
	waitUntil(t, 30*time.Second, "writes through the gateway", func() bool { return l.count() >= 300 })
	out := n.must("db", "switchover", "main", "--to", sub.URL("postgres"), "--deadline", "10s", "--reverse")
	t.Logf("handoff db switchover --reverse:\n%s", out)
	if !strings.Contains(out, "reversing") || !strings.Contains(out, "switched: the endpoint points at "+sub.Addr()) {
		t.Fatalf("output:\n%s", out)
	}
	after := l.count()
	waitUntil(t, 30*time.Second, "writes on the new primary", func() bool { return l.count() >= after+300 })
	// Everything acknowledged so far reaches the old server.
	want := l.count()
	oldDB, err := sql.Open("pgx", old.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer oldDB.Close()
	waitUntil(t, 60*time.Second, "the writes on the new primary to reach the old server", func() bool {
		var c int
		return oldDB.QueryRow("SELECT count(*) FROM acks").Scan(&c) == nil && c >= want
	})

	out = n.must("db", "switchover", "main", "--to", old.URL("postgres"), "--deadline", "10s")
	t.Logf("handoff db switchover back:\n%s", out)
	if !strings.Contains(out, "switched: the endpoint points at "+old.Addr()) {
		t.Fatalf("output:\n%s", out)
	}
	after = l.count()
	waitUntil(t, 30*time.Second, "writes after the switch back", func() bool { return l.count() >= after+300 })
	l.halt()
	if f := l.failed.Load(); f > 0 {
		t.Fatalf("%d failed requests: %v", f, l.errs[:min(len(l.errs), 5)])
	}
	l.checkOn(t, old)
	if _, err := oldDB.Exec("INSERT INTO acks (note) VALUES ('direct')"); err != nil {
		t.Fatalf("a direct write on the old server after the switch back: %v", err)
	}
}
