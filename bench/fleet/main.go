// Command fleet measures a fleet of three handoff nodes sharing one
// Postgres state (issue 13, item 7): how long a fleet rolling deploy takes
// against its floor, and how long a fleet-wide mode change takes to be
// acknowledged by every node.
//
//	go run ./bench/fleet [-postgres URL] [-runs 3] [-changes 20]
//
// The three nodes are handoff serve processes on loopback, each with its
// own gateway, releases and supervised sample app (two instances), sharing
// a fresh database made on the Postgres server at -postgres (default
// $HANDOFF_TEST_POSTGRES) and dropped at the end.
//
// The floor of a fleet deploy, from figures of the same run: each host in
// turn is drained (no request reaches the gateways here, so the drain is
// the least a drain may take: lb_check.interval × threshold, the time the
// load balancer needs to see it), deployed — one host's own `handoff
// deploy --this-node`, bricks and health gate, timed alone on the same
// nodes — and put back; fleet.wait is 0. floor = hosts × (drain + deploy).
// What a fleet deploy adds beyond that: the release check on every node,
// the commands through the shared state, and the heartbeats that carry
// each host's drained state to the leader. A drain alone (`handoff fleet
// drain web-2 --wait` from web-1) is printed beside the least one.
//
// A mode change: `readonly on` then `off` through web-1's control socket,
// -changes of each; the time is the API call's, from the request to the
// answer given once every node has acknowledged (and the server's own
// slowest acknowledgement, from its log).
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/handoff-dev/handoff/internal/control"
)

// The fleet's keys. The load balancer's cadence is HAProxy's with inter
// 500ms fall 2; fleet.wait 0 leaves it out of the floor.
const (
	lbInterval  = 500 * time.Millisecond
	lbThreshold = 2
	hosts       = 3
)

func main() {
	pg := flag.String("postgres", os.Getenv("HANDOFF_TEST_POSTGRES"), "a Postgres server's URL; the bench makes its own database there")
	runs := flag.Int("runs", 3, "fleet deploys (and deploys of one host alone) to average")
	changes := flag.Int("changes", 20, "mode changes of each way (readonly on, off)")
	handoff := flag.String("handoff", "", "handoff binary (default: build ./cmd/handoff)")
	flag.Parse()
	if *pg == "" {
		*pg = "postgres://postgres@127.0.0.1:5432/postgres"
	}
	if err := run(*pg, *handoff, *runs, *changes); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(pg, bin string, runs, changes int) error {
	dir, err := os.MkdirTemp("", "handoff-bench-fleet-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		bin = filepath.Join(dir, "handoff")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/handoff").CombinedOutput(); err != nil {
			return fmt.Errorf("build handoff: %v\n%s", err, out)
		}
	}
	state, drop, err := freshDatabase(pg)
	if err != nil {
		return err
	}
	defer drop()

	var nodes []*node
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	for i := 1; i <= hosts; i++ {
		n, err := startNode(bin, filepath.Join(dir, fmt.Sprintf("web-%d", i)), fmt.Sprintf("web-%d", i), state)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		if _, err := n.cli("deploy", "web", "--release", n.release("v0"), "--this-node"); err != nil {
			return err
		}
	}
	lead := nodes[0]

	// One host's own deploy, alone: v0 → a → v0 on web-1, timed each way.
	var alone []time.Duration
	for i := range runs {
		for _, rel := range []string{fmt.Sprintf("alone%d", i), "v0"} {
			d, err := lead.cli("deploy", "web", "--release", lead.release(rel), "--this-node")
			if err != nil {
				return err
			}
			alone = append(alone, d)
		}
	}
	deploy := mean(alone)

	// A drain alone, at web-2 from web-1, then back into rotation.
	var drains []time.Duration
	for range runs {
		d, err := lead.cli("fleet", "drain", "web-2", "--wait")
		if err != nil {
			return err
		}
		drains = append(drains, d)
		if _, err := lead.cli("fleet", "ready", "web-2"); err != nil {
			return err
		}
	}

	// Fleet deploys, alternating between two releases present everywhere.
	var fleet []time.Duration
	for i := range runs {
		rel := []string{"v1", "v0"}[i%2]
		d, err := lead.cli("fleet", "deploy", "web", "--release", rel)
		if err != nil {
			return err
		}
		fleet = append(fleet, d)
	}
	drain := lbInterval * lbThreshold
	floor := hosts * (drain + deploy)
	fmt.Printf("%d nodes on one Postgres state, app web: 2 supervised instances per host, health interval 100ms\n", hosts)
	fmt.Printf("lb_check %s × %d, fleet.wait 0, heartbeat 1s (commands by LISTEN/NOTIFY)\n\n", lbInterval, lbThreshold)
	fmt.Printf("one host's own deploy, alone       %8s  (mean of %d)\n", deploy.Round(time.Millisecond), len(alone))
	fmt.Printf("drain, least (interval × threshold) %8s\n", drain)
	fmt.Printf("drain alone (fleet drain --wait)    %8s  (mean of %d)\n", mean(drains).Round(time.Millisecond), len(drains))
	fmt.Printf("floor = %d × (drain + deploy)        %8s\n", hosts, floor.Round(time.Millisecond))
	fmt.Printf("fleet rolling deploy over %d hosts   %8s  (mean of %d: %s)  %.2f× floor\n\n",
		hosts, mean(fleet).Round(time.Millisecond), len(fleet), list(fleet), float64(mean(fleet))/float64(floor))

	// Fleet-wide mode changes.
	var on, off, slowest []time.Duration
	ctl := control.Dial(lead.socket)
	for range changes {
		for _, mode := range []bool{true, false} {
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := ctl.SetMode(ctx, "readonly", control.ModeRequest{On: mode, Actor: "bench"})
			cancel()
			if err != nil {
				return fmt.Errorf("readonly %v: %w", mode, err)
			}
			d := time.Since(start)
			if mode {
				on = append(on, d)
			} else {
				off = append(off, d)
			}
		}
	}
	slowest, err = lead.acks()
	if err != nil {
		return err
	}
	all := append(slices.Clone(on), off...)
	fmt.Printf("fleet-wide mode change, acknowledged by %d nodes (%d changes)\n", hosts, len(all))
	fmt.Printf("  %-34s p50 %8s  p99 %8s  max %8s\n", "readonly on, API call", pct(on, 50), pct(on, 99), pct(on, 100))
	fmt.Printf("  %-34s p50 %8s  p99 %8s  max %8s\n", "readonly off, API call", pct(off, 50), pct(off, 99), pct(off, 100))
	fmt.Printf("  %-34s p50 %8s  p99 %8s  max %8s\n", "both, API call", pct(all, 50), pct(all, 99), pct(all, 100))
	fmt.Printf("  %-34s p50 %8s  p99 %8s  max %8s  (ms resolution, %d changes)\n", "both, slowest node's ack (server)", pct(slowest, 50), pct(slowest, 99), pct(slowest, 100), len(slowest))
	return nil
}

