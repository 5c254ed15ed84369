package e2e

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/switchover"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// twoNodesWithEndpoints starts a Postgres primary with table acks and a
// standby of it, and two fleet nodes, web-1 and web-2, each with its own
// endpoint main of that primary and an app (startDBApp) writing through it.
func twoNodesWithEndpoints(t *testing.T) (old, standby *testdb.PG, n1, n2 *node) {
	dsn := testdb.Postgres(t)
	old = testdb.NewPG(t)
	old.Exec(t, "postgres", "CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL)")
	standby = old.Standby(t)
	fleetNode := func(name string) *node {
		endpoint := freeAddr(t)
		app := startDBApp(t, endpoint)
		return newFleetNode(t, fleetSpec{name: name, gateway: freeAddr(t), state: dsn,
			app:   fmt.Sprintf("{ targets: [%q], health: { path: /healthz, interval: 200ms }, hold_max: 30s }", app.addr),
			extra: fmt.Sprintf("databases:\n  main: { kind: postgres, listen: %q, primary: %q }\n", endpoint, old.Addr())})
	}
	return old, standby, fleetNode("web-1"), fleetNode("web-2")
}

// TestFleetSwitchoverMovesEveryEndpoint: two nodes of a fleet, each with
// its own endpoint of the same database and an app writing through it,
// under write load through both gateways (never retried). `handoff db
// switchover` runs on web-1: zero failed requests on either node — web-2's
// endpoint is paused with the fleet's hold and moved before it resumes, so
// none of its writes meets the fenced old primary — and every write either
// node acknowledged is on the new primary.
func TestFleetSwitchoverMovesEveryEndpoint(t *testing.T) {
	_, standby, n1, n2 := twoNodesWithEndpoints(t)
	l1, l2 := startWriteLoad(n1.gateway, 8), startWriteLoad(n2.gateway, 8)
	defer l1.halt()
	defer l2.halt()
	waitUntil(t, 30*time.Second, "writes through both nodes", func() bool { return l1.count() > 100 && l2.count() > 100 })

	// A password in --to (trust ignores it) appears in no output.
	to := strings.Replace(standby.URL("postgres"), "postgres@", "postgres:s3cret-pw@", 1)
	out := n1.must("db", "switchover", "main", "--to", to, "--deadline", "10s", "--json")
	var rec switchover.Record
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rec.Step != switchover.Done {
		t.Fatalf("switchover: %+v", rec)
	}
	if strings.Contains(out, "s3cret-pw") || strings.Contains(n1.output(), "s3cret-pw") || strings.Contains(n2.output(), "s3cret-pw") {
		t.Fatalf("the password of --to was printed:\n%s", out)
	}
	at := l2.count()
	waitUntil(t, 30*time.Second, "writes through web-2 after the switchover", func() bool { return l2.count() > at+200 })
	l1.halt()
	l2.halt()
	for name, l := range map[string]*writeLoad{"web-1": l1, "web-2": l2} {
		if n := l.failed.Load(); n > 0 {
			t.Fatalf("%d requests through %s failed; the first: %s", n, name, strings.Join(l.errs[:min(3, len(l.errs))], " | "))
		}
	}
	l1.checkOn(t, standby)
	l2.checkOn(t, standby)
	if !strings.Contains(n2.output(), "follows the switchover") && !strings.Contains(n2.output(), "database endpoint repointed") {
		t.Fatalf("web-2's endpoint did not move:\n%s", n2.output())
	}
}

// TestFleetNodeRestartedMidSwitchoverLeavesItToItsNode: web-1 runs a
// switchover that waits, fenced, at catching-up (the standby applies
// commits 3 s late); web-2, which has its own endpoint of the database,
// is killed and started again meanwhile. web-2 must not take the running
// switchover for an interrupted one and roll it back (unfencing the old
// primary while web-1 promotes the standby: two writable primaries): it
// waits, and its endpoint serves on the new primary once web-1 is done.
func TestFleetNodeRestartedMidSwitchoverLeavesItToItsNode(t *testing.T) {
	old, standby, n1, n2 := twoNodesWithEndpoints(t)
	standby.Exec(t, "postgres", "ALTER SYSTEM SET recovery_min_apply_delay = '4s'")
	standby.Exec(t, "postgres", "SELECT pg_reload_conf()")
	// Writes go on through web-1, so that the standby, 4 s behind, keeps
	// the switchover at catching-up, fenced, for seconds.
	l := startWriteLoad(n1.gateway, 4)
	defer l.halt()
	waitUntil(t, 30*time.Second, "writes through web-1", func() bool { return l.count() >= 50 })

	done := make(chan result, 1)
	go func() {
		done <- n1.cli("db", "switchover", "main", "--to", standby.URL("postgres"), "--deadline", "30s", "--json")
	}()
	oldDB, err := sql.Open("pgx", old.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer oldDB.Close()
	readOnly := func() string {
		var ro string
		if err := oldDB.QueryRow("SELECT setting FROM pg_settings WHERE name = 'default_transaction_read_only'").Scan(&ro); err != nil {
			return "unknown: " + err.Error()
		}
		return ro
	}
	waitUntil(t, 30*time.Second, "the old primary to be fenced", func() bool { return readOnly() == "on" })
	n2.kill9()
	n2.start()
	waitUntil(t, 20*time.Second, "web-2 to see the switchover running on web-1 (or to undo it)", func() bool {
		return strings.Contains(n2.output(), "is running on node web-1") || readOnly() != "on"
	})
	if ro := readOnly(); ro != "on" {
		t.Fatalf("the old primary was unfenced (read_only %s) while web-1's switchover ran", ro)
	}
	r := <-done
	var rec switchover.Record
	if err := json.Unmarshal([]byte(r.stdout), &rec); err != nil || rec.Step != switchover.Done || rec.Node != "web-1" {
		t.Fatalf("web-1's switchover: exit %d, %+v, %v\n%s", r.code, rec, err, r.stderr)
	}
	if ro := readOnly(); ro != "on" {
		t.Fatalf("after the switchover the old primary is writable (read_only %s): two primaries", ro)
	}
	l.halt()
	if f := l.failed.Load(); f > 0 {
		t.Fatalf("%d requests through web-1 failed: %v", f, l.errs[:min(len(l.errs), 3)])
	}
	l.checkOn(t, standby)
	waitUntil(t, 30*time.Second, "web-2's endpoint to serve on the new primary", func() bool {
		resp, err := http.Post("http://"+n2.gateway+"/write?note=after", "text/plain", nil)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
