package dashboard

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
)

const testToken = "0123456789abcdef-the-admin-token"

// testServer serves a dashboard of api the way the admin listener does:
// the control API behind Auth.Require, the dashboard on every other path.
type testServer struct {
	*httptest.Server
	dash *Dashboard
	auth *Auth
}

func newTestServer(t *testing.T, api control.API) *testServer {
	t.Helper()
	auth := NewAuth(testToken, time.Hour)
	d := New(api, auth, Options{Poll: 20 * time.Millisecond, KeepAlive: 100 * time.Millisecond, MaxStreams: 2})
	mux := http.NewServeMux()
	mux.Handle("/api/", auth.Require(control.Handler(api, slog.New(slog.DiscardHandler))))
	mux.Handle("/", d)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(d.Close) // before srv.Close, which waits for the streams
	return &testServer{Server: srv, dash: d, auth: auth}
}

// client follows no redirect, so that tests see them.
var client = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// do sends a request with the headers given as "Name: value" strings.
func (s *testServer) do(t *testing.T, method, path, body string, headers ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// login logs in as name and returns the session cookie header.
func (s *testServer) login(t *testing.T, name string) string {
	t.Helper()
	form := url.Values{"token": {testToken}, "name": {name}}.Encode()
	resp, _ := s.do(t, "POST", "/login", form, "Content-Type: application/x-www-form-urlencoded", "Origin: "+s.URL)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/" {
		t.Fatalf("login: %s, Location %q", resp.Status, resp.Header.Get("Location"))
	}
	for _, c := range resp.Cookies() {
		if c.Name == CookieName {
			return "Cookie: " + CookieName + "=" + c.Value
		}
	}
	t.Fatal("login set no session cookie")
	return ""
}

var csrfMeta = regexp.MustCompile(`<meta name="handoff-csrf" content="([^"]*)">`)

// csrf reads the CSRF token from the page, as the page's script does.
func (s *testServer) csrf(t *testing.T, cookie string) string {
	t.Helper()
	resp, body := s.do(t, "GET", "/", "", cookie)
	m := csrfMeta.FindStringSubmatch(body)
	if resp.StatusCode != http.StatusOK || m == nil || m[1] == "" {
		t.Fatalf("the page (%s) has no CSRF token", resp.Status)
	}
	return m[1]
}
