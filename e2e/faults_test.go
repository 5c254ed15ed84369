package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The helpers of the fault tests (lifecycle, full disk, strategies).

// deployInBackground starts `handoff deploy APP --release DIR` and
// returns it running, with its output gathered.
func deployInBackground(t *testing.T, n *node, app, dir string) (*exec.Cmd, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(bin, "deploy", app, "--release", dir, "--socket", n.socket)
	cmd.Dir = n.dir
	out := &strings.Builder{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

// waitForInstanceOf waits until an instance of release runs (a deploy has
// begun to start it).
func waitForInstanceOf(t *testing.T, n *node, app, release string) {
	t.Helper()
	waitUntil(t, 30*time.Second, "an instance of "+release, func() bool {
		for _, inst := range n.instances(app) {
			if inst.Release == release {
				return true
			}
		}
		return false
	})
}

// moveState points the stopped node's state: at path.
func moveState(t *testing.T, n *node, path string) {
	t.Helper()
	rewriteConfig(t, n, n.config, "state: "+filepath.Join(n.dir, "handoff.db"), "state: "+path)
}

// rewriteConfig writes the node's config with old replaced by new to path.
func rewriteConfig(t *testing.T, n *node, path, old, new string) {
	t.Helper()
	cfg, err := os.ReadFile(n.config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), old) {
		t.Fatalf("the config has no %q", old)
	}
	if err := os.WriteFile(path, []byte(strings.Replace(string(cfg), old, new, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}

// takenAddr returns an address that something else listens on.
func takenAddr(t *testing.T) string {
	t.Helper()
	addr := freeAddr(t)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return addr
}

// adminLine is the config line that sets the node's admin listener to addr.
func (n *node) adminLine(addr string) string { return "admin: { listen: \"" + addr + "\" }" }
