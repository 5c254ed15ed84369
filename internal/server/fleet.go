package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/fleet"
	"github.com/handoff-dev/handoff/internal/supervisor"
	"golang.org/x/sys/unix"
)

// fleetNode is this server's part in a fleet (a shared Postgres state):
// its membership, its place at the load balancer, and what the drain
// needs to know of the gateway's traffic.
type fleetNode struct {
	f     *fleet.Fleet
	cfg   config.Fleet
	agent net.Listener // the HAProxy agent-check port, or nil

	mu         sync.Mutex
	drain      fleet.DrainState
	drainSince time.Time
	overdue    bool     // the drain outlasted fleet.drain_timeout (logged once)
	lb         lbTeller // HAProxy's runtime API, when configured (fleet_lb.go)

	inflight atomic.Int64 // gateway requests in flight
	lastReq  atomic.Int64 // when the last one arrived (UnixNano)

	// deploys are the fleet deploy commands this node runs (command ID →
	// struct{}), so that a command read twice starts no second deploy.
	deploys sync.Map
	// holds are the switchovers' HTTP holds this node runs (fleet_hold.go).
	holds holdSet
	// migrations caches the migrations of the releases this node runs,
	// for its heartbeat's report (fleet_contract.go).
	migrations releaseMigrations

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// openFleet joins the fleet when the state is shared, and opens the
// agent-check port when one is configured. A drain recorded for this node
// before it stopped is kept.
func (s *Server) openFleet(ctx context.Context) error {
	if !s.cfg.IsShared() {
		return nil
	}
	fc := s.cfg.Fleet
	fn := &fleetNode{cfg: fc, drain: fleet.Ready}
	s.fleet = fn
	fail := func(err error) error {
		if fn.f != nil {
			fn.f.Close()
		}
		if fn.agent != nil {
			fn.agent.Close()
		}
		s.fleet = nil
		return err
	}
	if fc.AgentCheck != "" {
		l, err := listenReusePort(ctx, fc.AgentCheck)
		if err != nil {
			return fail(fmt.Errorf("listen on %s (fleet.agent_check): %w", fc.AgentCheck, err))
		}
		fn.agent = l
	}
	f, err := fleet.Open(ctx, fleet.Options{
		DSN: s.cfg.State, Node: s.cfg.NodeName(), Host: fleet.HostName(),
		Heartbeat: fc.Heartbeat.D(), LostAfter: fc.LostAfter.D(), AckTimeout: fc.AckTimeout.D(), Lease: fc.Lease.D(),
		Logger: s.log, Apply: s.applyFleet, Report: s.fleetReport,
	})
	if err != nil {
		return fail(err)
	}
	fn.f = f
	// A mode change another node made between this process's restore and
	// its join is in the store, and its command behind this node's mark
	// (fleet: a node applies only the commands after it joined): read the
	// modes again now that nothing more can be missed.
	if err := s.restoreModes(ctx); err != nil {
		return fail(err)
	}
	s.deployer.SetFleetBlockers(s.fleetContractBlockers)
	if d := f.Restored(); d != fleet.Ready && d != "" {
		fn.setDrain(d)
		if d == fleet.Drained {
			fn.setDrain(fleet.Draining) // drained again once its traffic is seen gone
		}
		s.log.Info("fleet: this node was out of rotation when it stopped, and stays so until 'handoff fleet ready'", "node", f.Name(), "drain", d)
		defer s.tellLoadBalancer(d) // once the node's goroutines are in place, below
	}
	lctx, cancel := context.WithCancel(context.Background())
	fn.cancel = cancel
	if fn.agent != nil {
		fn.wg.Add(1)
		go func() { defer fn.wg.Done(); fn.serveAgent(lctx) }()
	}
	fn.wg.Add(4)
	go func() { defer fn.wg.Done(); s.monitorDrain(lctx) }()
	go func() { defer fn.wg.Done(); s.monitorOrphans(lctx) }()
	go func() { defer fn.wg.Done(); s.watchSwitchovers(lctx) }()  // fleet_databases.go
	go func() { defer fn.wg.Done(); s.watchLoadBalancer(lctx) }() // fleet_lb.go
	return nil
}

// closeFleet stops the heartbeats and closes the agent port: to the other
// nodes this node becomes lost, and HAProxy's agent check fails (which
// leaves the server's weight as it was; its health check takes it out).
func (s *Server) closeFleet() {
	fn := s.fleet
	if fn == nil {
		return
	}
	fn.cancel()
	if fn.agent != nil {
		fn.agent.Close()
	}
	fn.wg.Wait()
	fn.f.Close()
}

// listenReusePort listens with SO_REUSEPORT, so that the successor of a
// `handoff upgrade` opens the agent port while this process still answers
// on it (both answer the same state).
func listenReusePort(ctx context.Context, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	return lc.Listen(ctx, "tcp", addr)
}

// agentWriteTimeout bounds one agent-check answer: HAProxy reads one line.
const agentWriteTimeout = 2 * time.Second

// serveAgent answers HAProxy's agent check: one line, then close. It reads
// nothing (agent-send is not needed) and says only ready, drain or maint.
// "ready up" also lifts a "down" an operator's agent may have set before.
func (fn *fleetNode) serveAgent(ctx context.Context) {
	for ctx.Err() == nil {
		c, err := fn.agent.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(50 * time.Millisecond) // out of descriptors: do not spin
			continue
		}
		go func() {
			defer c.Close()
			c.SetWriteDeadline(time.Now().Add(agentWriteTimeout))
			c.Write([]byte(fn.agentAnswer() + "\n"))
		}()
	}
}

