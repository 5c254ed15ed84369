package e2e

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// strictPage is an app page as many apps send it: a nonce-based policy
// that allows the app's own style and script and no other inline code.
const (
	strictPolicy = "default-src 'self'; style-src 'self' 'nonce-n0nce'; script-src 'nonce-n0nce'; img-src 'self'"
	strictPage   = `<!doctype html><html><head><title>app</title><style nonce="n0nce">p.app{color:rgb(1, 2, 3)}</style></head>` +
		`<body><p class="app" id="app">the app</p><p id="attr" style="color:rgb(9, 9, 9)">inline attribute</p>` +
		`<script nonce="n0nce">window.appScript = 1</script><script>window.injected = 1</script></body></html>`
)

// The read-only banner is styled in a real browser under the app's strict
// Content-Security-Policy, and the policy allows nothing more than before:
// the app's nonce'd code runs, its un-nonce'd script and inline style
// attribute stay blocked.
func TestBannerUnderStrictCSPInChromium(t *testing.T) {
	ctx := newBrowser(t, 60*time.Second)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", strictPolicy)
		io.WriteString(w, strictPage)
	})}
	go app.Serve(l)
	t.Cleanup(func() { app.Close() })
	n := newNode(t, "  web:\n    targets: [\""+l.Addr().String()+"\"]\n    health: { path: /healthz, interval: 200ms }\n")
	n.must("readonly", "on", "--banner", "Upgrading the catalogue", "--for", "10m")

	if err := chromedp.Do(ctx, chromedp.Navigate("http://"+n.gateway+"/"), chromedp.WaitVisible(chromedp.ID("handoff-banner"))); err != nil {
		t.Fatal(err)
	}
	check := func(what, expr, want string) {
		t.Helper()
		if got := run(t, ctx, chromedp.Evaluate[string](expr)); got != want {
			t.Errorf("%s: %q, want %q", what, got, want)
		}
	}
	banner := `getComputedStyle(document.getElementById('handoff-banner'))`
	check("the banner's background", banner+`.backgroundColor`, "rgb(255, 243, 205)")
	check("the banner's position", banner+`.position`, "sticky")
	check("the banner's text", `document.getElementById('handoff-banner').innerText.trim()`, "Upgrading the catalogue")
	check("the app's own nonce'd style", `getComputedStyle(document.getElementById('app')).color`, "rgb(1, 2, 3)")
	check("an inline style attribute (blocked before, blocked now)", `getComputedStyle(document.getElementById('attr')).color`, "rgb(0, 0, 0)")
	check("the app's nonce'd script", `String(window.appScript)`, "1")
	check("an injected script (blocked before, blocked now)", `String(window.injected)`, "undefined")

	// A write in read-only says how long it lasts.
	resp, err := http.Post("http://"+n.gateway+"/form", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != 503 || ra < 540 || ra > 600 || !strings.Contains(string(body), "Upgrading the catalogue") ||
		!strings.Contains(string(body), "10 minutes") {
		t.Errorf("a write in read-only --for 10m: %d Retry-After %d %s", resp.StatusCode, ra, body)
	}
}