// freshDatabase makes an empty database on the server at pg and returns
// its URL and how to drop it.
func freshDatabase(pg string) (string, func(), error) {
	u, err := url.Parse(pg)
	if err != nil {
		return "", nil, fmt.Errorf("-postgres: %w", err)
	}
	var b [4]byte
	rand.Read(b[:])
	name := "handoff_bench_fleet_" + hex.EncodeToString(b[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, pg)
	if err != nil {
		return "", nil, fmt.Errorf("connect to %s: %w", u.Redacted(), err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, err
	}
	drop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, pg); err == nil {
			c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

// node is one handoff serve of the fleet.
type node struct {
	bin, dir, socket string
	cmd              *exec.Cmd
}

func startNode(bin, dir, name, state string) (*node, error) {
	releases := filepath.Join(dir, "releases")
	for _, rel := range []string{"v0", "v1"} {
		if err := os.MkdirAll(filepath.Join(releases, rel), 0o755); err != nil {
			return nil, err
		}
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	n := &node{bin: bin, dir: dir, socket: filepath.Join(dir, "handoff.sock")}
	cfg := fmt.Sprintf(`listen: [%q]
socket: %s
state: %s
node: %s
logs: %s
access_log: false
fleet: { drain_path: /handoff/ready, lb_check: { interval: %s, threshold: %d }, wait: 0s }
apps:
  web:
    command: [%s, sampleapp]
    releases: %s
    instances: 2
    health: { path: /healthz, interval: 100ms }
    drain_timeout: 1s
`, addr, n.socket, state, name, filepath.Join(dir, "logs"), lbInterval, lbThreshold, bin, releases)
	if err := os.WriteFile(filepath.Join(dir, "handoff.yaml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	out, err := os.Create(filepath.Join(dir, "serve.log"))
	if err != nil {
		return nil, err
	}
	defer out.Close()
	n.cmd = exec.Command(bin, "serve", "--config", filepath.Join(dir, "handoff.yaml"))
	n.cmd.Stdout, n.cmd.Stderr = out, out
	if err := n.cmd.Start(); err != nil {
		return nil, err
	}
	for range 1500 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := control.Dial(n.socket).Status(ctx, "")
		cancel()
		if err == nil {
			return n, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.stop()
	b, _ := os.ReadFile(filepath.Join(dir, "serve.log"))
	return nil, fmt.Errorf("handoff serve %s did not start:\n%s", name, b)
}

// release is the path of one of the node's releases, made if need be.
func (n *node) release(label string) string {
	p := filepath.Join(n.dir, "releases", label)
	os.MkdirAll(p, 0o755)
	return p
}

// cli runs a handoff command against the node and times it.
func (n *node) cli(args ...string) (time.Duration, error) {
	start := time.Now()
	out, err := exec.Command(n.bin, append(args, "--socket", n.socket)...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("handoff %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return time.Since(start), nil
}

// acks are the slowest acknowledgements of the node's fleet-wide mode
// changes, from its log.
func (n *node) acks() ([]time.Duration, error) {
	f, err := os.Open(filepath.Join(n.dir, "serve.log"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []time.Duration
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var line struct {
			Msg     string `json:"msg"`
			Slowest int64  `json:"slowest_ms"`
		}
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "fleet: modes acknowledged by every node" {
			out = append(out, time.Duration(line.Slowest)*time.Millisecond)
		}
	}
	return out, sc.Err()
}

func (n *node) stop() {
	n.cmd.Process.Signal(syscall.SIGTERM)
	n.cmd.Wait()
}

func mean(ds []time.Duration) time.Duration {
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return sum / time.Duration(max(len(ds), 1))
}

// pct is the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (p*len(s)+99)/100 - 1
	return s[max(0, min(i, len(s)-1))].Round(100 * time.Microsecond)
}

func list(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, d.Round(time.Millisecond).String())
	}
	return strings.Join(parts, ", ")
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
