package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/dashboard"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeAPI answers Status and Events, and Deploy and Logs as its fields
// say; the admin listener's wiring is what is under test here (e2e runs it
// against the real server).
type fakeAPI struct {
	deploy func(context.Context) (*deploy.Deploy, error)
	logs   func(context.Context, io.Writer) error
}

var errFake = errors.New("not faked")

func (fakeAPI) Status(context.Context, string) (*control.Status, error) {
	return &control.Status{PID: 1, Apps: []control.AppStatus{}}, nil
}
func (fakeAPI) Events(context.Context, int64, int) (*control.Events, error) {
	return &control.Events{}, nil
}
func (fakeAPI) SetMode(context.Context, string, control.ModeRequest) error { return errFake }
func (f fakeAPI) Deploy(ctx context.Context, _ control.DeployRequest, _ func(deploy.Progress)) (*deploy.Deploy, error) {
	if f.deploy != nil {
		return f.deploy(ctx)
	}
	return nil, errFake
}
func (fakeAPI) Rollback(context.Context, control.RollbackRequest, func(deploy.Progress)) (*deploy.Deploy, error) {
	return nil, errFake
}
func (fakeAPI) Releases(context.Context, string) (*control.Releases, error) { return nil, errFake }
func (f fakeAPI) Logs(ctx context.Context, w io.Writer, _ string, _ int, _ bool) error {
	if f.logs != nil {
		return f.logs(ctx, w)
	}
	return errFake
}
func (fakeAPI) Upgrade(context.Context) (*control.Upgrade, error) { return nil, errFake }

const adminToken = "0123456789abcdef-the-admin-token"

func startAdmin(t *testing.T) (*http.Server, string) {
	t.Helper()
	return startAdminWith(t, fakeAPI{}, defaultAdminTimeouts)
}

func startAdminWith(t *testing.T, api fakeAPI, timeouts adminTimeouts) (*http.Server, string) {
	t.Helper()
	srv := newAdminServer(api, adminToken, prometheus.NewRegistry(), slog.New(slog.DiscardHandler), timeouts,
		dashboard.Options{KeepAlive: 50 * time.Millisecond})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return srv, "http://" + l.Addr().String()
}

var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func get(t *testing.T, url string, header ...string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if len(header) == 2 {
		req.Header.Set(header[0], header[1])
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestAdminAuth: /api/ and /metrics take the Bearer token or the
// dashboard's session, answer 401 JSON without either; the dashboard's
// paths send a browser without a session to the login page.
func TestAdminAuth(t *testing.T) {
	_, base := startAdmin(t)
	for _, path := range []string{"/api/status", "/metrics"} {
		if resp := get(t, base+path); resp.StatusCode != 401 || resp.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s without a token: %s %s", path, resp.Status, resp.Header.Get("Content-Type"))
		}
		if resp := get(t, base+path, "Authorization", "Bearer "+adminToken); resp.StatusCode != 200 {
			t.Errorf("%s with the token: %s", path, resp.Status)
		}
	}
	if resp := get(t, base+"/"); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
		t.Errorf("/ without a session: %s to %q", resp.Status, resp.Header.Get("Location"))
	}
	if resp := get(t, base+"/login"); resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Errorf("/login: %s", resp.Status)
	}

	resp, err := noRedirect.PostForm(base+"/login", url.Values{"token": {adminToken}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cookies := resp.Cookies()
	if len(cookies) != 1 {
		t.Fatalf("login set %d cookies", len(cookies))
	}
	for _, path := range []string{"/", "/api/status", "/metrics"} {
		if resp := get(t, base+path, "Cookie", cookies[0].String()); resp.StatusCode != 200 {
			t.Errorf("%s with the session cookie: %s", path, resp.Status)
		}
	}
}

// TestAdminShutdownEndsStreams: an open dashboard does not hold up the
// admin server's Shutdown.
func TestAdminShutdownEndsStreams(t *testing.T) {
	srv, base := startAdmin(t)
	req, _ := http.NewRequest("GET", base+"/events", nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if line, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil || resp.StatusCode != 200 {
		t.Fatalf("the event stream: %s, %q, %v", resp.Status, line, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown with an open dashboard: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("shutdown took %s with an open dashboard", took)
	}
}
