package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// fleetSpec is one node of a test fleet: its name, where its gateway and
// agent port listen, the app's targets and the fleet: keys.
type fleetSpec struct {
	name, gateway, agent, state string
	targets                     []string
	fleet                       string // the fleet: mapping's keys, YAML flow style without braces
	// exe serves instead of the handoff binary (a wrapper that enters a
	// network namespace).
	exe string
	// app, when set, is app web's mapping instead of the targets one.
	app string
	// extra is more of the config, after the apps (databases:).
	extra string
}

// defaultFleetKeys are quick enough for a test: a node is lost after 3s
// of silence (ten heartbeats: a loaded CI host does not lose one by
// accident), and every node must acknowledge a command within 1s.
const defaultFleetKeys = "heartbeat: 300ms, lost_after: 3s, ack_timeout: 1s, drain_path: /handoff/ready, lb_check: { interval: 300ms, threshold: 2 }, drain_timeout: 20s"

// newFleetNode starts handoff serve as one node of a fleet.
func newFleetNode(t *testing.T, sp fleetSpec) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{t: t, exe: bin, dir: dir, config: filepath.Join(dir, "handoff.yaml"), socket: filepath.Join(dir, "handoff.sock"), gateway: sp.gateway}
	if sp.exe != "" {
		n.exe = sp.exe
	}
	if sp.fleet == "" {
		sp.fleet = defaultFleetKeys
	}
	if sp.agent != "" {
		sp.fleet += fmt.Sprintf(", agent_check: %q", sp.agent)
	}
	targets, _ := json.Marshal(sp.targets)
	app := sp.app
	if app == "" {
		app = fmt.Sprintf("{ targets: %s, health: { path: /healthz, interval: 200ms } }", targets)
	}
	cfg := fmt.Sprintf(`listen: [%q]
socket: %s
state: %s
node: %s
logs: %s
access_log: false
fleet: { %s }
apps:
  web: %s
%s`, sp.gateway, n.socket, sp.state, sp.name, filepath.Join(dir, "logs"), sp.fleet, app, sp.extra)
	if err := os.WriteFile(n.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	n.start()
	t.Cleanup(n.stop)
	return n
}

