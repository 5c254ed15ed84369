package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/handoff-dev/handoff/internal/testdb"
	"github.com/jackc/pgx/v5"
)

// dashboardLogin opens the dashboard at base in ctx's tab and logs in.
func dashboardLogin(t *testing.T, ctx context.Context, base, token string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 1000), chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("login"))); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	if _, err := chromedp.RunResponse(ctx, chromedp.SendKeys(chromedp.ID("token"), token), chromedp.SendKeys(chromedp.ID("name"), "e2e"), chromedp.Submit(chromedp.ID("login"))); err != nil {
		t.Fatalf("log in: %v", err)
	}
	waitJS(t, ctx, "the event stream to be live", `document.getElementById('live').dataset.state === 'live'`)
}

// TestDashboardFleetAndDatabases drives the dashboard of one node of a
// two-node fleet that fronts a database with a streaming standby: the
// Fleet section shows both nodes live, ready, on one release; the
// Databases section the endpoint's primary, its role and the standby as a
// replica with its lag. Then the other node is killed with -9: without a
// reload its tile turns LOST, in red. With HANDOFF_UPDATE_DASHBOARD_PNG=1
// the screenshot of that goes to docs/dashboard-fleet.png.
func TestDashboardFleetAndDatabases(t *testing.T) {
	chromium(t)
	state := testdb.Postgres(t)
	primary := testdb.NewPG(t)
	primary.Exec(t, "postgres", "CREATE TABLE ticks (n int)")
	standby := primary.Standby(t)

	var nodes []*node
	for i := 1; i <= 2; i++ {
		b := startBackend(t, "v1")
		dir := t.TempDir()
		n := &node{t: t, exe: bin, dir: dir, config: filepath.Join(dir, "handoff.yaml"), socket: filepath.Join(dir, "handoff.sock"), gateway: freeAddr(t)}
		extra := ""
		if i == 1 {
			n.admin = freeAddr(t)
			extra = fmt.Sprintf("admin: { listen: %q, token_file: %s }\ndatabases:\n  main:\n    kind: postgres\n    listen: %q\n    primary: %q\n",
				n.admin, filepath.Join(dir, "admin.token"), freeAddr(t), primary.Addr())
		}
		cfg := fmt.Sprintf("listen: [%q]\nsocket: %s\nstate: %s\nnode: web-%d\nlogs: %s\naccess_log: false\nfleet: { %s }\n%sapps:\n  web: { targets: [%q], health: { path: /healthz, interval: 200ms } }\n",
			n.gateway, n.socket, state, i, filepath.Join(dir, "logs"), defaultFleetKeys, extra, b.addr)
		if err := os.WriteFile(n.config, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		n.start()
		t.Cleanup(n.stop)
		nodes = append(nodes, n)
	}
	n1, n2 := nodes[0], nodes[1]
	token := strings.TrimSpace(readFile(filepath.Join(n1.dir, "admin.token")))
	ctx := newBrowser(t, 4*time.Minute)
	shots := newScreenshots(t)
	dashboardLogin(t, ctx, "http://"+n1.admin, token)
	do(t, ctx, "mark the page", chromedp.Evaluate[chromedp.Void](`window.handoffTestMark = true`))

	// Both nodes, live and ready; one release across the fleet.
	waitJS(t, ctx, "two live node tiles", `document.querySelectorAll('#fleet .node-tile[data-lost="false"][data-drain="ready"]').length === 2`)
	fleetText := run(t, ctx, chromedp.Evaluate[string](`document.getElementById('fleet').textContent`))
	for _, want := range []string{"web-1", "web-2", "this node", "heartbeat", "web: every node runs initial"} {
		if !strings.Contains(fleetText, want) {
			t.Errorf("the fleet section lacks %q:\n%s", want, fleetText)
		}
	}

	// The endpoint, its primary and the standby with a lag (kept measured
	// by writes on the primary).
	wctx, stopWrites := context.WithCancel(context.Background())
	defer stopWrites()
	writer, err := pgx.Connect(wctx, primary.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	wdone := make(chan struct{})
	defer func() { stopWrites(); <-wdone; writer.Close(context.Background()) }()
	go func() {
		defer close(wdone)
		for wctx.Err() == nil {
			writer.Exec(wctx, "INSERT INTO ticks VALUES (1)") // an error ends nothing: the page's lag is what is checked
			time.Sleep(200 * time.Millisecond)
		}
	}()
	waitJS(t, ctx, "the standby as a replica with a lag", `(() => {
		const r = document.querySelector('#db-main .replica[data-source="pg_stat_replication"] .lag');
		return r !== null && r.textContent.includes('replay');
	})()`)
	dbText := run(t, ctx, chromedp.Evaluate[string](`document.getElementById('databases').textContent`))
	for _, want := range []string{"main", "primary", primary.Addr(), "streaming"} {
		if !strings.Contains(dbText, want) {
			t.Errorf("the databases section lacks %q:\n%s", want, dbText)
		}
	}
	t.Logf("standby %s; the databases section says:\n%s", standby.Addr(), dbText)

	// web-2 killed: its tile turns LOST, in red, without a reload.
	n2.kill9()
	waitJS(t, ctx, "web-2 shown lost", `(() => {
		const n = document.querySelector('#fleet .node-tile[data-node="web-2"]');
		return n !== null && n.dataset.lost === 'true' && n.querySelector('.liveness').textContent === 'LOST';
	})()`)
	colors := run(t, ctx, chromedp.Evaluate[[]string](`(() => {
		const n = document.querySelector('#fleet .node-tile[data-node="web-2"]');
		return [getComputedStyle(n.querySelector('.liveness')).backgroundColor, getComputedStyle(n).borderTopColor];
	})()`))
	for _, c := range colors {
		if !isRed(c) {
			t.Errorf("the lost node's badge and border should be red, got %v", colors)
		}
	}
	if lost := pageText(t, ctx, "#fleet-h .lost-count"); lost != "1 lost" {
		t.Errorf("the fleet's heading says %q, want 1 lost", lost)
	}
	if marked := run(t, ctx, chromedp.Evaluate[bool](`window.handoffTestMark === true`)); !marked {
		t.Errorf("the page was reloaded: its updates should come over the event stream")
	}
	png := shots.take(ctx, "dashboard-fleet")
	if os.Getenv("HANDOFF_UPDATE_DASHBOARD_PNG") == "1" {
		path := filepath.Join("..", "docs", "dashboard-fleet.png")
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}

	// On a phone: no sideways scroll with the tiles and the timeline.
	do(t, ctx, "open the dashboard on a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)),
		chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("fleet")))
	if w := run(t, ctx, chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, window.innerWidth]`)); len(w) != 2 || w[0] > w[1] {
		t.Errorf("the page scrolls sideways on a 390px phone: scrollWidth, innerWidth = %v", w)
	}
}

// TestDashboardSwitchover watches `handoff db switchover` on the
// dashboard: a transaction held open through the endpoint keeps the
// switchover at its holding step until the page shows it running there;
// then it ends done with every step and its time, the endpoint on the new
// primary — without a reload.
func TestDashboardSwitchover(t *testing.T) {
	chromium(t)
	old := testdb.NewPG(t)
	old.Exec(t, "postgres", "CREATE TABLE acks (id bigserial PRIMARY KEY, note text NOT NULL)")
	standby := old.Standby(t)
	n, app := switchoverNode(t, old)
	token := strings.TrimSpace(readFile(filepath.Join(n.dir, "admin.token")))
	ctx := newBrowser(t, 4*time.Minute)
	shots := newScreenshots(t)
	dashboardLogin(t, ctx, "http://"+n.admin, token)
	waitJS(t, ctx, "the endpoint", `document.querySelector('#db-main') !== null`)
	if hidden := run(t, ctx, chromedp.Evaluate[bool](`document.getElementById('fleet').hidden`)); !hidden {
		t.Errorf("a node with no fleet shows the fleet section")
	}
	do(t, ctx, "mark the page", chromedp.Evaluate[chromedp.Void](`window.handoffTestMark = true`))

	// A transaction open through the endpoint: the switchover's pause
	// waits for it to end. It only reads: WAL of an uncommitted write is
	// not sent to the standby until something flushes it, and the
	// switchover's check would find the standby behind.
	tx, err := app.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec("SELECT count(*) FROM acks"); err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 1)
	go func() {
		out, err := exec.Command(bin, "db", "switchover", "main", "--to", standby.URL("postgres"), "--deadline", "5s", "--socket", n.socket).CombinedOutput()
		if err != nil {
			done <- fmt.Sprintf("handoff db switchover: %v\n%s", err, out)
			return
		}
		done <- ""
	}()
	// What the page shows, each time it changes, until the CLI returns.
	var seen []string
	holdUntil := time.Now().Add(3 * time.Second) // the deadline is 5s
	for finished := false; !finished; {
		if tx != nil && (slices.Contains(seen, "running:holding") || time.Now().After(holdUntil)) {
			if err := tx.Commit(); err != nil {
				t.Fatalf("commit the transaction held across the start: %v", err)
			}
			tx = nil
		}
		select {
		case msg := <-done:
			if msg != "" {
				t.Fatal(msg)
			}
			finished = true
		case <-time.After(20 * time.Millisecond):
		}
		s := run(t, ctx, chromedp.Evaluate[string](`(() => {
			const s = document.querySelector('#db-main .switchover');
			return s ? s.dataset.state + ':' + s.dataset.step : '';
		})()`))
		if s != "" && (len(seen) == 0 || seen[len(seen)-1] != s) {
			seen = append(seen, s)
		}
	}
	waitJS(t, ctx, "the switchover shown done", `(() => {
		const s = document.querySelector('#db-main .switchover');
		return s !== null && s.dataset.state === 'done';
	})()`)
	t.Logf("the page showed the switchover as: %v", seen)
	if !slices.Contains(seen, "running:holding") {
		t.Errorf("the page did not show the switchover running at its holding step; it showed %v", seen)
	}
	steps := run(t, ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll('#db-main .sw-steps li')).map(li => li.dataset.step)`))
	if want := "holding fencing catching-up promoting repointing resuming done"; strings.Join(steps, " ") != want {
		t.Errorf("the switchover's steps on the page: %v, want %s", steps, want)
	}
	waitJS(t, ctx, "the endpoint on the new primary", fmt.Sprintf(`document.querySelector('#db-main .db-primary').textContent.includes(%q)`, standby.Addr()))
	text := run(t, ctx, chromedp.Evaluate[string](`document.querySelector('#db-main .switchover').textContent`))
	for _, want := range []string{"last switchover", "postgres-physical", old.Addr(), standby.Addr(), "done", "deadline 5s", "took"} {
		if !strings.Contains(text, want) {
			t.Errorf("the switchover's part lacks %q:\n%s", want, text)
		}
	}
	if n := run(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#db-main svg.timeline rect').length`)); n != len(steps) {
		t.Errorf("the timeline has %d bars for %d steps", n, len(steps))
	}
	if marked := run(t, ctx, chromedp.Evaluate[bool](`window.handoffTestMark === true`)); !marked {
		t.Errorf("the page was reloaded: its updates should come over the event stream")
	}
	shots.take(ctx, "dashboard-switchover")
}

// do runs browser actions, failing the test on error.
func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// isRed reports whether a computed CSS colour is the page's red (--bad),
// light or dark: rgb(207, 34, 46) or rgb(248, 81, 73).
func isRed(c string) bool {
	return c == "rgb(207, 34, 46)" || c == "rgb(248, 81, 73)"
}
