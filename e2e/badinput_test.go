package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/loadgen"
)

// TestBadConfigChangesNothing: a config with a mistake is refused with the
// file, line and key, and the server does not start.
func TestBadConfigChangesNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(cfg, []byte("listen: [\"127.0.0.1:0\"]\napps:\n  web:\n    instnces: 3\n    drain_timeout: soon\n"), 0o644)
	cmd := exec.Command(bin, "serve", "--config", cfg)
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); err == nil || code != 1 {
		t.Fatalf("bad config: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{`bad.yaml:4: apps.web.instnces: unknown key (did you mean "instances"?)`, `bad.yaml:5: apps.web.drain_timeout: want a duration`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the error should say %q; it said:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "handoff.db")); err == nil {
		t.Error("a refused config still created the state store")
	}
}

// TestBadInputUnderLoad sends an operator's mistakes and garbage requests to
// a serving node: each gets a clear error, nothing changes, and the load
// through the gateway sees no failure.
func TestBadInputUnderLoad(t *testing.T) {
	v1 := startBackend(t, "v1")
	n := newNode(t, fmt.Sprintf(`  web:
    targets: [%q]
    health: { path: /healthz, interval: 200ms }
    start_timeout: 2s
`, v1.addr))
	load, err := loadgen.Start(context.Background(), loadgen.Config{Addr: n.gateway, Fast: 16, Uploaders: 2, Duration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	before := n.status()

	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"deploy", "nosuch", "--target", v1.addr}, 1, `unknown app "nosuch"`},
		{[]string{"deploy", "web", "--target", "127.0.0.1:1", "--label", "dead"}, 1, "never became healthy"},
		{[]string{"deploy", "web", "--target", "not-an-address"}, 2, `target "not-an-address": want host:port`},
		{[]string{"deploy", "web", "--target", v1.addr, "--strategy", "sideways"}, 2, `unknown strategy "sideways"`},
		{[]string{"deploy", "web", "--target", v1.addr, "--strategy", "canary"}, 2, "a canary needs --percent between 1 and 99"},
		{[]string{"deploy", "web", "--promote"}, 1, "no canary to promote"},
		{[]string{"readonly", "maybe"}, 2, `want on or off, got "maybe"`},
		{[]string{"readonly", "on", "--app", "nosuch"}, 1, `unknown app "nosuch"`},
		{[]string{"status", "nosuch"}, 1, `unknown app "nosuch"`},
		{[]string{"rollback", "web"}, 1, "no previous release"},
		{[]string{"pause", "extra"}, 2, "unknown command"},
	}
	for _, c := range cases {
		r := n.cli(c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("handoff %s: exit %d, stderr %q; want exit %d and %q", strings.Join(c.args, " "), r.code, r.stderr, c.code, c.want)
		}
	}

	// Malformed requests to the control API: a JSON error, nothing changed.
	sock := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", n.socket)
	}}}
	for _, c := range []struct{ method, path, body, want string }{
		{"POST", "/api/deploy", "{not json", "malformed request body"},
		{"POST", "/api/deploy", `{"app":"web","targetz":["x:1"]}`, `targetz`},
		{"POST", "/api/readonly", `{"app":"web","on":"yes"}`, "malformed request body"},
		{"GET", "/api/nothing", "", "no API endpoint"},
	} {
		req, _ := http.NewRequest(c.method, "http://handoff"+c.path, strings.NewReader(c.body))
		resp, err := sock.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 || resp.Header.Get("Content-Type") != "application/json" || !strings.Contains(string(body), c.want) {
			t.Errorf("%s %s %s: %d %s", c.method, c.path, c.body, resp.StatusCode, body)
		}
	}
	// The admin listener wants its token.
	resp, err := http.Get("http://" + n.admin + "/api/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the admin API without a token answered %d", resp.StatusCode)
	}

	// Garbage and oversized requests to the gateway get 4xx and close.
	for _, c := range []struct{ raw, want string }{
		{"NOT HTTP AT ALL\r\n\r\n", "400"},
		{"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 70<<10) + "\r\n\r\n", "431"},
		{"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "400"}, // smuggling
	} {
		conn, err := net.Dial("tcp", n.gateway)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(conn, c.raw)
		line, _ := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if !strings.Contains(line, c.want) {
			t.Errorf("gateway answered %q to %.40q, want %s", line, c.raw, c.want)
		}
	}

	res := load.Stop()
	if err := res.Err(); err != nil {
		t.Errorf("bad input disturbed serving: %v", err)
	}
	after := n.status()
	if before.Apps[0].Current != after.Apps[0].Current || after.Apps[0].Pools[0].Targets[0].Addr != v1.addr || after.Apps[0].Mode != "normal" {
		t.Errorf("bad input changed the state: before %+v, after %+v", before.Apps[0], after.Apps[0])
	}
}
