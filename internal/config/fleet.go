package config

import (
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Fleet says how the nodes sharing a Postgres state keep in touch, roll a
// deploy host by host and tell the load balancer in front (docs/fleet.md).
// It applies only when state: is a postgres:// URL.
type Fleet struct {
	// Heartbeat is how often a node writes its heartbeat (and polls for
	// commands a missed notification did not bring).
	Heartbeat Duration `yaml:"heartbeat"`
	// LostAfter is how long a node may be silent before it is lost: shown
	// as lost everywhere, and fleet-wide commands fail naming it.
	LostAfter Duration `yaml:"lost_after"`
	// AckTimeout bounds the wait for every live node to acknowledge a
	// fleet-wide command (a mode change, a drain).
	AckTimeout Duration `yaml:"ack_timeout"`
	// Lease is how long the leader of a fleet operation holds it without
	// renewing; a leader that vanishes is replaced after this long.
	Lease Duration `yaml:"lease"`
	// Batch is how many hosts a fleet deploy takes at a time: a count (1)
	// or a share of the nodes (25%).
	Batch Batch `yaml:"batch"`
	// Wait is the pause between two batches of a fleet deploy.
	Wait Duration `yaml:"wait"`
	// AgentCheck is the address of the HAProxy agent-check port this node
	// serves (ready / drain / maint); empty: none.
	AgentCheck string `yaml:"agent_check"`
	// DrainPath is a path the gateway answers itself, 200 while the node
	// is in rotation and 503 while it drains, for load balancers that
	// health-check; empty: none (the path goes to the app).
	DrainPath string `yaml:"drain_path"`
	// DrainTimeout bounds a drain at the load balancer: the wait for the
	// host's traffic to stop and its in-flight requests to finish.
	DrainTimeout Duration `yaml:"drain_timeout"`
	// LBCheck is how often the load balancer checks a host and how many
	// failed checks take it out: a drain waits interval × threshold before
	// it counts the host's traffic as gone.
	LBCheck LBCheck `yaml:"lb_check"`
	// HAProxyAPI is HAProxy's runtime API (a stats socket at level admin:
	// a unix socket's absolute path or host:port); empty: none. Each drain,
	// ready and maint of this node is also sent there as "set server
	// HAProxyServer state …", for an HAProxy told rather than asking.
	HAProxyAPI string `yaml:"haproxy_api"`
	// HAProxyServer is this node's server line in HAProxy, BACKEND/SERVER.
	HAProxyServer string `yaml:"haproxy_server"`
}

// haproxyServer is what HAProxy allows in a proxy's and a server's name;
// it also keeps a second command (a space, ';', a newline) out of the
// runtime API's socket.
var haproxyServer = regexp.MustCompile(`^[A-Za-z0-9._:-]+/[A-Za-z0-9._:-]+$`)

// LBCheck is the load balancer's health-check cadence.
type LBCheck struct {
	Interval  Duration `yaml:"interval"`
	Threshold int      `yaml:"threshold"`
}

// Batch is a number of hosts, or a percentage of the nodes.
type Batch struct {
	N       int
	Percent bool
}

func (b *Batch) parse(s string) error {
	num, pct := strings.CutSuffix(strings.TrimSpace(s), "%")
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n < 1 || pct && n > 100 {
		return fmt.Errorf("want a number of hosts (1) or a percentage of them (25%%), got %q", s)
	}
	*b = Batch{N: n, Percent: pct}
	return nil
}

func (b Batch) String() string {
	if b.Percent {
		return strconv.Itoa(b.N) + "%"
	}
	return strconv.Itoa(b.N)
}

// Of returns how many of nodes one batch takes: at least one.
func (b Batch) Of(nodes int) int {
	n := b.N
	if b.Percent {
		n = nodes * b.N / 100
	}
	return max(1, min(n, nodes))
}

func defaultFleet() Fleet {
	return Fleet{
		Heartbeat: Duration(time.Second),
		// Five heartbeats: a node is not lost over one slow write, and a
		// dead one is seen within seconds.
		LostAfter:  Duration(5 * time.Second),
		AckTimeout: Duration(2 * time.Second),
		Lease:      Duration(15 * time.Second),
		Batch:      Batch{N: 1},
		Wait:       Duration(10 * time.Second),
		// HAProxy's default inter and fall (2s, 3).
		LBCheck:      LBCheck{Interval: Duration(2 * time.Second), Threshold: 3},
		DrainTimeout: Duration(60 * time.Second),
	}
}

var nodeName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// IsShared reports whether the state store is a Postgres database that
// several nodes may share.
func (c *Config) IsShared() bool {
	return strings.HasPrefix(c.State, "postgres://") || strings.HasPrefix(c.State, "postgresql://")
}

// NodeName is this node's name among the fleet: node:, else the host's
// name.
func (c *Config) NodeName() string {
	if c.Node != "" {
		return c.Node
	}
	host, err := os.Hostname()
	if err != nil || !nodeName.MatchString(host) {
		return "localhost"
	}
	return host
}

// validateFleet checks node: and the fleet: section.
func (c *Config) validateFleet(bad func(key, format string, args ...any)) {
	if c.Node != "" {
		if !nodeName.MatchString(c.Node) {
			bad("node", "a node's name is letters, digits, '.', '-' and '_' (at most 63), got %q", c.Node)
		}
		if !c.IsShared() {
			bad("node", "names this handoff among nodes that share a Postgres state, but state: is not a postgres:// URL")
		}
	}
	f := &c.Fleet
	if f.Heartbeat <= 0 {
		bad("fleet.heartbeat", "must be more than 0")
	}
	if f.LostAfter < 2*f.Heartbeat {
		bad("fleet.lost_after", "must be at least twice fleet.heartbeat (%s), or one late heartbeat loses a node; got %s", f.Heartbeat, f.LostAfter)
	}
	if f.AckTimeout <= 0 {
		bad("fleet.ack_timeout", "must be more than 0")
	}
	if f.Lease < 2*f.Heartbeat {
		bad("fleet.lease", "must be at least twice fleet.heartbeat (%s); the leader renews it every third of it; got %s", f.Heartbeat, f.Lease)
	}
	if f.AgentCheck != "" {
		checkAddr(bad, "fleet.agent_check", f.AgentCheck)
	}
	switch {
	case f.HAProxyAPI != "" && f.HAProxyServer == "":
		bad("fleet.haproxy_server", "fleet.haproxy_api needs the server line it drives, as BACKEND/SERVER in haproxy.cfg")
	case f.HAProxyAPI == "" && f.HAProxyServer != "":
		bad("fleet.haproxy_api", "fleet.haproxy_server needs HAProxy's runtime API: a stats socket's path or host:port")
	}
	if f.HAProxyAPI != "" && !strings.HasPrefix(f.HAProxyAPI, "/") {
		if _, port, err := net.SplitHostPort(f.HAProxyAPI); err != nil || port == "" {
			bad("fleet.haproxy_api", "want a stats socket's absolute path (/run/haproxy/admin.sock) or host:port, got %q", f.HAProxyAPI)
		}
	}
	if f.HAProxyServer != "" && !haproxyServer.MatchString(f.HAProxyServer) {
		bad("fleet.haproxy_server", "want BACKEND/SERVER as in haproxy.cfg (letters, digits, '.', '_', ':', '-'), got %q", f.HAProxyServer)
	}
	if f.DrainPath != "" && (!strings.HasPrefix(f.DrainPath, "/") || strings.ContainsAny(f.DrainPath, "?# ")) {
		bad("fleet.drain_path", "want a path such as /handoff/ready, got %q", f.DrainPath)
	}
	if f.DrainTimeout <= 0 {
		bad("fleet.drain_timeout", "must be more than 0")
	}
	if f.LBCheck.Interval <= 0 {
		bad("fleet.lb_check.interval", "must be more than 0")
	}
	if f.LBCheck.Threshold < 1 {
		bad("fleet.lb_check.threshold", "must be at least 1")
	}
}
