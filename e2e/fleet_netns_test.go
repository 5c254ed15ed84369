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

	"github.com/handoff-dev/handoff/internal/fleet"
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

// kill sends SIGKILL to every process in host i's namespace — its handoff
// and its instances, as when the machine dies — and returns their IDs.
func (h *hosts) kill(i int) []int {
	out, _ := exec.Command("ip", "netns", "pids", h.names[i-1]).Output()
	var killed []int
	for _, pid := range strings.Fields(string(out)) {
		if n, err := strconv.Atoi(pid); err == nil && n > 1 && syscall.Kill(n, syscall.SIGKILL) == nil {
			killed = append(killed, n)
		}
	}
	return killed
}

// dead reports whether every process of pids has exited (a zombie has:
// its sockets are closed).
func dead(pids []int) bool {
	for _, p := range pids {
		if syscall.Kill(p, 0) == nil && !zombie(p) {
			return false
		}
	}
	return true
}

func (h *hosts) remove() {
	for i, ns := range h.names {
		// Whatever still runs in the namespace is this test's (a server
		// that could not stop its instances, say): it would keep the
		// namespace alive after its name is gone.
		h.kill(i + 1)
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
// an agent check on each host's agent port, retries with redispatch, and
// its runtime API at the stats socket given (level admin).
//
// retry-on adds empty-response to HAProxy's default conn-failure: a
// request sent to a host that dies before it answers — in flight on it,
// or sent on a keep-alive connection to it that HAProxy has not yet seen
// closed — is sent again to another host. Without it HAProxy closes the
// client's connection without an answer (as a browser retries such a
// keep-alive race, HAProxy leaves it to the client): clients that never
// retry, as this test's, saw 4 to 20 failed requests per kill -9 of a
// host at ~3,300 requests/s.
func startHAProxy(t *testing.T, listen, stats string, servers []string, agents []string) {
	t.Helper()
	dir := t.TempDir()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, `global
  maxconn 4000
  stats socket %s level admin
defaults
  mode http
  timeout connect 1s
  timeout client 30s
  timeout server 30s
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response
frontend fe
  bind %s
  default_backend web
backend web
  balance roundrobin
`, stats, listen)
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
//     its forwarder back it is live again;
//   - kill -9 of web-3's handoff and instances (while in rotation) as
//     web-2 runs its part of a fleet deploy led by web-1: the deploy halts
//     naming web-3, web-1 and web-2 are rolled back and back in rotation,
//     and web-1's status shows web-3 lost.
//
// web-1 and web-2 also drive HAProxy's runtime API (fleet.haproxy_api):
// after web-2's drain HAProxy holds it in drain, after ready in ready.
// web-3's points at a socket that is not there: its drains in the fleet
// deploy go on regardless, and it says why.
//
// Zero failed requests over the whole run, the kill included: HAProxy
// sends the connections web-3 refuses after its death to another host
// (retries, redispatch), and the requests it had sent to web-3 that got
// no answer too (retry-on empty-response: see startHAProxy). Both are
// counted from HAProxy's own counters and logged.
func TestFleetOnThreeHosts(t *testing.T) {
	needNetns(t)
	dsn := testdb.Postgres(t)
	h := newHosts(t, 3)
	stats := filepath.Join(t.TempDir(), "haproxy.sock")
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
		api := stats
		if i == 3 {
			api += ".gone"
		}
		keys := fmt.Sprintf("%s, wait: 500ms, haproxy_api: %q, haproxy_server: web/%s", defaultFleetKeys, api, name)
		n := newFleetNode(t, fleetSpec{name: name, gateway: gateways[i-1], agent: agents[i-1], exe: h.wrapper(i),
			state: stateVia(t, dsn, fwd.l.Addr().String()), app: app, fleet: keys})
		n.must("deploy", "web", "--release", filepath.Join(root, "v1"), "--this-node") // each host its own first release
		nodes = append(nodes, n)
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	front := freeAddr(t)
	startHAProxy(t, front, stats, gateways, agents)
	haproxyHolds := func(server string) fleet.DrainState {
		st, err := fleet.HAProxyAPI{Addr: stats, Server: server}.State(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	var mu sync.Mutex
	last := map[string]time.Time{} // release → when its last request started
	var failed []loadgen.Record
	load, err := loadgen.Start(context.Background(), loadgen.Config{Addr: front, Fast: 16, Writers: 2, Rate: 200,
		Duration: 3 * time.Minute, Timeout: 10 * time.Second, Record: func(r loadgen.Record) {
			mu.Lock()
			defer mu.Unlock()
			if r.Err != nil {
				failed = append(failed, r)
			}
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
	waitUntil(t, 5*time.Second, "HAProxy's runtime API to hold web-2 in drain", func() bool { return haproxyHolds("web/web-2") == fleet.Drained })
	if st := haproxyHolds("web/web-1"); st != fleet.Ready {
		t.Fatalf("web-1 was not drained, yet HAProxy holds it %s", st)
	}
	time.Sleep(time.Second)
	if l := lastOf("v1@web-2"); l.After(drained) {
		t.Fatalf("web-2 drained at %s still got a request at %s", drained.Format(time.StampMilli), l.Format(time.StampMilli))
	}
	n2.must("fleet", "ready", "web-2")
	back := time.Now()
	waitUntil(t, 5*time.Second, "web-2 back in rotation", func() bool { return lastOf("v1@web-2").After(back) })
	if st := haproxyHolds("web/web-2"); st != fleet.Ready {
		t.Fatalf("after 'fleet ready web-2' HAProxy holds it %s", st)
	}

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
	// web-3's runtime API was not there: its drain went on without it.
	if !strings.Contains(n3.output(), "HAProxy's runtime API did not take this node's state") {
		t.Fatalf("web-3 logs that its runtime API is out of reach:\n%s", n3.output())
	}
	if out := n3.must("status"); !strings.Contains(out, "could not tell HAProxy's runtime API") {
		t.Fatalf("web-3's status says its runtime API is out of reach:\n%s", out)
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

	killStart := killHostMidDeploy(t, h, stats, n1, n2)
	reverted := time.Now()
	waitUntil(t, 5*time.Second, "web-1 and web-2 to serve v2 through HAProxy after the revert", func() bool {
		return lastOf("v2@web-1").After(reverted) && lastOf("v2@web-2").After(reverted)
	})

	res := load.Stop()
	t.Logf("load through HAProxy: %s", res)
	if res.Requests < 1000 {
		t.Fatalf("too little load to prove anything: %d requests", res.Requests)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, f := range failed {
		t.Errorf("failed: %s request %s–%s after web-3's kill began: %v", f.Kind, f.Start.Sub(killStart).Round(time.Microsecond), f.End.Sub(killStart).Round(time.Microsecond), f.Err)
	}
	if res.Failures != 0 {
		t.Fatalf("%d of %d requests failed: %v", res.Failures, res.Requests, res.Errors)
	}
}

// killHostMidDeploy starts a fleet deploy of v1 led by web-1 (n1), and
// as web-2 runs its own part (drained at HAProxy, its instances being
// replaced) kills web-3's handoff and instances with SIGKILL — web-3 in
// rotation and serving. The deploy halts naming web-3; web-1 and web-2
// are rolled back to v2 and back in rotation; web-1's status says web-3
// is lost. It returns when the kill began.
func killHostMidDeploy(t *testing.T, h *hosts, stats string, n1, n2 *node) (killStart time.Time) {
	t.Helper()
	done := make(chan result, 1)
	go func() { done <- n1.cli("fleet", "deploy", "web", "--release", "v1") }()
	waitUntil(t, 60*time.Second, "the fleet deploy to reach web-2's own deploy", func() bool {
		for _, n := range fleetStatus(t, n1).Nodes {
			if n.Name == "web-2" {
				return n.Drain == "drained" // then its own deploy starts
			}
		}
		return false
	})
	before := haproxyStat(t, stats, "web-3")
	killStart = time.Now()
	pids := h.kill(3)
	if len(pids) < 3 {
		t.Fatalf("web-3's handoff and its two instances are killed: %d processes", len(pids))
	}
	for !dead(pids) {
		time.Sleep(time.Millisecond)
	}
	killed := time.Now()
	var r result
	select {
	case r = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the fleet deploy did not end within 2 min of web-3's kill")
	}
	t.Logf("fleet deploy with web-3 killed (%d processes, all gone %s after the SIGKILLs) mid-deploy, ended %s after the kill:\n%s%s",
		len(pids), killed.Sub(killStart).Round(time.Microsecond), time.Since(killed).Round(time.Millisecond), r.stdout, r.stderr)
	after := haproxyStat(t, stats, "web-3")
	delta := func(k string) int {
		a, _ := strconv.Atoi(after[k])
		b, _ := strconv.Atoi(before[k])
		return a - b
	}
	t.Logf("HAProxy on web-3 from just before its kill to the deploy's end: %d requests sent to it and retried on another host for want of an answer (wretr), %d refused connections redispatched (wredis), %d response errors (eresp), %d server aborts (srv_abrt)",
		delta("wretr"), delta("wredis"), delta("eresp"), delta("srv_abrt"))
	if r.code != 1 || !strings.Contains(r.stderr, "halted") || !strings.Contains(r.stderr, "web-3") || !strings.Contains(r.stderr, "web-1 reverted, web-2 reverted") {
		t.Fatalf("want the fleet deploy halted naming web-3, web-1 and web-2 reverted: exit %d", r.code)
	}
	for _, n := range []*node{n1, n2} {
		if got := n.appStatus("web").Current; got != "v2" {
			t.Fatalf("a host done before the kill is rolled back to v2: %s", got)
		}
	}
	waitUntil(t, 10*time.Second, "web-1 to show web-3 lost", func() bool {
		for _, n := range fleetStatus(t, n1).Nodes {
			if n.Name == "web-3" {
				return n.Lost
			}
		}
		return false
	})
	for _, n := range fleetStatus(t, n1).Nodes {
		if n.Name != "web-3" && n.Drain != "ready" {
			t.Fatalf("%s is back in rotation after the halt: %+v", n.Name, n)
		}
	}
	if out := n1.must("status"); !strings.Contains(out, "node web-3 is lost") {
		t.Fatalf("web-1's status names web-3 lost:\n%s", out)
	}
	return killStart
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

// haproxyStat is backend web's line for server in HAProxy's "show stat",
// by column.
func haproxyStat(t *testing.T, stats, server string) map[string]string {
	t.Helper()
	out, err := fleet.HAProxyAPI{Addr: stats}.Command(context.Background(), "show stat")
	if err != nil {
		t.Fatal(err)
	}
	var cols []string
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "# "); ok {
			cols = strings.Split(rest, ",")
			continue
		}
		f := strings.Split(line, ",")
		if len(f) > 2 && (f[0] == "web" || f[0] == "fe") && f[1] == server {
			m := map[string]string{}
			for i, c := range cols {
				if i < len(f) && f[i] != "" && f[i] != "0" {
					m[c] = f[i]
				}
			}
			return m
		}
	}
	t.Fatalf("no server %s in HAProxy's show stat:\n%s", server, out)
	return nil
}