func (fn *fleetNode) agentAnswer() string {
	switch fn.state() {
	case fleet.Draining, fleet.Drained:
		return "drain"
	case fleet.Maint:
		return "maint"
	}
	return "ready up"
}

func (fn *fleetNode) state() fleet.DrainState {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	return fn.drain
}

// setDrain changes the node's place at the load balancer; it reports
// whether anything changed.
func (fn *fleetNode) setDrain(d fleet.DrainState) bool {
	fn.mu.Lock()
	defer fn.mu.Unlock()
	if fn.drain == d || d == fleet.Draining && fn.drain == fleet.Drained {
		return false
	}
	fn.drain, fn.drainSince, fn.overdue = d, time.Now(), false
	return true
}

// fleetHandler wraps the gateway's handler: it counts the requests a drain
// waits for and answers fleet.drain_path itself. Without a fleet the
// gateway is served as it is.
func (s *Server) fleetHandler(h http.Handler) http.Handler {
	fn := s.fleet
	if fn == nil {
		return h
	}
	path := fn.cfg.DrainPath
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if path != "" && r.URL.Path == path {
			fn.serveDrainPath(w)
			return // a load balancer's check is not traffic: it does not hold a drain up
		}
		fn.lastReq.Store(time.Now().UnixNano())
		fn.inflight.Add(1)
		defer fn.inflight.Add(-1)
		h.ServeHTTP(w, r)
	})
}

// serveDrainPath is the load balancer's health check: 200 while this node
// is in rotation, 503 from the moment it is told to drain.
func (fn *fleetNode) serveDrainPath(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	st := fn.state()
	if st == fleet.Ready {
		w.WriteHeader(http.StatusOK)
		fmt.Fprintln(w, "ready")
		return
	}
	w.WriteHeader(http.StatusServiceUnavailable)
	fmt.Fprintln(w, st)
}

// drainEvery is how often a drain looks at the gateway's traffic.
const drainEvery = 50 * time.Millisecond

// monitorDrain turns draining into drained once the load balancer has had
// time to see the drain (lb_check.interval × threshold), no request has
// arrived for one check interval, and none is in flight.
func (s *Server) monitorDrain(ctx context.Context) {
	fn := s.fleet
	t := time.NewTicker(drainEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fn.mu.Lock()
		d, since := fn.drain, fn.drainSince
		fn.mu.Unlock()
		if d != fleet.Draining {
			continue
		}
		interval := fn.cfg.LBCheck.Interval.D()
		seen := time.Since(since) >= interval*time.Duration(fn.cfg.LBCheck.Threshold)
		quiet := time.Since(time.Unix(0, fn.lastReq.Load())) >= interval
		idle := fn.inflight.Load() == 0
		if seen && quiet && idle {
			fn.mu.Lock()
			changed := fn.drain == fleet.Draining
			if changed {
				fn.drain = fleet.Drained
			}
			fn.mu.Unlock()
			if changed {
				s.event("", "fleet", "handoff", "node %s drained at the load balancer in %s: no request for %s, none in flight", fn.f.Name(), time.Since(since).Round(time.Millisecond), interval)
				fn.f.Beat(ctx)
			}
			continue
		}
		if time.Since(since) > fn.cfg.DrainTimeout.D() {
			fn.mu.Lock()
			first := !fn.overdue
			fn.overdue = true
			fn.mu.Unlock()
			if first {
				s.log.Warn("fleet: the drain has not finished within fleet.drain_timeout", "node", fn.f.Name(), "timeout", fn.cfg.DrainTimeout,
					"in_flight", fn.inflight.Load(), "last_request_ago", time.Since(time.Unix(0, fn.lastReq.Load())).Round(time.Millisecond))
			}
		}
	}
}

