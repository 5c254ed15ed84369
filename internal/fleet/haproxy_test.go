package fleet

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startHAProxy runs Debian's haproxy with two servers in backend web and
// three stats sockets: a unix one and a TCP one at level admin, and a
// unix one at level user. It returns the sockets' addresses.
func startHAProxy(t *testing.T) (admin, adminTCP, user string) {
	t.Helper()
	if _, err := exec.LookPath("haproxy"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("the HAProxy runtime API driver must be tested in CI: no haproxy (bash .ci/install-haproxy installs it)")
		}
		t.Skip("no haproxy (bash .ci/install-haproxy installs it)")
	}
	dir := t.TempDir()
	admin, user = filepath.Join(dir, "admin.sock"), filepath.Join(dir, "user.sock")
	adminTCP, front := freePort(t), freePort(t)
	cfg := fmt.Sprintf(`global
  stats socket %s level admin
  stats socket ipv4@%s level admin
  stats socket %s level user
defaults
  mode http
  timeout connect 1s
  timeout client 5s
  timeout server 5s
frontend fe
  bind %s
  default_backend web
backend web
  server web-1 127.0.0.1:1
  server web-2 127.0.0.1:2
`, admin, adminTCP, user, front)
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("haproxy", "-db", "-f", path)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() { cmd.Process.Kill(); <-exited })
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := HAProxyAPI{Addr: admin}.Command(context.Background(), "show info")
		if err == nil {
			break
		}
		select {
		case <-exited:
			t.Fatalf("haproxy exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy's stats socket does not answer: %v\n%s", err, out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return admin, adminTCP, user
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// adminState is the srv_admin_state column of "show servers state web"
// for server, as HAProxy prints it.
func adminState(t *testing.T, sock, server string) string {
	t.Helper()
	out, err := HAProxyAPI{Addr: sock}.Command(context.Background(), "show servers state web")
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "# "); ok {
			cols = strings.Fields(rest)
		} else if f := strings.Fields(line); field(cols, f, "srv_name") == server {
			return field(cols, f, "srv_admin_state")
		}
	}
	t.Fatalf("no server %s in:\n%s", server, out)
	return ""
}

// TestHAProxyAPIDrivesAServer: against a real HAProxy, a drain sets the
// server's admin state to drain (and only that server's), ready lifts it,
// maint sets maintenance; over the unix and the TCP socket alike.
func TestHAProxyAPIDrivesAServer(t *testing.T) {
	admin, adminTCP, _ := startHAProxy(t)
	ctx := context.Background()
	for _, addr := range []string{admin, adminTCP} {
		api := HAProxyAPI{Addr: addr, Server: "web/web-1"}
		for _, c := range []struct {
			set   DrainState
			want  DrainState
			admin string // srv_admin_state: 8 is HAProxy's forced drain, 1 its forced maintenance
		}{
			{Draining, Drained, "8"},
			{Ready, Ready, "0"},
			{Drained, Drained, "8"},
			{Maint, Maint, "1"}, // from drain straight to maint: maint alone
			{Ready, Ready, "0"},
		} {
			if err := api.Set(ctx, c.set); err != nil {
				t.Fatalf("%s: set %s: %v", addr, c.set, err)
			}
			got, err := api.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got != c.want || adminState(t, admin, "web-1") != c.admin {
				t.Fatalf("%s: after %s HAProxy holds %s (srv_admin_state %s), want %s (%s)", addr, c.set, got, adminState(t, admin, "web-1"), c.want, c.admin)
			}
			if other := adminState(t, admin, "web-2"); other != "0" {
				t.Fatalf("%s: web-2 was not told anything, yet its srv_admin_state is %s", addr, other)
			}
		}
	}
}

// TestHAProxyAPIErrorsSayWhy: what HAProxy refuses, and a socket that is
// not there, are errors that say so; a name that would carry a second
// command is refused before anything is sent.
func TestHAProxyAPIErrorsSayWhy(t *testing.T) {
	admin, _, user := startHAProxy(t)
	ctx := context.Background()
	for _, c := range []struct {
		api  HAProxyAPI
		want string
	}{
		{HAProxyAPI{Addr: admin, Server: "web/web-9"}, "refused 'set server web/web-9 state drain': No such server."},
		{HAProxyAPI{Addr: admin, Server: "api/web-1"}, "refused 'set server api/web-1 state drain': No such backend."},
		{HAProxyAPI{Addr: user, Server: "web/web-1"}, "Permission denied"},
		{HAProxyAPI{Addr: admin + ".gone", Server: "web/web-1"}, "haproxy runtime API at " + admin + ".gone: dial unix"},
		{HAProxyAPI{Addr: admin, Server: "web/web-1 state maint"}, "want BACKEND/SERVER"},
		{HAProxyAPI{Addr: admin, Server: "web/web-2;set server web/web-1 state maint"}, "want BACKEND/SERVER"},
	} {
		err := c.api.Set(ctx, Draining)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: want an error containing %q, got %v", c.api, c.want, err)
		}
	}
	for _, s := range []string{"web-1", "web-2"} {
		if got := adminState(t, admin, s); got != "0" {
			t.Errorf("after refused commands %s's srv_admin_state is %s, want 0", s, got)
		}
	}
	if _, err := (HAProxyAPI{Addr: admin, Server: "web/web-9"}).State(ctx); err == nil || !strings.Contains(err.Error(), "has no server web/web-9") {
		t.Errorf("the state of a server HAProxy lacks: %v", err)
	}
}
