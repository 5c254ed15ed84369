package gateway

import (
	"html"
	"net"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// snapshot is the routing state the hot path reads: immutable once
// published, replaced whole on every change, read with one atomic load.
type snapshot struct {
	byHost map[string]*appRoute
	def    *appRoute // the app without hosts, if any
	apps   map[string]*appRoute
}

// appRoute is one app as the hot path sees it.
type appRoute struct {
	name     string
	mode     mode
	readOnly *readOnlyMode // non-nil while read-only is on, even under a pause
	pools    []*pool
	weights  int // sum of pool weights
	cookie   string
	hold     *holdQueue
	holdMax  time.Duration // how long a request may wait for an instance to come up
	latency  prometheus.Observer
	refused  [6]prometheus.Counter // answered by the gateway, by status class
}

// pool is one release's targets in a snapshot.
type pool struct {
	release string
	weight  int
	targets []*Target
	served  [6]prometheus.Counter // by status class: index status/100
	stats   *releaseStats
}

// route finds the app for a Host header.
func (s *snapshot) route(host string) *appRoute {
	if len(s.byHost) > 0 {
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		// "example.com." is example.com, fully qualified (RFC 1034 §3.1).
		host = strings.TrimSuffix(host, ".")
		if a, ok := s.byHost[strings.ToLower(host)]; ok {
			return a
		}
	}
	return s.def
}

// build makes a new snapshot from the control-plane state; g.mu is held.
func (g *Gateway) build() *snapshot {
	s := &snapshot{byHost: map[string]*appRoute{}, apps: map[string]*appRoute{}}
	for _, name := range g.order {
		st := g.apps[name]
		a := &appRoute{name: name, cookie: "handoff-" + name, hold: st.hold, holdMax: st.holdMax}
		a.latency = g.metrics.latency.WithLabelValues(name)
		for i := range a.refused {
			a.refused[i] = g.metrics.requests.WithLabelValues(name, "", classLabel[i])
		}
		modes := st.effective(g.global)
		a.mode = g.modeFor(st, modes)
		if modes.ReadOnly != nil {
			a.readOnly = newReadOnlyMode(st, modes.ReadOnly)
		}
		for _, p := range st.route.Pools {
			ps := &pool{release: p.Release, weight: p.Weight, stats: st.statsOf(p.Release)}
			for _, addr := range p.Targets {
				ps.targets = append(ps.targets, g.targets[addr])
			}
			for i := range ps.served {
				ps.served[i] = g.metrics.requests.WithLabelValues(name, p.Release, classLabel[i])
			}
			a.weights += p.Weight
			a.pools = append(a.pools, ps)
		}
		s.apps[name] = a
		if st.worker {
			continue
		}
		if len(st.hosts) == 0 {
			s.def = a
		}
		for _, h := range st.hosts {
			s.byHost[strings.ToLower(h)] = a
		}
	}
	return s
}

// modeFor turns an app's stored modes into the hot path's mode value.
func (g *Gateway) modeFor(st *appState, m Modes) mode {
	switch {
	case m.Maintenance != nil:
		return maintenanceMode{retryAfter: m.Maintenance.RetryAfter.D(), page: st.maintenancePage}
	case m.Pause != nil:
		max := m.Pause.Max.D()
		if max <= 0 {
			max = st.holdMax
		}
		return pausedMode{max: max}
	case m.ReadOnly != nil:
		return newReadOnlyMode(st, m.ReadOnly)
	}
	return normalMode{}
}

func bannerHTML(text string) []byte {
	return []byte(`<div id="handoff-banner" role="status"><style>` + bannerStyle + `</style>` + html.EscapeString(text) + `</div>`)
}

func retryAfterSeconds(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	return max(s, 1)
}
