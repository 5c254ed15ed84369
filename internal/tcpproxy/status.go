package tcpproxy

import (
	"slices"

	"github.com/handoff-dev/handoff/internal/gateway"
)

// AppStatus is one tcp app as the proxy sees it: the gateway's shape for
// its route (pools of targets, each target's open connections as its
// in-flight count, the targets still draining), and its own counts.
type AppStatus struct {
	gateway.AppStatus
	TCP Stats `json:"tcp"`
}

// Stats are a tcp app's listeners and counts since this handoff process
// began (a `handoff upgrade` starts them again).
type Stats struct {
	Listen []string `json:"listen"`
	// Open counts the client connections open now.
	Open int64 `json:"open"`
	// Refused counts client connections closed unanswered: no target
	// accepted within hold_max, or over the connection cap.
	Refused int64 `json:"refused"`
	// Cut counts connections closed at drain_timeout (a deploy's drain, a
	// stop, the end of an upgrade).
	Cut     int64         `json:"cut"`
	Targets []TargetStats `json:"targets"`
}

// TargetStats are one target's counts, listed or draining.
type TargetStats struct {
	Addr        string `json:"addr"`
	Open        int64  `json:"open"`
	Connections int64  `json:"connections"`
	// BytesToTarget and BytesToClient are counted as they pass, in steps
	// of at most 256 KiB per connection and direction.
	BytesToTarget int64 `json:"bytes_to_target"`
	BytesToClient int64 `json:"bytes_to_client"`
	DialFailures  int64 `json:"dial_failures"`
}

// Status reports every tcp app, in config order.
func (p *Proxy) Status() []AppStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []AppStatus
	for _, name := range p.order {
		out = append(out, p.status(p.apps[name]))
	}
	return out
}

func (p *Proxy) status(a *app) AppStatus {
	as := AppStatus{AppStatus: gateway.AppStatus{App: a.name, Kind: "tcp", Mode: "normal", Pools: []gateway.PoolStatus{}}}
	listed := map[*target]bool{}
	for _, rp := range a.route.Pools {
		ps := gateway.PoolStatus{Release: rp.Release, Weight: rp.Weight, Targets: []gateway.TargetStatus{}}
		for _, addr := range rp.Targets {
			t := a.targets[addr]
			listed[t] = true
			ps.Targets = append(ps.Targets, t.status(rp.Release))
		}
		as.Pools = append(as.Pools, ps)
	}
	st := Stats{Listen: slices.Clone(a.addrs), Refused: a.refusedTotal(), Cut: a.cutTotal.Load(), Targets: []TargetStats{}}
	for _, t := range a.targets {
		if !listed[t] {
			as.Draining = append(as.Draining, t.status(""))
		}
		st.Open += t.open.Load()
		st.Targets = append(st.Targets, TargetStats{Addr: t.addr, Open: t.open.Load(), Connections: t.total.Load(),
			BytesToTarget: t.sent.Load(), BytesToClient: t.received.Load(), DialFailures: t.failures.Load()})
	}
	slices.SortFunc(st.Targets, func(x, y TargetStats) int {
		if x.Addr < y.Addr {
			return -1
		}
		if x.Addr > y.Addr {
			return 1
		}
		return 0
	})
	as.TCP = st
	return as
}

func (t *target) status(release string) gateway.TargetStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := gateway.TargetStatus{Addr: t.addr, Release: release, Healthy: t.healthy.Load(), Inflight: t.open.Load(),
		Draining: t.draining.Load(), LastError: t.lastError, CheckedAt: t.checkedAt}
	if s.Draining {
		s.Since = t.drainedAt
	}
	return s
}

// TargetHealth reports what the proxy knows of a target's health (for the
// server's liveness policy, as the gateway's TargetHealth).
func (p *Proxy) TargetHealth(name, addr string) (gateway.TargetHealth, bool) {
	p.mu.Lock()
	a := p.apps[name]
	var t *target
	if a != nil {
		t = a.targets[addr]
	}
	p.mu.Unlock()
	if t == nil {
		return gateway.TargetHealth{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return gateway.TargetHealth{Healthy: t.healthy.Load(), Draining: t.draining.Load(),
		Passed: t.passedAt, FailingSince: t.failing, LastError: t.lastError}, true
}
