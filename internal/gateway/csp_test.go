package gateway

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestAllowStyleHash(t *testing.T) {
	const h = "'sha256-X'"
	for _, tc := range []struct{ in, want string }{
		{"default-src 'self'", "default-src 'self'; style-src 'self' 'sha256-X'"},
		{"default-src 'none'; img-src *", "default-src 'none'; img-src *; style-src 'sha256-X'"},
		{"style-src 'self' 'nonce-abc'", "style-src 'self' 'nonce-abc' 'sha256-X'"},
		{"style-src 'nonce-abc' 'unsafe-inline'", "style-src 'nonce-abc' 'unsafe-inline' 'sha256-X'"},
		{"style-src 'unsafe-inline'", "style-src 'unsafe-inline'"},
		{"style-src 'none'", "style-src 'sha256-X'"},
		{"style-src 'self'; style-src-elem 'self'", "style-src 'self'; style-src-elem 'self' 'sha256-X'"},
		{"script-src 'self'", "script-src 'self'"},
		{"default-src 'unsafe-inline'", "default-src 'unsafe-inline'"},
		{"default-src 'self', style-src 'self'", "default-src 'self'; style-src 'self' 'sha256-X', style-src 'self' 'sha256-X'"},
		{"img-src *; DEFAULT-SRC https:", "img-src *; DEFAULT-SRC https:; style-src https: 'sha256-X'"},
	} {
		if got := allowStyleHash(tc.in, h); normalizeSpaces(got) != tc.want {
			t.Errorf("allowStyleHash(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func normalizeSpaces(s string) string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		var ds []string
		for _, d := range strings.Split(p, ";") {
			ds = append(ds, strings.Join(strings.Fields(d), " "))
		}
		out = append(out, strings.Join(ds, "; "))
	}
	return strings.Join(out, ", ")
}

// A page whose policy would block the banner's style gets exactly the
// banner's hash added to it, and the page still gets its banner.
func TestBannerUnderStrictCSP(t *testing.T) {
	const policy = "default-src 'self'; style-src 'self' 'nonce-r4nd0m'; script-src 'nonce-r4nd0m'"
	b := newWireBackend(t, func(c net.Conn, r *http.Request, body []byte) {
		page := `<html><head><style nonce="r4nd0m">p{}</style></head><body><p>app</p></body></html>`
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Security-Policy: "+policy+
			"\r\nContent-Length: "+itoaLen(page)+"\r\n\r\n"+page)
	})
	g, addr := frontDoor(t, b.addr)
	if err := g.SetModes("web", Modes{ReadOnly: &ReadOnly{Since: time.Now(), Banner: "Upgrading"}}); err != nil {
		t.Fatal(err)
	}
	resp, body, _ := exchangeRaw(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nAccept: text/html\r\n\r\n")
	if !strings.Contains(body, `<div id="handoff-banner"`) || !strings.Contains(body, "<style>"+bannerStyle+"</style>") {
		t.Fatalf("no banner: %s", body)
	}
	want := "default-src 'self'; style-src 'self' 'nonce-r4nd0m' " + bannerStyleHash + "; script-src 'nonce-r4nd0m'"
	if got := resp.Header.Get("Content-Security-Policy"); got != want {
		t.Fatalf("policy %q, want %q", got, want)
	}
}

func itoaLen(s string) string { return strconv.Itoa(len(s)) }

// A refused write says what the banner says and when read-only ends.
func TestReadOnlyRefusalTime(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	m := &readOnlyMode{text: "Upgrading the catalogue", retryAfter: time.Minute, until: now.Add(10 * time.Minute)}
	retry, msg := m.refusal(now)
	if retry != 10*time.Minute || !strings.Contains(msg, "Upgrading the catalogue.") || !strings.Contains(msg, "12:10 UTC") ||
		!strings.Contains(msg, "10 minutes") {
		t.Fatalf("refusal = %v %q", retry, msg)
	}
	m.until = time.Time{}
	if retry, msg = m.refusal(now); retry != time.Minute || !strings.Contains(msg, "a minute") {
		t.Fatalf("refusal without --for = %v %q", retry, msg)
	}
}
