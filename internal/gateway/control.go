package gateway

import (
	"context"
	"time"
)

// SetRoute points an app's traffic at a new route. New requests follow it
// as soon as it returns; targets that no route lists any more are drained:
// in-flight requests and tunnels finish on them, bounded by the app's
// drain_timeout, and the returned Drain reports when that is over.
func (g *Gateway) SetRoute(app string, r Route) (*Drain, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	st, err := g.app(app)
	if err != nil {
		return nil, err
	}
	return g.retarget(st, r), nil
}

// retarget swaps an app's route, keeping target reference counts, publishes
// the new snapshot and drains what the old route alone used; g.mu is held.
// Publishing comes first: a request that finds a target draining can be
// sure a snapshot without it is already out.
func (g *Gateway) retarget(st *appState, r Route) *Drain {
	var fresh []*Target
	for _, addr := range r.Addrs() {
		t := g.targets[addr]
		if t == nil {
			t = newTarget(addr)
			g.targets[addr] = t
		}
		if t.refs == 0 {
			fresh = append(fresh, t)
			t.draining.Store(false)
			if t.stopCheck == nil {
				t.stopCheck = g.monitorHealth(t, st.cfg.Health)
			}
		}
		t.refs++
	}
	var gone []*Target
	for _, addr := range st.route.Addrs() {
		t := g.targets[addr]
		t.refs--
		if t.refs == 0 {
			gone = append(gone, t)
		}
	}
	warm(fresh, gone)
	st.route = r
	g.publish()
	timeout := time.Duration(0)
	if st.cfg != nil {
		timeout = st.cfg.DrainTimeout.D()
	}
	return g.drain(gone, timeout)
}

// Route returns an app's current route.
func (g *Gateway) Route(app string) (Route, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	st, err := g.app(app)
	if err != nil {
		return Route{}, err
	}
	return st.route, nil
}

// SetModes replaces an app's modes, or the global ones when app is "".
// Requests held by a pause that is now off go on, in arrival order.
func (g *Gateway) SetModes(app string, m Modes) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if app == "" {
		g.global = m
	} else {
		st, err := g.app(app)
		if err != nil {
			return err
		}
		st.modes = m
	}
	for _, st := range g.apps {
		st.hold.setPaused(st.effective(g.global).Pause != nil)
	}
	// Publish before releasing, so released requests see the new modes.
	g.publish()
	for name, st := range g.apps {
		if st.effective(g.global).Pause == nil {
			var ahead func() <-chan struct{}
			if g.lineAhead != nil {
				ahead = func() <-chan struct{} { return g.lineAhead(name) }
			}
			st.hold.release(ahead)
		}
	}
	return nil
}

// SetLineAhead makes the requests a resume releases wait, before the first
// of them goes on, until the channel ahead(app) returns is closed — for at
// most a second. A handoff process that took over from another (`handoff
// upgrade`) uses it so that the requests its predecessor still holds,
// which arrived first, go on first.
func (g *Gateway) SetLineAhead(ahead func(app string) <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.lineAhead = ahead
}

// Holding reports whether the app has requests held, or released and not
// yet all dispatched.
func (g *Gateway) Holding(app string) bool {
	g.mu.Lock()
	st := g.apps[app]
	g.mu.Unlock()
	return st != nil && st.hold.busy()
}

// Modes returns an app's own modes, or the global ones when app is "".
func (g *Gateway) Modes(app string) (Modes, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if app == "" {
		return g.global, nil
	}
	st, err := g.app(app)
	if err != nil {
		return Modes{}, err
	}
	return st.modes, nil
}

// Drain is the draining of targets a route change left behind.
type Drain struct {
	done   chan struct{}
	report DrainReport
}

// DrainReport says how a drain ended.
type DrainReport struct {
	Targets []string `json:"targets"`
	// Cut counts connections still busy at the deadline, which were closed.
	Cut int `json:"cut"`
	// GoneAway counts tunnels (WebSockets) still open at the deadline, which
	// were ended with a Close frame so that their clients reconnect.
	GoneAway int           `json:"gone_away"`
	Duration time.Duration `json:"duration"`
}

// Wait blocks until the drain is over or ctx is done.
func (d *Drain) Wait(ctx context.Context) (DrainReport, error) {
	select {
	case <-d.done:
		return d.report, nil
	case <-ctx.Done():
		return DrainReport{}, ctx.Err()
	}
}

// drainPoll is how often a drain looks at in-flight counts.
const drainPoll = 10 * time.Millisecond

// drain lets what is in flight on targets finish, then closes their
// connections and forgets them. A target that a route lists again in the
// meantime is left alone. g.mu is held.
func (g *Gateway) drain(targets []*Target, timeout time.Duration) *Drain {
	d := &Drain{done: make(chan struct{})}
	now := time.Now()
	for _, t := range targets {
		d.report.Targets = append(d.report.Targets, t.Addr)
		t.draining.Store(true)
		t.mu.Lock()
		t.drainedAt = now
		t.mu.Unlock()
		t.closeIdle()
	}
	go func() {
		defer close(d.done)
		deadline := time.NewTimer(timeout)
		defer deadline.Stop()
		tick := time.NewTicker(drainPoll)
		defer tick.Stop()
	wait:
		for !g.drained(targets) {
			select {
			case <-deadline.C:
				break wait
			case <-tick.C:
			}
		}
		if !g.drained(targets) {
			for _, t := range targets {
				if t.draining.Load() {
					d.report.GoneAway += t.goAwayTunnels()
				}
			}
		}
		d.report.Cut = g.forget(targets)
		d.report.Duration = time.Since(now)
		if d.report.Cut > 0 {
			g.log.Warn("drain deadline passed; cut connections still in use", "targets", d.report.Targets, "cut", d.report.Cut, "timeout", timeout)
		}
	}()
	return d
}

// drained reports whether nothing is in flight on targets no route lists.
func (g *Gateway) drained(targets []*Target) bool {
	for _, t := range targets {
		if t.draining.Load() && t.inflight.Load() > 0 {
			return false
		}
	}
	return true
}

// forget closes and drops targets that are still unused, returning how many
// connections were busy when closed.
func (g *Gateway) forget(targets []*Target) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	cut := 0
	for _, t := range targets {
		if t.refs > 0 {
			continue // back in a route: keep it
		}
		busy := t.inflight.Load()
		t.closeAll()
		if busy > 0 {
			cut += int(busy)
		}
		if t.stopCheck != nil {
			t.stopCheck()
			t.stopCheck = nil
		}
		delete(g.targets, t.Addr)
	}
	return cut
}

// GoAway waits up to limit for every tunnel (WebSocket) to end by itself,
// then ends those left, politely where the protocol allows: the last step
// of a handoff process that handed its listeners to a successor.
func (g *Gateway) GoAway(limit time.Duration) {
	g.mu.Lock()
	targets := make([]*Target, 0, len(g.targets))
	for _, t := range g.targets {
		targets = append(targets, t)
	}
	g.mu.Unlock()
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) && busy(targets) {
		time.Sleep(drainPoll)
	}
	for _, t := range targets {
		t.goAwayTunnels()
	}
}

func busy(targets []*Target) bool {
	for _, t := range targets {
		if t.inflight.Load() > 0 {
			return true
		}
	}
	return false
}