// fleetStatus is `handoff fleet status --json` on n.
func fleetStatus(t *testing.T, n *node) control.FleetStatus {
	t.Helper()
	var st control.FleetStatus
	if err := json.Unmarshal([]byte(n.must("fleet", "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// lastAck is the server's last line on a fleet-wide mode change's
// acknowledgements (nodes, slowest_ms), for the test's log.
func lastAck(n *node) string {
	lines := strings.Split(n.output(), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "modes acknowledged by every node") {
			return lines[i]
		}
	}
	return "(none)"
}

// agentSays reads one answer of an agent-check port, as HAProxy does.
func agentSays(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "unreachable: " + err.Error()
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	b, _ := io.ReadAll(c)
	return strings.TrimSpace(string(b))
}

func getStatus(t *testing.T, method, url string) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader("{}"))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestFleetModesDrainAndLostNode: three nodes on one Postgres state. A
// read-only switched on one node is acknowledged by all three within 1s
// (ack_timeout: 1s) and refuses writes on every gateway; a drain of web-2
// turns its agent port to "drain" and its drain path to 503, and is
// reported drained once its traffic is gone; web-3 killed -9 is shown
// lost and makes the next fleet-wide change fail naming it, changing
// nothing; forgotten, it no longer blocks.
func TestFleetModesDrainAndLostNode(t *testing.T) {
	dsn := testdb.Postgres(t)
	var nodes []*node
	var agents []string
	for i := 1; i <= 3; i++ {
		b := startBackend(t, fmt.Sprintf("v1-%d", i))
		agents = append(agents, freeAddr(t))
		nodes = append(nodes, newFleetNode(t, fleetSpec{name: fmt.Sprintf("web-%d", i), gateway: freeAddr(t), agent: agents[i-1], state: dsn, targets: []string{b.addr}}))
	}
	n1, n2, n3 := nodes[0], nodes[1], nodes[2]
	st := fleetStatus(t, n1)
	if len(st.Nodes) != 3 || st.Node != "web-1" {
		t.Fatalf("three nodes, this one web-1: %+v", st)
	}
	for _, n := range st.Nodes {
		if n.Lost || n.Drain != "ready" || len(n.Releases["web"]) != 1 {
			t.Fatalf("every node live, ready, serving one release: %+v", n)
		}
	}
	for _, a := range agents {
		if got := agentSays(t, a); got != "ready up" {
			t.Fatalf("agent %s: %q", a, got)
		}
	}

	start := time.Now()
	n1.must("readonly", "on")
	took := time.Since(start)
	t.Logf("fleet read-only acknowledged by 3 nodes; the CLI took %s; %s", took, lastAck(n1))
	for _, n := range nodes {
		if code := getStatus(t, "POST", "http://"+n.gateway+"/items"); code != http.StatusServiceUnavailable {
			t.Fatalf("node %s: a write got %d, want 503 (read-only everywhere)", n.gateway, code)
		}
		if code := getStatus(t, "GET", "http://"+n.gateway+"/fast"); code != http.StatusOK {
			t.Fatalf("node %s: a read got %d", n.gateway, code)
		}
	}

	n1.must("fleet", "drain", "web-2", "--wait")
	if got := agentSays(t, agents[1]); got != "drain" {
		t.Fatalf("web-2's agent says %q, want drain", got)
	}
	if code := getStatus(t, "GET", "http://"+n2.gateway+"/handoff/ready"); code != http.StatusServiceUnavailable {
		t.Fatalf("web-2's drain path: %d, want 503", code)
	}
	if code := getStatus(t, "GET", "http://"+n1.gateway+"/handoff/ready"); code != http.StatusOK {
		t.Fatalf("web-1's drain path: %d, want 200", code)
	}
	for _, n := range fleetStatus(t, n3).Nodes {
		if want := map[bool]string{true: "drained", false: "ready"}[n.Name == "web-2"]; string(n.Drain) != want {
			t.Fatalf("%s: drain %s, want %s", n.Name, n.Drain, want)
		}
	}
	n3.must("fleet", "ready", "web-2")
	if got := agentSays(t, agents[1]); got != "ready up" {
		t.Fatalf("web-2 back in rotation: agent says %q", got)
	}

	n3.kill9()
	waitUntil(t, 10*time.Second, "web-3 to be lost", func() bool {
		for _, n := range fleetStatus(t, n1).Nodes {
			if n.Name == "web-3" {
				return n.Lost
			}
		}
		return false
	})
	r := n1.cli("readonly", "off")
	if r.code != 1 || !strings.Contains(r.stderr, "node web-3 is lost") || !strings.Contains(r.stderr, "nothing was changed") {
		t.Fatalf("readonly off with web-3 lost: exit %d, %s", r.code, r.stderr)
	}
	for _, n := range []*node{n1, n2} {
		if code := getStatus(t, "POST", "http://"+n.gateway+"/items"); code != http.StatusServiceUnavailable {
			t.Fatalf("the refused change changed nothing: a write on %s got %d", n.gateway, code)
		}
	}
	out := n1.must("status")
	if !strings.Contains(out, "node web-3 is lost") || !strings.Contains(out, "LOST") {
		t.Fatalf("status shows web-3 lost:\n%s", out)
	}
	n1.must("fleet", "forget", "web-3")
	n2.must("readonly", "off")
	for _, n := range []*node{n1, n2} {
		if code := getStatus(t, "POST", "http://"+n.gateway+"/items"); code == http.StatusServiceUnavailable {
			t.Fatalf("read-only is off on %s", n.gateway)
		}
	}
}

// TestFleetDeployHostByHost: a release missing on one host is refused
// naming it, nothing changed; a release present everywhere goes out host
// by host with a plain `handoff deploy --release` (each drained, deployed,
// back in rotation); a release that
// crashes on the last host halts the fleet deploy, which rolls the hosts
// already done back and leaves every host serving the old release, in
// rotation.
func TestFleetDeployHostByHost(t *testing.T) {
	dsn := testdb.Postgres(t)
	var nodes []*node
	var roots []string
	for i := 1; i <= 3; i++ {
		root := filepath.Join(t.TempDir(), "releases")
		makeRelease(t, root, "v1", "")
		makeRelease(t, root, "v2", "")
		if i < 3 {
			makeRelease(t, root, "v3", "")
			makeRelease(t, root, "v4", "")
		} else {
			makeRelease(t, root, "v4", "crash")
		}
		app := fmt.Sprintf("{ command: [bin/app], releases: %s, instances: 2, health: { path: /healthz, interval: 200ms }, drain_timeout: 1s, start_timeout: 10s }", root)
		n := newFleetNode(t, fleetSpec{name: fmt.Sprintf("web-%d", i), gateway: freeAddr(t), state: dsn, app: app,
			fleet: defaultFleetKeys + ", wait: 200ms"})
		// Each host alone: the fleet grows as the nodes start.
		n.must("deploy", "web", "--release", filepath.Join(root, "v1"), "--this-node")
		nodes = append(nodes, n)
		roots = append(roots, root)
	}
	current := func() string {
		var out []string
		for _, n := range nodes {
			out = append(out, n.appStatus("web").Current)
		}
		return strings.Join(out, ",")
	}

	r := nodes[0].cli("fleet", "deploy", "web", "--release", "v3")
	if r.code != 1 || !strings.Contains(r.stderr, "release v3 is not on every host, nothing was changed") || !strings.Contains(r.stderr, "node web-3 failed: release v3 is not in") {
		t.Fatalf("v3 is missing on web-3: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := current(); got != "v1,v1,v1" {
		t.Fatalf("a refused fleet deploy changes nothing: %s", got)
	}

	// Plain `handoff deploy --release` on a node of a fleet is the fleet's
	// deploy; --label names one host's release, and is refused there.
	r = nodes[1].cli("deploy", "web", "--release", filepath.Join(roots[1], "v2"), "--label", "x")
	if r.code != 2 || !strings.Contains(r.stderr, "--label with a fleet deploy") {
		t.Fatalf("deploy --label on a fleet node: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	start := time.Now()
	out := nodes[1].must("deploy", "web", "--release", filepath.Join(roots[1], "v2"))
	t.Logf("fleet deploy of v2 over 3 hosts took %s:\n%s", time.Since(start).Round(time.Millisecond), out)
	if got := current(); got != "v2,v2,v2" {
		t.Fatalf("after the fleet deploy every host runs v2: %s", got)
	}
	for _, n := range fleetStatus(t, nodes[0]).Nodes {
		if n.Drain != "ready" || strings.Join(n.Releases["web"], ",") != "v2" {
			t.Fatalf("%s: back in rotation on v2 alone: %+v", n.Name, n)
		}
		if n.Instances["web"]["v2"] == 0 {
			t.Fatalf("%s: the fleet's view shows no instance of v2 on it: %+v", n.Name, n.Instances)
		}
	}

	r = nodes[2].cli("fleet", "deploy", "web", "--release", "v4")
	t.Logf("fleet deploy of v4 (crashes on web-3):\n%s%s", r.stdout, r.stderr)
	if r.code != 1 || !strings.Contains(r.stderr, "host web-3") || !strings.Contains(r.stderr, "web-1 reverted, web-2 reverted, web-3 failed") {
		t.Fatalf("want the fleet deploy halted at web-3 and web-1, web-2 reverted: exit %d", r.code)
	}
	if got := current(); got != "v2,v2,v2" {
		t.Fatalf("after the halted fleet deploy every host runs v2 again: %s", got)
	}
	for _, n := range fleetStatus(t, nodes[0]).Nodes {
		if n.Drain != "ready" {
			t.Fatalf("%s is back in rotation after the halt: %+v", n.Name, n)
		}
	}

	// kill -9 of web-3's handoff as its own part of a fleet deploy of v1
	// begins:
	// the fleet deploy halts naming web-3 lost, and reverts the others.
	done := make(chan result, 1)
	go func() { done <- nodes[0].cli("fleet", "deploy", "web", "--release", "v1") }()
	waitUntil(t, 60*time.Second, "the fleet deploy to reach web-3's own deploy", func() bool {
		for _, n := range fleetStatus(t, nodes[0]).Nodes {
			if n.Name == "web-3" {
				return n.Drain == "drained" // then its own deploy starts
			}
		}
		return false
	})
	nodes[2].kill9()
	killed := time.Now()
	r = <-done
	t.Logf("fleet deploy with web-3 killed, ended %s after the kill:\n%s%s", time.Since(killed).Round(time.Millisecond), r.stdout, r.stderr)
	if r.code != 1 || !strings.Contains(r.stderr, "web-3") || !strings.Contains(r.stderr, "web-1 reverted, web-2 reverted") {
		t.Fatalf("want the fleet deploy halted naming web-3, web-1 and web-2 reverted: exit %d", r.code)
	}
	for _, n := range nodes[:2] {
		if got := n.appStatus("web").Current; got != "v2" {
			t.Fatalf("a host done before the kill is reverted to v2: %s", got)
		}
	}
	nodes[2].start() // adopts its instances; the test's cleanup stops them
}

// TestFleetDeployHostRestarted: the handoff of a host is restarted (a
// `systemctl restart`) in the middle of that host's own part of a fleet
// deploy. Its next process resumes the host's deploy; the leader, seeing
// the host restarted without an answer, halts the fleet deploy and reverts
// it, and the restarted host is rolled back once its resumed deploy is
// through: every host ends on the old release, none on the new, and no
// fleet deploy is left unfinished.
func TestFleetDeployHostRestarted(t *testing.T) {
	dsn := testdb.Postgres(t)
	var nodes []*node
	for i := 1; i <= 2; i++ {
		root := filepath.Join(t.TempDir(), "releases")
		makeRelease(t, root, "v1", "")
		makeRelease(t, root, "v2", "slow") // 2 s to start: the restart comes while it does
		app := fmt.Sprintf("{ command: [bin/app], releases: %s, instances: 2, health: { path: /healthz, interval: 200ms }, drain_timeout: 1s, start_timeout: 10s }", root)
		n := newFleetNode(t, fleetSpec{name: fmt.Sprintf("web-%d", i), gateway: freeAddr(t), state: dsn, app: app, fleet: defaultFleetKeys})
		n.must("deploy", "web", "--release", filepath.Join(root, "v1"), "--this-node")
		nodes = append(nodes, n)
	}
	done := make(chan result, 1)
	go func() { done <- nodes[0].cli("fleet", "deploy", "web", "--release", "v2") }()
	waitUntil(t, 60*time.Second, "web-2's own deploy of v2 to start", func() bool {
		d := nodes[1].appStatus("web").Deploy
		return d != nil && d.State == deploy.Running && d.To.Label == "v2"
	})
	nodes[1].stop()
	nodes[1].start()
	r := <-done
	t.Logf("fleet deploy with web-2 restarted:\n%s%s", r.stdout, r.stderr)
	if r.code != 1 || !strings.Contains(r.stderr, "web-2 restarted") || !strings.Contains(r.stderr, "web-1 reverted, web-2 reverted") {
		t.Fatalf("want the fleet deploy halted naming web-2 restarted, both hosts reverted: exit %d", r.code)
	}
	// What each host runs once nothing runs on it any more: web-2's
	// resumed deploy may end after the fleet deploy returns.
	waitUntil(t, 60*time.Second, "web-2's resumed deploy to end", func() bool {
		d := nodes[1].appStatus("web").Deploy
		return d == nil || d.State != deploy.Running
	})
	for _, n := range nodes {
		if got := n.appStatus("web").Current; got != "v1" {
			t.Fatalf("every host runs v1 after the reverted fleet deploy, %s runs %s", n.gateway, got)
		}
	}
	if out := nodes[0].must("status"); strings.Contains(out, "fleet deploy of web") {
		t.Fatalf("no fleet deploy is left unfinished:\n%s", out)
	}
}