// fleetReport is what this node publishes with each heartbeat.
func (s *Server) fleetReport() fleet.Report {
	rep := fleet.Report{Releases: map[string][]string{}}
	for _, l := range s.ls.gateway { // set by New, unlike s.addrs
		rep.Gateway = append(rep.Gateway, l.Addr().String())
	}
	if fn := s.fleet; fn != nil {
		rep.Drain = fn.state()
		rep.Running, rep.RunningReported = s.runningReport()
		if fn.agent != nil {
			rep.Agent = fn.agent.Addr().String()
		}
	}
	if sup := s.supervisor(); sup != nil {
		for _, inst := range sup.List("") {
			switch inst.State {
			case supervisor.StateStarting, supervisor.StateRunning, supervisor.StateDraining:
			default:
				continue
			}
			if rep.Instances == nil {
				rep.Instances = map[string]map[string]int{}
			}
			if rep.Instances[inst.App] == nil {
				rep.Instances[inst.App] = map[string]int{}
			}
			rep.Instances[inst.App][inst.Release]++
		}
	}
	for _, a := range s.gw.Status() {
		for _, p := range a.Pools {
			if p.Release != "" && !slices.Contains(rep.Releases[a.App], p.Release) {
				rep.Releases[a.App] = append(rep.Releases[a.App], p.Release)
			}
		}
	}
	return rep
}

// The fleet commands. A command says what to read again from the shared
// state (the modes), or where a node stands at the load balancer.
const (
	cmdModes = "modes"
	cmdDrain = "drain"
	cmdReady = "ready"
	cmdMaint = "maint"
)

// applyFleet carries out a command another node sent.
func (s *Server) applyFleet(ctx context.Context, c fleet.Command) error {
	switch c.Kind {
	case cmdModes:
		return s.reloadModes(ctx, c.By)
	case cmdDrain, cmdReady, cmdMaint:
		s.drainHere(drainStates[c.Kind], c.By)
		return nil
	case cmdHold, cmdRelease:
		return s.applyHold(c) // fleet_hold.go
	case cmdHasRelease, cmdDeploy, cmdRollback:
		return s.applyFleetDeploy(c) // fleet_deploy.go
	}
	return fmt.Errorf("unknown fleet command %q (sent by %s, a newer handoff?)", c.Kind, c.By)
}

var drainStates = map[string]fleet.DrainState{cmdDrain: fleet.Draining, cmdReady: fleet.Ready, cmdMaint: fleet.Maint}

