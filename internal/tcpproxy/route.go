package tcpproxy

import (
	"context"
	"time"

	"github.com/handoff-dev/handoff/internal/gateway"
)

// SetRoute points an app's new connections at a new route as soon as it
// returns. Open connections stay on their targets: those no route lists
// any more drain — their connections go on until they close, or until the
// app's drain_timeout, when they are closed (logged and counted) — and the
// returned Drain reports when that is over.
func (p *Proxy) SetRoute(name string, r gateway.Route) (*Drain, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	a, err := p.app(name)
	if err != nil {
		return nil, err
	}
	return p.retarget(a, r), nil
}

// Route returns an app's current route.
func (p *Proxy) Route(name string) (gateway.Route, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	a, err := p.app(name)
	if err != nil {
		return gateway.Route{}, err
	}
	return a.route, nil
}

// retarget swaps the route and drains what only the old one listed; p.mu
// is held. The new snapshot is published before the old targets are
// marked draining, so that a connection that finds its target draining
// finds another in the snapshot it loads next.
func (p *Proxy) retarget(a *app, r gateway.Route) *Drain {
	listed := map[string]bool{}
	for _, addr := range r.Addrs() {
		listed[addr] = true
		t := a.targets[addr]
		if t == nil {
			t = newTarget(p, a.name, addr)
			a.targets[addr] = t
		}
		if !t.listed {
			t.listed = true
			t.draining.Store(false)
			if t.stopCheck == nil {
				t.stopCheck = p.monitorHealth(a, t)
			}
		}
	}
	var gone []*target
	for addr, t := range a.targets {
		if !listed[addr] && t.listed {
			t.listed = false
			gone = append(gone, t)
		}
	}
	a.route = r
	a.publish()
	now := time.Now()
	for _, t := range gone {
		t.mu.Lock()
		t.drainedAt = now
		t.mu.Unlock()
		t.draining.Store(true)
	}
	timeout := time.Duration(0)
	if a.cfg != nil {
		timeout = a.cfg.DrainTimeout.D()
	}
	return p.drain(a, gone, timeout)
}

// publish builds the hot path's snapshot from the route; Proxy.mu is held.
func (a *app) publish() {
	s := &snapshot{}
	for _, rp := range a.route.Pools {
		sp := pool{release: rp.Release, weight: rp.Weight}
		for _, addr := range rp.Targets {
			sp.targets = append(sp.targets, a.targets[addr])
		}
		s.weights += rp.Weight
		s.pools = append(s.pools, sp)
	}
	a.snap.Store(s)
}

// Drain is the draining of the targets a route change left behind.
type Drain struct {
	done   chan struct{}
	report gateway.DrainReport
}

// Wait blocks until the drain is over or ctx is done. The report's Cut
// counts connections still open at drain_timeout, which were closed.
func (d *Drain) Wait(ctx context.Context) (gateway.DrainReport, error) {
	select {
	case <-d.done:
		return d.report, nil
	case <-ctx.Done():
		return gateway.DrainReport{}, ctx.Err()
	}
}

// drainPoll is how often a drain looks at open counts.
const drainPoll = 10 * time.Millisecond

// drain waits until the targets have no open connection or timeout has
// passed, then closes what is left and forgets the targets that no route
// lists again in the meantime.
func (p *Proxy) drain(a *app, targets []*target, timeout time.Duration) *Drain {
	d := &Drain{done: make(chan struct{})}
	start := time.Now()
	for _, t := range targets {
		d.report.Targets = append(d.report.Targets, t.addr)
	}
	go func() {
		defer close(d.done)
		deadline := time.NewTimer(timeout)
		defer deadline.Stop()
		tick := time.NewTicker(drainPoll)
		defer tick.Stop()
	wait:
		for !drained(targets) {
			select {
			case <-deadline.C:
				break wait
			case <-tick.C:
			}
		}
		d.report.Cut = p.forget(a, targets)
		d.report.Duration = time.Since(start)
		if d.report.Cut > 0 {
			p.metrics.cut.WithLabelValues(a.name).Add(float64(d.report.Cut))
			a.cutTotal.Add(int64(d.report.Cut))
			p.log.Warn("tcp drain_timeout passed: closed connections still open on replaced targets",
				"app", a.name, "targets", d.report.Targets, "cut", d.report.Cut, "drain_timeout", timeout)
		}
	}()
	return d
}

func drained(targets []*target) bool {
	for _, t := range targets {
		if t.draining.Load() && t.open.Load() > 0 {
			return false
		}
	}
	return true
}

// forget closes the connections left on targets that still drain, stops
// their checks and drops them; it returns how many connections it closed.
func (p *Proxy) forget(a *app, targets []*target) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	cut := 0
	for _, t := range targets {
		if t.listed || a.targets[t.addr] != t {
			continue // listed again: it serves
		}
		cut += t.cutAll()
		if t.stopCheck != nil {
			t.stopCheck()
			t.stopCheck = nil
		}
		delete(a.targets, t.addr)
	}
	return cut
}

// Shutdown waits for every open connection to end by itself, until ctx is
// done, then closes those left (logged and counted) and stops the health
// checks. The listeners are the caller's to close first: that is what
// stops accepting. It returns how many connections it closed.
func (p *Proxy) Shutdown(ctx context.Context) int {
	tick := time.NewTicker(drainPoll)
	defer tick.Stop()
	for p.open.Load() > 0 {
		select {
		case <-ctx.Done():
		case <-tick.C:
			continue
		}
		break
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	cut := 0
	for _, name := range p.order {
		a := p.apps[name]
		n := 0
		for _, t := range a.targets {
			n += t.cutAll()
			if t.stopCheck != nil {
				t.stopCheck()
				t.stopCheck = nil
			}
		}
		if n > 0 {
			p.metrics.cut.WithLabelValues(name).Add(float64(n))
			a.cutTotal.Add(int64(n))
			p.log.Warn("tcp connections still open when this handoff stopped were closed", "app", name, "cut", n)
		}
		cut += n
	}
	return cut
}
