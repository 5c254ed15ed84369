package e2e

import (
	"bufio"
	"fmt"
	"io"
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

// TestConnectionCapOverAllListeners: gateway.max_connections is one cap
// for the whole process, over every gateway listen address and every tcp
// app, since it is a share of one descriptor limit. With a cap of 3 and
// one connection held on each of two gateway addresses and the tcp app,
// a fourth connection anywhere is turned away (503 on the gateway, a close
// on the tcp app); once one closes, its place is free for another.
func TestConnectionCapOverAllListeners(t *testing.T) {
	v1 := startBackend(t, "v1")
	line := startLineTarget(t, "L")
	second, tcpListen := freeAddr(t), freeAddr(t)
	n := startNode(t, bin, func(n *node) string {
		return fmt.Sprintf(`listen: [%q, %q]
socket: %s
state: %s
logs: %s
access_log: false
gateway: { max_connections: 3 }
apps:
  web:
    targets: [%q]
    health: { path: /healthz, interval: 1h }
  lines:
    kind: tcp
    listen: [%q]
    targets: [%q]
    health: { interval: 1h }
`, n.gateway, second, n.socket, filepath.Join(n.dir, "handoff.db"), filepath.Join(n.dir, "logs"), v1.addr, tcpListen, line.addr)
	})

	get := func(c net.Conn) int {
		t.Helper()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := fmt.Fprintf(c, "GET /fast HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			return 0
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	dial := func(addr string) net.Conn {
		t.Helper()
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	greeted := func(c net.Conn) bool {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		s, err := bufio.NewReader(c).ReadString('\n')
		return err == nil && s == "hello L\n"
	}
	a, b := dial(n.gateway), dial(second)
	if sa, sb := get(a), get(b); sa != 200 || sb != 200 {
		t.Fatalf("under the cap: %d and %d, want 200", sa, sb)
	}
	if c := dial(tcpListen); !greeted(c) {
		t.Fatal("the tcp app's connection, under the cap, was not served")
	}
	for _, addr := range []string{n.gateway, second} {
		if s := get(dial(addr)); s != http.StatusServiceUnavailable {
			t.Errorf("a fourth connection to %s: %d, want 503", addr, s)
		}
	}
	if greeted(dial(tcpListen)) {
		t.Error("a fourth connection to the tcp app was served")
	}
	// A connection that became a WebSocket keeps its place until it closes.
	a.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(a, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	if resp, err := http.ReadResponse(bufio.NewReader(a), nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	if s := get(dial(n.gateway)); s != http.StatusServiceUnavailable {
		t.Errorf("a fourth connection beside a WebSocket: %d, want 503", s)
	}
	a.Close()
	waitUntil(t, 5*time.Second, "the closed connection's place to be free", func() bool {
		return get(dial(second)) == 200
	})
}