// reloadModes applies the modes recorded in the shared state, as another
// node changed them.
func (s *Server) reloadModes(ctx context.Context, by string) error {
	// A migrate-on-copy switches read-only off once its endpoint moved:
	// this node's endpoints follow first, so no write meets the old,
	// fenced primary here (fleet_databases.go).
	s.followSwitchovers(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.restoreModes(ctx); err != nil {
		return err
	}
	s.log.Info("fleet: modes applied as node "+by+" changed them", "node", s.fleet.f.Name())
	return nil
}

// drainHere moves this node at the load balancer at once (the agent port
// and the drain path answer from the next check on); the event and the
// heartbeat that publishes it follow, so the sender's wait for the
// acknowledgement is not theirs.
func (s *Server) drainHere(d fleet.DrainState, by string) {
	fn := s.fleet
	if !fn.setDrain(d) {
		return
	}
	s.tellLoadBalancer(d)
	fn.wg.Add(1)
	go func() {
		defer fn.wg.Done()
		s.event("", "fleet", by, "node %s: %s at the load balancer", fn.f.Name(), d)
		fn.f.Beat(s.ctx)
	}()
}

// fleetCheckLive refuses a fleet-wide change before anything is changed
// when a node is lost.
func (s *Server) fleetCheckLive(ctx context.Context) error {
	if s.fleet == nil {
		return nil
	}
	if err := s.fleet.f.CheckLive(ctx, ""); err != nil {
		return deploy.Errorf(deploy.ErrUnavailable, "%v", err)
	}
	return nil
}

// fleetModes tells every other node to apply the modes just recorded and
// applied here, and waits for each to acknowledge.
func (s *Server) fleetModes(ctx context.Context) error {
	if s.fleet == nil {
		return nil
	}
	res, err := s.fleet.f.Send(ctx, fleet.Command{Kind: cmdModes}, true)
	var ack *fleet.AckError
	if errors.As(err, &ack) && len(ack.Missing) > 0 {
		return deploy.Errorf(deploy.ErrUnavailable, "%v; the change is recorded in the shared state, and a node that missed it applies it when it reads the state again", err)
	}
	if err != nil {
		return deploy.Errorf(deploy.ErrUnavailable, "%v", err)
	}
	s.log.Info("fleet: modes acknowledged by every node", "nodes", len(res.Acked), "slowest_ms", res.Slowest.Milliseconds())
	return nil
}

// FleetDrain puts a node (this one by default) into drain, back into
// rotation, or into maintenance at the load balancer; with Wait, a drain
// returns once the node's traffic has stopped.
func (s *Server) FleetDrain(ctx context.Context, req control.FleetRequest) (*control.FleetStatus, error) {
	fn := s.fleet
	if fn == nil {
		return nil, deploy.Errorf(deploy.ErrBadRequest, "this handoff is not part of a fleet: its state: is not a postgres:// URL")
	}
	d, ok := drainStates[req.State]
	if !ok {
		return nil, deploy.Errorf(deploy.ErrBadRequest, "unknown drain state %q: want drain, ready or maint", req.State)
	}
	node := req.Node
	if node == "" {
		node = fn.f.Name()
	}
	if node == fn.f.Name() {
		s.drainHere(d, req.Actor)
	}
	if _, err := fn.f.Send(ctx, fleet.Command{Kind: req.State, Target: node}, node == fn.f.Name()); err != nil {
		// The fleet's error stays inside: a fleet deploy's revert tells a
		// lost node (settled later) from another failure by it.
		return nil, kindError{deploy.ErrUnavailable, err}
	}
	if req.Wait && d == fleet.Draining {
		if err := s.awaitDrained(ctx, node); err != nil {
			return nil, err
		}
	}
	return s.fleetStatus(ctx)
}

// awaitDrained waits until node reports drained, bounded by
// fleet.drain_timeout and the time the load balancer needs to see it.
func (s *Server) awaitDrained(ctx context.Context, node string) error {
	fc := s.fleet.cfg
	limit := fc.DrainTimeout.D() + fc.LBCheck.Interval.D()*time.Duration(fc.LBCheck.Threshold+1) + fc.Heartbeat.D()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		nodes, err := s.fleet.f.Nodes(ctx)
		if err == nil {
			for _, n := range nodes {
				if n.Name == node && n.Drain == fleet.Drained {
					return nil
				}
				if n.Name == node && n.Lost {
					return deploy.Errorf(deploy.ErrFailed, "fleet: node %s was lost while it drained (last heartbeat %s ago)", node, n.Since.Round(time.Millisecond))
				}
			}
		}
		select {
		case <-ctx.Done():
			return deploy.Errorf(deploy.ErrFailed, "fleet: node %s has not drained within %s: its gateway still sees requests (see 'handoff status' on it)", node, limit)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// FleetForget removes a lost node from the fleet.
func (s *Server) FleetForget(ctx context.Context, req control.FleetRequest) (*control.FleetStatus, error) {
	if s.fleet == nil {
		return nil, deploy.Errorf(deploy.ErrBadRequest, "this handoff is not part of a fleet: its state: is not a postgres:// URL")
	}
	if err := s.fleet.f.Forget(ctx, req.Node); err != nil {
		return nil, deploy.Errorf(deploy.ErrConflict, "%v", err)
	}
	s.event("", "fleet", req.Actor, "node %s forgotten: no longer part of the fleet", req.Node)
	return s.fleetStatus(ctx)
}

func (s *Server) fleetStatus(ctx context.Context) (*control.FleetStatus, error) {
	st := &control.FleetStatus{Node: s.fleet.f.Name()}
	nodes, err := s.fleet.f.Nodes(ctx)
	if err != nil {
		return nil, err
	}
	st.Nodes = nodes
	return st, nil
}

// fleetInStatus adds every node to the status, and a warning for each
// lost one and for this node when it cannot write its heartbeat. The
// state store being out of reach does not fail the status: this node
// still serves, and says what it knows.
func (s *Server) fleetInStatus(ctx context.Context, out *control.Status) {
	fn := s.fleet
	if fn == nil {
		return
	}
	out.Node = fn.f.Name()
	if last, err := fn.f.Health(); err != nil {
		out.Warnings = append(out.Warnings, fmt.Sprintf("this node (%s) cannot reach the shared state since %s: it keeps serving what it has, and the other nodes show it as lost (%v)",
			fn.f.Name(), last.Local().Format(time.TimeOnly), err))
	}
	out.Warnings = append(out.Warnings, s.lbWarnings()...)
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	nodes, err := fn.f.Nodes(qctx)
	if err != nil {
		return
	}
	out.Nodes = nodes
	s.fleetDeploysInStatus(qctx, out)
	for _, n := range nodes {
		if n.Lost {
			out.Warnings = append(out.Warnings, fmt.Sprintf("node %s is lost: last heartbeat %s ago (at %s); fleet-wide changes fail until it is back or 'handoff fleet forget %s'",
				n.Name, n.Since.Round(time.Second), n.Heartbeat.Local().Format(time.TimeOnly), n.Name))
		}
	}
}
