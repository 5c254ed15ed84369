package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
)

// deployView is what the dashboard shows of an app's deploy.
type deployView struct {
	ID    string   `json:"id"`
	State string   `json:"state"`
	Steps []string `json:"steps"` // each step's state
}

func (d *deployView) done() int {
	n := 0
	for _, s := range d.Steps {
		if s == "done" {
			n++
		}
	}
	return n
}

// TestDashboard drives the dashboard in headless chromium against a real
// node: the login page without a session, the apps with their instances
// and workers after logging in, read-only switched on from the page (with
// a banner the proxied app's page then shows) and off again, and a rolling
// deploy whose step list the page shows progressing live, without a reload,
// to done; then the same page on a phone-sized screen, with no horizontal
// scroll. Screenshots go to the test's temp dir; with
// HANDOFF_UPDATE_DASHBOARD_PNG=1 the one of the deploy also to
// docs/dashboard.png.
func TestDashboard(t *testing.T) {
	chromium(t) // skip at once without it
	dir := t.TempDir()
	web, jobs := filepath.Join(dir, "web"), filepath.Join(dir, "jobs")
	makeRelease(t, web, "v1", "")
	makeRelease(t, web, "v2", "slow") // 2s to listen: each brick takes a moment
	makeRelease(t, jobs, "v1", "")
	n := newNode(t, fmt.Sprintf(`  web:
    command: [bin/app]
    releases: %s
    instances: 3
    health: { path: /healthz, interval: 200ms }
    drain_timeout: 2s
  jobs:
    kind: worker
    command: [bin/app, --worker, --job, 3s]
    releases: %s
`, web, jobs))
	n.must("deploy", "web", "--release", filepath.Join(web, "v1"))
	n.must("deploy", "jobs", "--release", filepath.Join(jobs, "v1"))
	token := strings.TrimSpace(readFile(filepath.Join(n.dir, "admin.token")))
	base := "http://" + n.admin
	// After the node: the browser closes first, so that no connection of
	// its keeps the node's shutdown waiting.
	ctx := newBrowser(t, 4*time.Minute)
	shots := newScreenshots(t)
	do := func(ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	submit := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if _, err := chromedp.RunResponse(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}

	// No session: the login page.
	do(ctx, "open the dashboard", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("login")))
	if loc := run(t, ctx, chromedp.Location()); !strings.HasSuffix(loc, "/login") {
		t.Errorf("without a session the dashboard should show its login page, got %s", loc)
	}
	shots.take(ctx, "login")

	// A wrong token is refused; the right one shows the apps.
	submit("log in with a wrong token", chromedp.SendKeys(chromedp.ID("token"), "not-the-token"), chromedp.Submit(chromedp.ID("login")))
	do(ctx, "see the login refused", chromedp.WaitVisible(chromedp.CSS("#login .problem")))
	submit("log in", chromedp.SendKeys(chromedp.ID("token"), token), chromedp.SendKeys(chromedp.ID("name"), "e2e"), chromedp.Submit(chromedp.ID("login")))
	do(ctx, "see the apps", chromedp.WaitVisible(chromedp.ID("app-web-state")))
	waitJS(t, ctx, "the event stream to be live", `document.getElementById('live').dataset.state === 'live'`)
	webText := pageText(t, ctx, "#app-web-state")
	for _, want := range []string{"web-v1-0", "web-v1-1", "web-v1-2", "healthy", "in flight"} {
		if !strings.Contains(webText, want) {
			t.Errorf("the web app's part of the page lacks %q:\n%s", want, webText)
		}
	}
	if jobsText := pageText(t, ctx, "#app-jobs-state"); !strings.Contains(jobsText, "jobs-v1-0") {
		t.Errorf("the worker is not shown:\n%s", jobsText)
	}
	// Set once: a reload would lose it, so it proves what follows is live.
	do(ctx, "mark the page", chromedp.Evaluate[chromedp.Void](`window.handoffTestMark = true`))

	// Read-only from the page, with a banner: the app's page shows it.
	const banner = "Upgrading the catalogue: back to normal by 10:30"
	do(ctx, "switch read-only on", chromedp.SendKeys(chromedp.ID("banner-web"), banner), chromedp.Click(chromedp.ID("sw-web-readonly")))
	waitJS(t, ctx, "the read-only switch to show on", `document.getElementById('sw-web-readonly').getAttribute('aria-checked') === 'true'`)
	waitJS(t, ctx, "the event log to show who switched read-only on",
		`Array.from(document.querySelectorAll('#log li')).some(li => li.textContent.includes('read-only on') && li.textContent.includes('e2e (dashboard)'))`)
	if ro := n.appStatus("web").Modes.ReadOnly; ro == nil || ro.Banner != banner {
		t.Fatalf("the server's read-only mode after the switch: %+v", ro)
	}
	shots.take(ctx, "dashboard-readonly")

	app, closeApp := chromedp.NewContext(ctx) // a second tab
	defer closeApp()
	do(app, "open the app through the gateway", chromedp.Navigate("http://"+n.gateway+"/"), chromedp.WaitVisible(chromedp.ID("handoff-banner")))
	if got := run(t, app, chromedp.Text(chromedp.ID("handoff-banner"))); strings.TrimSpace(got) != banner {
		t.Errorf("the app's page shows the banner %q, want %q", got, banner)
	}
	shots.take(app, "app-readonly")

	do(ctx, "switch read-only off", chromedp.Click(chromedp.ID("sw-web-readonly")))
	waitJS(t, ctx, "the read-only switch to show off", `document.getElementById('sw-web-readonly').getAttribute('aria-checked') === 'false'`)
	do(app, "reload the app", chromedp.Navigate("http://"+n.gateway+"/"), chromedp.WaitVisible(chromedp.ID("release")))
	if gone := run(t, app, chromedp.Evaluate[bool](`document.getElementById('handoff-banner') === null`)); !gone {
		t.Errorf("the banner is still on the app's page after read-only was switched off")
	}

	// A rolling deploy started from the CLI, watched on the page.
	do(ctx, "move the mouse off the switches", chromedp.MouseEvent(input.DispatchMouseEventTypeMouseMoved, 0, 0))
	before := readDeploy(t, ctx)
	deployed := make(chan string, 1)
	go func() {
		cmd := exec.Command(bin, "deploy", "web", "--release", filepath.Join(web, "v2"), "--socket", n.socket)
		out, err := cmd.CombinedOutput()
		if err != nil {
			deployed <- fmt.Sprintf("handoff deploy: %v\n%s", err, out)
			return
		}
		deployed <- ""
	}()
	var seen []deployView
	var deployShot []byte
	deadline := time.Now().Add(90 * time.Second)
	for {
		d := readDeploy(t, ctx)
		if d != nil && (before == nil || d.ID != before.ID) {
			if len(seen) == 0 || d.State != seen[len(seen)-1].State || d.done() != seen[len(seen)-1].done() {
				seen = append(seen, *d)
				t.Logf("the page shows deploy %s %s, %d/%d steps done", d.ID, d.State, d.done(), len(d.Steps))
			}
			if deployShot == nil && d.State == "running" && d.done() >= len(d.Steps)/2 {
				deployShot = shots.take(ctx, "dashboard-deploy")
			}
			if d.State != "running" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page did not show the deploy ending within 90s; it showed %+v", seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if msg := <-deployed; msg != "" {
		t.Fatal(msg)
	}
	last := seen[len(seen)-1]
	if last.State != "done" || last.done() != len(last.Steps) || len(last.Steps) < 10 {
		t.Errorf("the page should end with every step of the rolling deploy done: %+v", last)
	}
	progress := 0 // distinct counts of done steps seen while running
	for _, d := range seen {
		if d.State == "running" && d.done() > 0 && d.done() < len(d.Steps) {
			progress++
		}
	}
	if progress < 3 {
		t.Errorf("the step list should have progressed live on the page, but it showed only %+v", seen)
	}
	if marked := run(t, ctx, chromedp.Evaluate[bool](`window.handoffTestMark === true`)); !marked {
		t.Errorf("the page was reloaded: its updates should come over the event stream")
	}
	waitJS(t, ctx, "the page to show the v2 instances", `document.getElementById('app-web-state').textContent.includes('web-v2-2')`)
	shots.take(ctx, "dashboard-deployed")
	if deployShot == nil {
		t.Errorf("no screenshot of the deploy in progress")
	} else if os.Getenv("HANDOFF_UPDATE_DASHBOARD_PNG") == "1" {
		path := filepath.Join("..", "docs", "dashboard.png")
		if err := os.WriteFile(path, deployShot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}

	// On a phone: the same page, no horizontal scroll.
	do(ctx, "open the dashboard on a phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile, chromedp.EmulateScale(2)),
		chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("app-web-state")))
	if w := run(t, ctx, chromedp.Evaluate[[]int](`[document.documentElement.scrollWidth, window.innerWidth]`)); len(w) != 2 || w[0] > w[1] {
		t.Errorf("the page scrolls sideways on a 390px phone: scrollWidth, innerWidth = %v", w)
	}
	if png := shots.take(ctx, "dashboard-phone"); bytes.Equal(png, deployShot) {
		t.Errorf("the phone screenshot is the desktop one")
	}
}

// readDeploy returns the web app's deploy as the page shows it, or nil.
func readDeploy(t *testing.T, ctx context.Context) *deployView {
	t.Helper()
	return run(t, ctx, chromedp.Evaluate[*deployView](`(() => {
		const d = document.querySelector('#app-web-state details.deploy');
		if (!d) return null;
		return {id: d.id, state: d.dataset.state, steps: Array.from(d.querySelectorAll('li.step')).map(li => li.dataset.state)};
	})()`))
}

// run runs one browser action that returns a value, failing the test on error.
func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return v
}

// pageText is the visible text of the first element matching a CSS
// selector, read in one step in the page. The dashboard re-renders its
// parts as events come: a node looked up first and read after may be gone
// by then (chromedp.Text: "No node with given id found", seen in CI).
func pageText(t *testing.T, ctx context.Context, selector string) string {
	t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.innerText : null; })()`, selector)
	v := run(t, ctx, chromedp.Evaluate[*string](js))
	if v == nil {
		t.Fatalf("no %s on the page", selector)
	}
	return *v
}

// waitJS waits until a JavaScript expression is true on the page.
func waitJS(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}
