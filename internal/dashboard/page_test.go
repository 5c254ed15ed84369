package dashboard

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/gateway"
)

// TestLoginPage: without a session the dashboard sends the browser to its
// login page; a wrong token is refused there; the right one leads back.
func TestLoginPage(t *testing.T) {
	s := newTestServer(t, newFakeAPI())
	resp, _ := s.do(t, "GET", "/", "")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Fatalf("GET / without a session: %s to %q, want 303 to /login", resp.Status, resp.Header.Get("Location"))
	}
	resp, body := s.do(t, "GET", "/login", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `<form method="post" action="/login"`) || !strings.Contains(body, `name="token"`) {
		t.Fatalf("GET /login: %s\n%s", resp.Status, body)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("the login page may be framed: CSP %q", csp)
	}

	form := "Content-Type: application/x-www-form-urlencoded"
	resp, body = s.do(t, "POST", "/login", url.Values{"token": {"wrong"}}.Encode(), form)
	if resp.StatusCode != http.StatusUnauthorized || len(resp.Cookies()) != 0 || !strings.Contains(body, "not the admin token") {
		t.Errorf("a wrong token: %s, cookies %v\n%s", resp.Status, resp.Cookies(), body)
	}
	resp, _ = s.do(t, "POST", "/login", url.Values{"token": {testToken}}.Encode(), form, "Sec-Fetch-Site: cross-site")
	if resp.StatusCode != http.StatusForbidden || len(resp.Cookies()) != 0 {
		t.Errorf("a login form posted from another site: %s, cookies %v; want 403 and none", resp.Status, resp.Cookies())
	}

	cookie := s.login(t, "alice")
	if resp, _ := s.do(t, "GET", "/login", "", cookie); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Errorf("GET /login when logged in: %s, want a redirect to /", resp.Status)
	}
	if resp, _ := s.do(t, "GET", "/events", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /events without a session: %s", resp.Status)
	}
	if resp, _ := s.do(t, "GET", "/nothing", "", cookie); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nothing: %s", resp.Status)
	}
	resp, body = s.do(t, "GET", "/static/dashboard.js", "")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("ETag") == "" || !strings.Contains(body, "EventSource") {
		t.Errorf("GET /static/dashboard.js without a session: %s", resp.Status)
	}
}

// TestPage: the page shows every app with its instances and workers, the
// deploy's steps, the modes, the migrations and the event log.
func TestPage(t *testing.T) {
	api := newFakeAPI()
	api.setStatus(func(st *control.Status) {
		web := &st.Apps[0]
		web.Mode = "readonly"
		web.Modes.ReadOnly = &gateway.ReadOnly{Since: time.Now(), Banner: "Back <soon>"}
		web.Draining = []gateway.TargetStatus{{Addr: "10.0.0.9:80", Release: "v1", Healthy: false, LastError: "connection refused", Inflight: 2, Draining: true, Since: time.Now()}}
		st.Migrations = []control.Migration{{ID: "0007_title_lower",
			Phases:   []control.Phase{{Name: "expand", State: "done"}, {Name: "backfill", State: "running"}, {Name: "contract", State: "pending"}},
			Backfill: &control.Backfill{State: "running", Rows: 250_000, Total: 1_000_000, RowsPerSec: 12_500, ETASeconds: 60},
		}}
		st.Warnings = []string{"web has been read-only for a long time"}
		web.Releases = []control.ReleaseHealth{
			{Release: "v1", Requests: 900, Share2xx: 0.99, Share5xx: 0.01, P50Ms: 2.5, P99Ms: 25},
			{Release: "v2", Requests: 100, Share2xx: 0.5, Share3xx: 0.5, P50Ms: 2.5, P99Ms: 10},
		}
	})
	api.appendEvent("web", "deploy", "alice@host (cli)", "deploy web-7 started: v1 → v2 (rolling)")
	api.appendEvent("web", "mode", "bob (dashboard)", "web: read-only on")
	s := newTestServer(t, api)
	cookie := s.login(t, "bob")
	resp, body := s.do(t, "GET", "/", "", cookie)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %s", resp.Status)
	}
	for _, want := range []string{
		`id="app-web-state"`, `id="app-jobs-state"`, // every app
		"web-v2-0", "jobs-v1-0", "in flight</span> <span class=\"inflight\">3</span>", // instances, workers, in flight
		"10.0.0.9:80", "failing: connection refused", "draining since", // a draining external target
		"mixed: v2 ×1, v1 ×1",                                                                               // more than one release runs
		`deploy <strong>web-7</strong>`, "start v2 (brick 1)", "check v2 (brick 1)", `data-state="running"`, // the deploy's steps
		`id="sw-web-readonly" class="switch" role="switch" aria-checked="true"`, `value="Back &lt;soon&gt;"`, // the read-only switch, its banner escaped
		`<span class="mode mode-readonly">readonly</span>`,
		"0007_title_lower", `<progress max="100" value="25.0">`, "12k rows/s", "ETA 1m0s", // migrations
		"web has been read-only for a long time",                    // warnings
		"deploy web-7 started", "bob (dashboard)", `data-after="2"`, // the event log
		`<meta name="handoff-actor" content="bob (dashboard)">`,
		`<tr data-release="v2"><th scope="row">v2</th><td>100</td>`,                 // releases side by side
		`<rect class="c3xx" x="50" width="50" height="10"><title>3xx 50.0%</title>`, // a bar of its answers
		"2xx 99.0% · 5xx 1.0%", "<td>25ms</td>",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if strings.Index(body, "web: read-only on") > strings.Index(body, "deploy web-7 started") {
		t.Error("the event log should list the newest event first")
	}
	if strings.Contains(body, `id="sw-jobs-readonly"`) {
		t.Error("a worker gets no mode switches: it has no traffic")
	}

	// With the Bearer token: the page, without a session's logout or CSRF token.
	resp, body = s.do(t, "GET", "/", "", "Authorization: Bearer "+testToken)
	if resp.StatusCode != http.StatusOK || strings.Contains(body, `action="/logout"`) || !strings.Contains(body, `name="handoff-csrf" content=""`) {
		t.Errorf("GET / with the Bearer token: %s", resp.Status)
	}
}

// TestFragmentIDs: each part of the page the stream swaps carries the id
// the stream sends it under.
func TestFragmentIDs(t *testing.T) {
	st, _ := newFakeAPI().Status(t.Context(), "")
	frags, err := fragments(newStatusView(st))
	if err != nil {
		t.Fatal(err)
	}
	if len(frags) != 4+2*len(st.Apps)+1 { // node, alerts, fleet, databases; each app's two; migrations
		t.Errorf("%d fragments for %d apps", len(frags), len(st.Apps))
	}
	for _, f := range frags {
		if first, _, _ := strings.Cut(f.html, ">"); !strings.Contains(first, `id="`+f.id+`"`) {
			t.Errorf("fragment %s starts with %s>", f.id, first)
		}
	}
}
