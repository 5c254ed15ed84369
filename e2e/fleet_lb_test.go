package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/fleet"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// haproxyOnLoopback is Debian's haproxy with backend web (servers web-1,
// web-2) and an admin stats socket, that a test can restart: HAProxy then
// starts from its config and forgets what its runtime API was told.
type haproxyOnLoopback struct {
	t      *testing.T
	cfg    string
	socket string
	stop   func()
}

func startHAProxyOnLoopback(t *testing.T) *haproxyOnLoopback {
	t.Helper()
	if _, err := exec.LookPath("haproxy"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("CI: no haproxy (bash .ci/install-haproxy installs it)")
		}
		t.Skip("no haproxy (bash .ci/install-haproxy installs it)")
	}
	dir := t.TempDir()
	h := &haproxyOnLoopback{t: t, cfg: filepath.Join(dir, "haproxy.cfg"), socket: filepath.Join(dir, "admin.sock")}
	conf := fmt.Sprintf(`global
  stats socket %s level admin
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
`, h.socket, freeAddr(t))
	if err := os.WriteFile(h.cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	h.start()
	t.Cleanup(func() { h.stop() })
	return h
}

func (h *haproxyOnLoopback) start() {
	h.t.Helper()
	cmd := exec.Command("haproxy", "-db", "-f", h.cfg)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	h.stop = func() { cmd.Process.Kill(); <-exited }
	waitUntil(h.t, 20*time.Second, "haproxy's stats socket", func() bool {
		_, err := fleet.HAProxyAPI{Addr: h.socket}.Command(context.Background(), "show info")
		return err == nil
	})
}

func (h *haproxyOnLoopback) state(server string) fleet.DrainState {
	st, err := fleet.HAProxyAPI{Addr: h.socket, Server: server}.State(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

// TestFleetTellsHAProxyAgainAfterItRestarts: a drained node is told to
// HAProxy's runtime API; HAProxy restarts (as a reload without a
// server-state-file does, it forgets) and holds the node ready again; the
// node reads that back and drains it again within seconds. A node in
// rotation is left as the operator sets it at HAProxy.
func TestFleetTellsHAProxyAgainAfterItRestarts(t *testing.T) {
	dsn := testdb.Postgres(t)
	h := startHAProxyOnLoopback(t)
	keys := fmt.Sprintf("%s, haproxy_api: %q, haproxy_server: web/web-1", defaultFleetKeys, h.socket)
	n1 := newFleetNode(t, fleetSpec{name: "web-1", gateway: freeAddr(t), state: dsn, fleet: keys, targets: []string{startSlowApp(t, 0)}})
	n1.must("fleet", "drain", "web-1", "--wait")
	waitUntil(t, 10*time.Second, "HAProxy to hold web-1 drained", func() bool { return h.state("web/web-1") == fleet.Drained })

	h.stop()
	h.start()
	if st := h.state("web/web-1"); st != fleet.Ready {
		t.Fatalf("after its restart HAProxy holds web-1 %s; the test wants it to forget (ready)", st)
	}
	start := time.Now()
	waitUntil(t, 10*time.Second, "web-1 to drain HAProxy's web-1 again", func() bool { return h.state("web/web-1") == fleet.Drained })
	t.Logf("told again %v after HAProxy's restart", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(n1.output(), "HAProxy no longer holds this node's state") {
		t.Fatalf("no warning in the log:\n%s", n1.output())
	}

	// Only ready is undone: an operator's maint of the drained node stands,
	// and so does it once the node is in rotation.
	operatorMaint := func(what string) {
		t.Helper()
		if err := (fleet.HAProxyAPI{Addr: h.socket, Server: "web/web-1"}).Set(context.Background(), fleet.Maint); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		if st := h.state("web/web-1"); st != fleet.Maint {
			t.Fatalf("the operator's maint at HAProxy (%s) was undone: %s", what, st)
		}
	}
	operatorMaint("node drained")
	n1.must("fleet", "ready", "web-1")
	waitUntil(t, 10*time.Second, "HAProxy to hold web-1 ready", func() bool { return h.state("web/web-1") == fleet.Ready })
	operatorMaint("node in rotation")
}
