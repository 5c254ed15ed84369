package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/fleet"
)

// lbTeller tells HAProxy's runtime API (fleet.haproxy_api) where this node
// stands. One sender at a time, always with the newest state: a drain
// followed at once by a ready ends with HAProxy told ready. A failure is
// logged, recorded in the event log and shown by status until a later
// attempt succeeds; it never holds up the drain, which the agent port and
// the drain path carry on their own.
type lbTeller struct {
	mu      sync.Mutex
	want    fleet.DrainState
	sending bool
	failed  error     // the last attempt's error, nil once one succeeds
	since   time.Time // when the attempts began to fail
}

// lbRetry is how long a failed attempt waits before the next: the load
// balancer's check interval, but not a busy loop.
func (s *Server) lbRetry() time.Duration {
	return max(s.fleet.cfg.LBCheck.Interval.D(), time.Second)
}

// tellLoadBalancer moves this node at load balancers that are told rather
// than asked (HAProxy's runtime API), after the agent port and the drain
// path already answer d. Those that ask need nothing more.
func (s *Server) tellLoadBalancer(d fleet.DrainState) {
	fn := s.fleet
	if fn.cfg.HAProxyAPI == "" {
		return
	}
	t := &fn.lb
	t.mu.Lock()
	t.want = d
	start := !t.sending
	t.sending = true
	t.mu.Unlock()
	if !start {
		return // the sender at work sends the newest state next
	}
	fn.wg.Add(1)
	go func() { defer fn.wg.Done(); s.sendToLoadBalancer() }()
}

// retellLoadBalancer sends d again, unless the node has moved on from it
// since it was read (a ready that came while HAProxy was being asked must
// not be overwritten by the drain it replaced).
func (s *Server) retellLoadBalancer(d fleet.DrainState) bool {
	fn := s.fleet
	t := &fn.lb
	t.mu.Lock()
	if t.want != d || t.sending {
		t.mu.Unlock()
		return false
	}
	t.sending = true
	t.mu.Unlock()
	fn.wg.Add(1)
	go func() { defer fn.wg.Done(); s.sendToLoadBalancer() }()
	return true
}

// sendToLoadBalancer sends the wanted state until HAProxy has taken the
// newest one, or the server stops.
func (s *Server) sendToLoadBalancer() {
	fn := s.fleet
	t := &fn.lb
	api := fleet.HAProxyAPI{Addr: fn.cfg.HAProxyAPI, Server: fn.cfg.HAProxyServer}
	for {
		t.mu.Lock()
		d := t.want
		t.mu.Unlock()
		err := api.Set(s.ctx, d)
		t.mu.Lock()
		first, recovered := err != nil && t.failed == nil, err == nil && t.failed != nil
		if err != nil {
			if first {
				t.since = time.Now()
			}
			t.failed = err
		} else {
			t.failed = nil
		}
		done := err == nil && t.want == d
		if done {
			t.sending = false
		}
		t.mu.Unlock()
		switch {
		case first:
			s.log.Warn("fleet: HAProxy's runtime API did not take this node's state; the drain goes on (the agent port and drain path answer it), and it is tried again",
				"node", fn.f.Name(), "api", api.Addr, "server", api.Server, "state", d, "error", err)
			s.event("", "fleet", "handoff", "node %s: HAProxy's runtime API at %s was not told %s: %v", fn.f.Name(), api.Addr, d, err)
		case recovered:
			s.event("", "fleet", "handoff", "node %s: HAProxy's runtime API at %s told %s (%s), after failing since %s", fn.f.Name(), api.Addr, d, api.Server, t.since.Format(time.TimeOnly))
		case err == nil:
			s.log.Info("fleet: HAProxy's runtime API told", "node", fn.f.Name(), "api", api.Addr, "server", api.Server, "state", d)
		}
		if done {
			return
		}
		if err == nil {
			continue // a newer state came while this one was sent
		}
		select {
		case <-s.ctx.Done():
			t.mu.Lock()
			t.sending = false
			t.mu.Unlock()
			return
		case <-time.After(s.lbRetry()):
		}
	}
}

// watchLoadBalancer reads back from HAProxy, every lbRetry, the state a
// drain or a maint of this node told it, and tells it again if HAProxy
// holds the node ready: HAProxy forgets what its runtime API was told when
// it restarts or reloads (without a server-state-file), and would put a
// node that is being deployed back in rotation. Only ready is undone — what
// a restart leaves: an operator's own maint of a draining node stands, and
// a maint HAProxy keeps by itself (a DNS failure) is not fought every
// second. A node in rotation is not read back either.
func (s *Server) watchLoadBalancer(ctx context.Context) {
	fn := s.fleet
	if fn.cfg.HAProxyAPI == "" {
		return
	}
	api := fleet.HAProxyAPI{Addr: fn.cfg.HAProxyAPI, Server: fn.cfg.HAProxyServer}
	t := time.NewTicker(s.lbRetry())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fn.lb.mu.Lock()
		want, busy := fn.lb.want, fn.lb.sending
		fn.lb.mu.Unlock()
		if busy || want == "" || want == fleet.Ready {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, s.lbRetry())
		got, err := api.State(rctx)
		cancel()
		if err != nil || got != fleet.Ready || !s.retellLoadBalancer(want) {
			continue // an API that does not answer is reported by the sender, when it next sends
		}
		s.log.Warn("fleet: HAProxy no longer holds this node's state (restarted or reloaded?); telling it again",
			"node", fn.f.Name(), "api", api.Addr, "server", api.Server, "holds", got, "want", want)
		s.event("", "fleet", "handoff", "node %s: HAProxy at %s held %s, not %s (restarted or reloaded?); told again", fn.f.Name(), api.Addr, got, want)
	}
}

// lbWarnings are status's lines about the runtime API: one while the last
// attempt to tell it failed (fleetInStatus adds them).
func (s *Server) lbWarnings() []string {
	fn := s.fleet
	if fn == nil {
		return nil
	}
	t := &fn.lb
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failed == nil {
		return nil
	}
	return []string{fmt.Sprintf("this node (%s) could not tell HAProxy's runtime API it is %s since %s, and keeps trying; the agent port and drain path still answer: %v",
		fn.f.Name(), t.want, t.since.Local().Format(time.TimeOnly), t.failed)}
}
