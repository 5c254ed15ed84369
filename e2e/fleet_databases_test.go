package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/switchover"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// TestFleetSwitchoverMovesEveryEndpoint: two nodes of a fleet, each with
// its own endpoint of the same database and an app writing through it,
// under write load through both gateways (never retried). `handoff db
// switchover` runs on web-1: zero failed requests on either node — web-2's
// endpoint is paused with the fleet's hold and moved before it resumes, so
// none of its writes meets the fenced old primary — and every write either
// node acknowledged is on the new primary.
func TestFleetSwitchoverMovesEveryEndpoint(t *testing.T) {
	dsn := testdb.Postgres(t)
	old := testdb.NewPG(t)
	old.Exec(t, "postgres", "CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL)")
	standby := old.Standby(t)
	fleetNode := func(name string) *node {
		endpoint := freeAddr(t)
		app := startDBApp(t, endpoint)
		return newFleetNode(t, fleetSpec{name: name, gateway: freeAddr(t), state: dsn,
			app:   fmt.Sprintf("{ targets: [%q], health: { path: /healthz, interval: 200ms }, hold_max: 30s }", app.addr),
			extra: fmt.Sprintf("databases:\n  main: { kind: postgres, listen: %q, primary: %q }\n", endpoint, old.Addr())})
	}
	n1, n2 := fleetNode("web-1"), fleetNode("web-2")
	l1, l2 := startWriteLoad(n1.gateway, 8), startWriteLoad(n2.gateway, 8)
	defer l1.halt()
	defer l2.halt()
	waitUntil(t, 30*time.Second, "writes through both nodes", func() bool { return l1.count() > 100 && l2.count() > 100 })

	out := n1.must("db", "switchover", "main", "--to", standby.URL("postgres"), "--deadline", "10s", "--json")
	var rec switchover.Record
	if err := json.Unmarshal([]byte(out), &rec); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rec.Step != switchover.Done {
		t.Fatalf("switchover: %+v", rec)
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
