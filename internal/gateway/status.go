package gateway

import "time"

// AppStatus is one app's state as the gateway sees it.
type AppStatus struct {
	App      string         `json:"app"`
	Kind     string         `json:"kind"`
	Hosts    []string       `json:"hosts,omitempty"`
	Mode     string         `json:"mode"`
	Modes    Modes          `json:"modes"`
	Held     int            `json:"held"`
	Pools    []PoolStatus   `json:"pools"`
	Draining []TargetStatus `json:"draining,omitempty"`
}

// PoolStatus is one release's targets.
type PoolStatus struct {
	Release string         `json:"release"`
	Weight  int            `json:"weight"`
	Targets []TargetStatus `json:"targets"`
}

// Status reports every app, in config order.
func (g *Gateway) Status() []AppStatus {
	g.mu.Lock()
	defer g.mu.Unlock()
	listed := map[*Target]bool{}
	var out []AppStatus
	for _, name := range g.order {
		st := g.apps[name]
		modes := st.modes.over(g.global)
		kind := "http"
		if st.worker {
			kind = "worker"
		}
		as := AppStatus{App: name, Kind: kind, Hosts: st.hosts, Mode: modes.Name(), Modes: modes, Held: st.hold.held()}
		for _, p := range st.route.Pools {
			ps := PoolStatus{Release: p.Release, Weight: p.Weight, Targets: []TargetStatus{}}
			for _, addr := range p.Targets {
				t := g.targets[addr]
				listed[t] = true
				ps.Targets = append(ps.Targets, t.status(p.Release))
			}
			as.Pools = append(as.Pools, ps)
		}
		out = append(out, as)
	}
	// Targets no route lists but still draining belong to no app any more;
	// they are reported under the first app so that they are seen at all.
	var draining []TargetStatus
	for _, t := range g.targets {
		if !listed[t] && t.draining.Load() {
			draining = append(draining, t.status(""))
		}
	}
	if len(out) > 0 {
		out[0].Draining = draining
	}
	return out
}

// DrainingSince is a helper for callers that show how long a drain has run.
func DrainingSince(t TargetStatus) time.Duration {
	if t.Since.IsZero() {
		return 0
	}
	return time.Since(t.Since)
}
