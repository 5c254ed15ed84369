package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOutOfDescriptors: handoff serve under a low open-file limit, with
// every descriptor taken by idle client connections, cannot open a socket
// for its health checks. It must not blame the instance: the target stays
// in rotation and serves as soon as descriptors are free, and status warns
// of the gateway's own fault.
func TestOutOfDescriptors(t *testing.T) {
	v1 := startBackend(t, "v1")
	wrapper := filepath.Join(t.TempDir(), "handoff-nofile")
	if err := os.WriteFile(wrapper, []byte(fmt.Sprintf("#!/bin/sh\nulimit -n 128\nexec %s \"$@\"\n", bin)), 0o755); err != nil {
		t.Fatal(err)
	}
	n := newNodeTopWith(t, wrapper, "gateway: { max_connections: 1000 }\n", fmt.Sprintf(`  web:
    targets: [%q]
    health: { path: /healthz, interval: 100ms }
`, v1.addr))
	var conns []net.Conn
	for range 200 {
		c, err := net.DialTimeout("tcp", n.gateway, time.Second)
		if err != nil {
			break
		}
		conns = append(conns, c)
	}
	time.Sleep(1500 * time.Millisecond) // checks fail for want of descriptors meanwhile
	for _, c := range conns {
		c.Close()
	}
	var st string
	waitUntil(t, 15*time.Second, "status to answer", func() bool {
		r := n.cli("status")
		st = r.stdout
		return r.code == 0
	})
	if !strings.Contains(st, "the gateway ran out of file descriptors") || !strings.Contains(st, "were not marked down") {
		t.Errorf("status does not warn of the gateway's own fault:\n%s", st)
	}
	if strings.Contains(st, "failing its health check") {
		t.Errorf("status blames the instance:\n%s", st)
	}
	log := n.output()
	if strings.Contains(log, `"healthy":false`) {
		t.Errorf("the instance was marked down for the gateway's EMFILE:\n%s", log)
	}
	if k := strings.Count(log, "out of file descriptors"); k != 1 {
		t.Errorf("logged %d times in 1.5s, want once per 10s", k)
	}
	resp, err := http.Get("http://" + n.gateway + "/")
	if err != nil {
		t.Fatalf("after the descriptors came back: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("after the descriptors came back: %d", resp.StatusCode)
	}
	t.Logf("%d client connections took the descriptors; status:\n%s", len(conns), st)
}
