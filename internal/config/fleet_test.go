package config

import (
	"strings"
	"testing"
	"time"
)

func TestFleetDefaultsAndKeys(t *testing.T) {
	cfg, err := Parse("h.yaml", []byte("state: postgres://db/handoff\nnode: web-3\nfleet: { heartbeat: 500ms, lost_after: 3s, batch: 25%, agent_check: 127.0.0.1:9901, drain_path: /handoff/ready, lb_check: { interval: 1s, threshold: 2 } }\n"))
	if err != nil {
		t.Fatal(err)
	}
	f := cfg.Fleet
	if cfg.NodeName() != "web-3" || f.Heartbeat.D() != 500*time.Millisecond || f.LostAfter.D() != 3*time.Second ||
		f.Batch != (Batch{N: 25, Percent: true}) || f.AgentCheck != "127.0.0.1:9901" || f.DrainPath != "/handoff/ready" ||
		f.LBCheck.Interval.D() != time.Second || f.LBCheck.Threshold != 2 || f.HAProxyAPI != "" {
		t.Errorf("fleet keys not read: %+v", f)
	}
	if f.AckTimeout.D() != 2*time.Second || f.DrainTimeout.D() != time.Minute || f.Wait.D() != 10*time.Second {
		t.Errorf("unset fleet keys keep their defaults: %+v", f)
	}
	if got := f.Batch.Of(8); got != 2 {
		t.Errorf("25%% of 8 nodes: got %d", got)
	}
	if got := (Batch{N: 25, Percent: true}).Of(3); got != 1 {
		t.Errorf("25%% of 3 nodes is still one: got %d", got)
	}
	api, err := Parse("h.yaml", []byte("state: postgres://db/handoff\nfleet: { haproxy_api: 10.0.0.5:9999, haproxy_server: be_web/web-3 }\n"))
	if err != nil {
		t.Fatal(err)
	}
	if api.Fleet.HAProxyAPI != "10.0.0.5:9999" || api.Fleet.HAProxyServer != "be_web/web-3" {
		t.Errorf("haproxy_api and haproxy_server not read: %+v", api.Fleet)
	}
	def, err := Parse("h.yaml", []byte("state: postgres://db/handoff\n"))
	if err != nil {
		t.Fatal(err)
	}
	if def.NodeName() == "" || def.Fleet.AgentCheck != "" || def.Fleet.DrainPath != "" {
		t.Errorf("by default the node is named after the host and serves no agent port or drain path: %q %+v", def.NodeName(), def.Fleet)
	}
}

func TestFleetBadValuesNameTheKey(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"node: web-1\n", "h.yaml:1: node: names this handoff among nodes that share a Postgres state"},
		{"state: postgres://x/y\nnode: 'web 1'\n", "h.yaml:2: node: a node's name is letters"},
		{"fleet:\n  batch: 0\n", "h.yaml:2: fleet.batch: want a number of hosts (1) or a percentage of them (25%), got \"0\""},
		{"fleet:\n  batch: 120%\n", "fleet.batch: want a number of hosts"},
		{"fleet:\n  heartbeat: 3s\n", "h.yaml:1: fleet.lost_after: must be at least twice fleet.heartbeat (3s)"},
		{"fleet: { agent_check: nine }\n", "fleet.agent_check: want host:port"},
		{"fleet: { drain_path: ready }\n", "fleet.drain_path: want a path"},
		{"fleet: { lb_check: { threshold: 0 } }\n", "fleet.lb_check.threshold: must be at least 1"},
		{"fleet: { agent: 1 }\n", "fleet.agent: unknown key"},
		{"fleet: { haproxy_api: /run/haproxy/admin.sock }\n", "fleet.haproxy_server: fleet.haproxy_api needs the server line"},
		{"fleet: { haproxy_server: web/web-1 }\n", "fleet.haproxy_api: fleet.haproxy_server needs HAProxy's runtime API"},
		{"fleet: { haproxy_api: admin.sock, haproxy_server: web/web-1 }\n", "fleet.haproxy_api: want a stats socket's absolute path"},
		{"fleet: { haproxy_api: /run/haproxy/admin.sock, haproxy_server: web-1 }\n", "fleet.haproxy_server: want BACKEND/SERVER"},
		{"fleet: { haproxy_api: /run/haproxy/admin.sock, haproxy_server: 'web/web-1 state maint' }\n", "fleet.haproxy_server: want BACKEND/SERVER"},
	} {
		_, err := Parse("h.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: want an error containing %q, got %v", c.yaml, c.want, err)
		}
	}
}
