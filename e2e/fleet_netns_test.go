package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/loadgen"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// hosts is a test's set of hosts: network namespaces joined by veth pairs
// to a bridge in the root namespace, each with its own address.
type hosts struct {
	t      *testing.T
	id     string // in every name this test makes, so parallel runs never collide
	bridge string
	subnet string // the first three octets: 10.213.N
	names  []string
}

// needNetns skips a test that cannot make network namespaces — or fails
// it in CI, where it must run.
func needNetns(t *testing.T) {
	t.Helper()
	why := ""
	switch {
	case os.Geteuid() != 0:
		why = "not root"
	case exec.Command("ip", "netns", "list").Run() != nil:
		why = "no working 'ip netns' (iproute2)"
	}
	if _, err := exec.LookPath("haproxy"); why == "" && err != nil {
		why = "no haproxy (bash .ci/install-haproxy installs it)"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("the fleet's proof on several hosts must run in CI: %s", why)
	}
	t.Skipf("cannot build hosts as network namespaces here (%s); run as root with iproute2 and haproxy to run it", why)
}

func runCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// newHosts makes n hosts at 10.213.N.11, .12, … with the root namespace at
// 10.213.N.1 on the bridge. Everything is removed when the test ends.
func newHosts(t *testing.T, n int) *hosts {
	t.Helper()
	var b [3]byte
	rand.Read(b[:])
	h := &hosts{t: t, id: hex.EncodeToString(b[:]), subnet: fmt.Sprintf("10.213.%d", 16+int(b[0])%224)}
	h.bridge = "hfb" + h.id
	t.Cleanup(h.remove)
	runCmd(t, "ip", "link", "add", h.bridge, "type", "bridge")
	runCmd(t, "ip", "addr", "add", h.subnet+".1/24", "dev", h.bridge)
	runCmd(t, "ip", "link", "set", h.bridge, "up")
	for i := 1; i <= n; i++ {
		ns := fmt.Sprintf("hf-%s-%d", h.id, i)
		veth, peer := fmt.Sprintf("hfv%s%d", h.id, i), fmt.Sprintf("hfp%s%d", h.id, i)
		runCmd(t, "ip", "netns", "add", ns)
		h.names = append(h.names, ns)
		runCmd(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", peer)
		runCmd(t, "ip", "link", "set", peer, "master", h.bridge)
		runCmd(t, "ip", "link", "set", peer, "up")
		runCmd(t, "ip", "link", "set", veth, "netns", ns)
		runCmd(t, "ip", "-n", ns, "addr", "add", h.addr(i)+"/24", "dev", veth)
		runCmd(t, "ip", "-n", ns, "link", "set", veth, "up")
		runCmd(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	return h
}

// addr is host i's address (from 1).
func (h *hosts) addr(i int) string { return fmt.Sprintf("%s.%d", h.subnet, 10+i) }

// root is the root namespace's address on the bridge.
func (h *hosts) root() string { return h.subnet + ".1" }

func (h *hosts) remove() {
	for _, ns := range h.names {
		// Whatever still runs in the namespace is this test's (a server
		// that could not stop its instances, say): it would keep the
		// namespace alive after its name is gone.
		out, _ := exec.Command("ip", "netns", "pids", ns).Output()
		for _, pid := range strings.Fields(string(out)) {
			if n, err := strconv.Atoi(pid); err == nil && n > 1 {
				syscall.Kill(n, syscall.SIGKILL)
			}
		}
		// Deleting the namespace deletes its veth end, and with it the peer.
		exec.Command("ip", "netns", "del", ns).Run()
	}
	exec.Command("ip", "link", "del", h.bridge).Run()
}

// wrapper writes a script that runs the handoff binary in host i.
func (h *hosts) wrapper(i int) string {
	path := filepath.Join(h.t.TempDir(), "handoff-in-ns")
	script := fmt.Sprintf("#!/bin/sh\nexec ip netns exec %s %s \"$@\"\n", h.names[i-1], bin)
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		h.t.Fatal(err)
	}
	return path
}

// forwarder carries TCP from one address to another: each host reaches
// the real Postgres (listening on 127.0.0.1 only) through its own, so that
// closing one cuts that host off from the shared state and no other.
type forwarder struct {
	l     net.Listener
	to    string
	mu    sync.Mutex
	conns map[net.Conn]bool
	cut   bool
}

func newForwarder(t *testing.T, listen, to string) *forwarder {
	t.Helper()
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	f := &forwarder{l: l, to: to, conns: map[net.Conn]bool{}}
	go f.serve()
	t.Cleanup(f.close)
	return f
}

func (f *forwarder) serve() {
	for {
		c, err := f.l.Accept()
		if err != nil {
			return
		}
		up, err := net.DialTimeout("tcp", f.to, 5*time.Second)
		if err != nil {
			c.Close()
			continue
		}
		if !f.track(c, up) {
			continue
		}
		go func() { io.Copy(up, c); up.Close() }()
		go func() { io.Copy(c, up); c.Close() }()
	}
}

func (f *forwarder) track(cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cut {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		f.conns[c] = true
	}
	return true
}

// close cuts every connection and refuses new ones.
func (f *forwarder) close() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut = true
	f.l.Close()
	for c := range f.conns {
		c.Close()
	}
}

// stateVia is the state URL dsn reached through addr.
func stateVia(t *testing.T, dsn, addr string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Host = addr
	return u.String()
}

// startHAProxy runs Debian's haproxy in front of the hosts' gateways, with
// an agent check on each host's agent port, and retries with redispatch.
func startHAProxy(t *testing.T, listen string, servers []string, agents []string) {
	t.Helper()
	dir := t.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `global
  maxconn 4000
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  retries 3
  option redispatch 1
frontend fe
  bind %s
  default_backend web
backend web
  balance roundrobin
`, listen)
	for i, s := range servers {
		host, port, _ := net.SplitHostPort(agents[i])
		fmt.Fprintf(&cfg, "  server web-%d %s check inter 300ms fall 2 rise 2 agent-check agent-addr %s agent-port %s agent-inter 300ms\n", i+1, s, host, port)
	}
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("haproxy", "-c", "-f", path).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	cmd := exec.Command("haproxy", "-db", "-f", path)
	var out syncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("haproxy output:\n%s", out.String())
		}
	})
	waitUntil(t, 15*time.Second, "haproxy to route to the hosts", func() bool {
		resp, err := http.Get("http://" + listen + "/fast")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// TestFleetOnThreeHosts is the fleet's proof on several hosts: three
// network namespaces, each with its own handoff serve (the real binary)
// and sample app, HAProxy in front with agent checks, retries and
// redispatch, the shared state on the real Postgres through one forwarder
// per host. Under load through HAProxy by clients that never retry:
//   - web-2 drained through its agent port: HAProxy stops sending to it,
//     the drain completes, no request fails; put back, it serves again;
//   - a fleet rolling deploy of v2: host by host, each drained at HAProxy,
//     deployed (its own supervised instances) and put back; afterwards
//     every host serves v2 and none v1;
//   - read-only switched on at web-1 is acknowledged by every node within
//     1 s (ack_timeout: 1s) and refuses writes on all three;
//   - web-3 cut off from Postgres keeps serving what it has, shows as
//     lost on web-1, says on itself that it cannot reach the state; with
//     its forwarder back it is live again.
//
// Zero failed requests over the whole run.
func TestFleetOnThreeHosts(t *testing.T) {
	needNetns(t)
	dsn := testdb.Postgres(t)
	h := newHosts(t, 3)
	var nodes []*node
	var fwds []*forwarder
	var gateways, agents []string
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("web-%d", i)
		// Each host's releases answer with X-Release v1@web-1 and so on, so
		// that the load can tell which host and release served a request.
		root := filepath.Join(t.TempDir(), "releases")
		for _, v := range []string{"v1", "v2"} {
			makeTaggedRelease(t, root, v, v+"@"+name)
		}
		fwd := newForwarder(t, fmt.Sprintf("%s:%d", h.root(), 15430+i), "127.0.0.1:5432")
		fwds = append(fwds, fwd)
		gateways = append(gateways, h.addr(i)+":8080")
		agents = append(agents, h.addr(i)+":9901")
		app := fmt.Sprintf("{ command: [bin/app], releases: %s, instances: 2, health: { path: /healthz, interval: 200ms }, drain_timeout: 2s, start_timeout: 20s }", root)
		n := newFleetNode(t, fleetSpec{name: name, gateway: gateways[i-1], agent: agents[i-1], exe: h.wrapper(i),
			state: stateVia(t, dsn, fwd.l.Addr().String()), app: app, fleet: defaultFleetKeys + ", wait: 500ms"})
		n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
		nodes = append(nodes, n)
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	front := freeAddr(t)
	startHAProxy(t, front, gateways, agents)

	var mu sync.Mutex
	last := map[string]time.Time{} // release → when its last request started
	load, err := loadgen.Start(context.Background(), loadgen.Config{Addr: front, Fast: 16, Writers: 2, Rate: 200,
		Duration: 2 * time.Minute, Timeout: 10 * time.Second, Record: func(r loadgen.Record) {
			mu.Lock()
			defer mu.Unlock()
			if r.Start.After(last[r.Release]) {
				last[r.Release] = r.Start
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	lastOf := func(rel string) time.Time {
		mu.Lock()
		defer mu.Unlock()
		return last[rel]
	}
	time.Sleep(time.Second)
	for i := 1; i <= 3; i++ {
		if lastOf(fmt.Sprintf("v1@web-%d", i)).IsZero() {
			t.Fatalf("web-%d served nothing through HAProxy", i)
		}
	}

	// Drain web-2 at HAProxy through its agent port.
	start := time.Now()
	n1.must("fleet", "drain", "web-2", "--wait")
	drained := time.Now()
	t.Logf("web-2 drained at HAProxy in %s", drained.Sub(start).Round(time.Millisecond))
	time.Sleep(time.Second)
	if l := lastOf("v1@web-2"); l.After(drained) {
		t.Fatalf("web-2 drained at %s still got a request at %s", drained.Format(time.StampMilli), l.Format(time.StampMilli))
	}
	n2.must("fleet", "ready", "web-2")
	back := time.Now()
	waitUntil(t, 5*time.Second, "web-2 back in rotation", func() bool { return lastOf("v1@web-2").After(back) })

	// A fleet rolling deploy of v2, host by host, under the load.
	start = time.Now()
	out := n1.must("fleet", "deploy", "web", "--release", "v2")
	deployed := time.Now()
	t.Logf("fleet deploy of v2 over 3 hosts behind HAProxy took %s:\n%s", deployed.Sub(start).Round(time.Millisecond), out)
	waitUntil(t, 5*time.Second, "every host to serve v2 through HAProxy", func() bool {
		return lastOf("v2@web-1").After(deployed) && lastOf("v2@web-2").After(deployed) && lastOf("v2@web-3").After(deployed)
	})
	for i := 1; i <= 3; i++ {
		if l := lastOf(fmt.Sprintf("v1@web-%d", i)); l.After(deployed) {
			t.Fatalf("web-%d served v1 at %s, after the fleet deploy ended", i, l.Format(time.StampMilli))
		}
	}

	// A fleet-wide read-only, acknowledged by every node within 1 s.
	start = time.Now()
	n1.must("readonly", "on")
	t.Logf("fleet read-only acknowledged by 3 nodes within ack_timeout 1s; the CLI took %s; %s", time.Since(start).Round(time.Millisecond), lastAck(n1))
	for i, g := range gateways {
		if code := getStatus(t, "POST", "http://"+g+"/items"); code != http.StatusServiceUnavailable {
			t.Fatalf("web-%d: a write got %d, want 503 (read-only)", i+1, code)
		}
	}
	n1.must("readonly", "off")

	// Cut web-3 off from the shared state.
	fwds[2].close()
	cut := time.Now()
	waitUntil(t, 10*time.Second, "web-1 to show web-3 lost", func() bool {
		for _, n := range fleetStatus(t, n1).Nodes {
			if n.Name == "web-3" {
				return n.Lost
			}
		}
		return false
	})
	t.Logf("web-3 shown lost %s after its cut", time.Since(cut).Round(time.Millisecond))
	time.Sleep(time.Second)
	if l := lastOf("v2@web-3"); !l.After(cut.Add(time.Second)) {
		t.Fatalf("web-3 cut off from the state must keep serving: its last request started at %s, cut at %s", l.Format(time.StampMilli), cut.Format(time.StampMilli))
	}
	if out := n3.must("status"); !strings.Contains(out, "cannot reach the shared state") {
		t.Fatalf("web-3 says it cannot reach the state:\n%s", out)
	}
	if r := n2.cli("readonly", "on"); r.code != 1 || !strings.Contains(r.stderr, "node web-3 is lost") {
		t.Fatalf("a fleet-wide change with web-3 lost fails naming it: exit %d %s", r.code, r.stderr)
	}

	// Its forwarder back: web-3 is live again, and stops cleanly.
	newForwarder(t, fwds[2].l.Addr().String(), "127.0.0.1:5432")
	waitUntil(t, 15*time.Second, "web-3 to be live again", func() bool {
		for _, n := range fleetStatus(t, n1).Nodes {
			if n.Name == "web-3" {
				return !n.Lost
			}
		}
		return false
	})

	res := load.Stop()
	t.Logf("load through HAProxy: %s", res)
	if res.Failures != 0 {
		t.Fatalf("%d of %d requests failed: %v", res.Failures, res.Requests, res.Errors)
	}
	if res.Requests < 1000 {
		t.Fatalf("too little load to prove anything: %d requests", res.Requests)
	}
}

// makeTaggedRelease writes a release of the sample app that answers with
// X-Release tag.
func makeTaggedRelease(t *testing.T, root, label, tag string) {
	t.Helper()
	dir := filepath.Join(root, label, "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\nexec %s sampleapp --release %s \"$@\"\n", bin, tag)
	if err := os.WriteFile(filepath.Join(dir, "app"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}
