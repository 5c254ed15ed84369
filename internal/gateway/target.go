package gateway

import (
	"sync"
	"sync/atomic"
	"time"
)

// Target is one instance as the gateway sees it: an address, its health,
// its in-flight count, and its pool of idle keep-alive connections.
// A target outlives routing snapshots; the gateway keeps one per address.
type Target struct {
	Addr string

	healthy  atomic.Bool
	inflight atomic.Int64 // requests and tunnels now on this target
	draining atomic.Bool  // no new requests; connections are not kept

	mu        sync.Mutex
	idle      []*upstreamConn
	conns     map[*upstreamConn]struct{} // every open connection, idle or busy
	tunnels   map[*tunnel]struct{}       // spliced (WebSocket) connections
	lastError string
	checkedAt time.Time
	passedAt  time.Time // the last passing health check
	failing   time.Time // the first failure since then; zero while healthy
	drainedAt time.Time // when draining began
	refs      int       // routes that list this target (guarded by Gateway.mu)
	stopCheck func()    // stops the health monitor
}

func newTarget(addr string) *Target {
	t := &Target{Addr: addr, conns: map[*upstreamConn]struct{}{}, tunnels: map[*tunnel]struct{}{}}
	// Optimistic until the first check says otherwise: a restored route must
	// serve at once, and a dead instance is found by its first refused dial.
	t.healthy.Store(true)
	return t
}

// Healthy reports the last health verdict.
func (t *Target) Healthy() bool { return t.healthy.Load() }

// Inflight reports the requests and tunnels now on the target.
func (t *Target) Inflight() int64 { return t.inflight.Load() }

func (t *Target) setHealth(ok bool, err error) {
	t.healthy.Store(ok)
	t.mu.Lock()
	t.checkedAt = time.Now()
	if err != nil {
		t.lastError = err.Error()
	} else if ok {
		t.lastError = ""
	}
	if ok {
		t.passedAt, t.failing = t.checkedAt, time.Time{}
	} else if t.failing.IsZero() {
		t.failing = t.checkedAt
	}
	t.mu.Unlock()
}

// passedAfter reports whether t's last passing health check ended after
// since.
func (t *Target) passedAfter(since time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.passedAt.After(since)
}

// markDown is the passive health check: a refused connection takes the
// target out of rotation until an active check passes again.
func (t *Target) markDown(err error) { t.setHealth(false, err) }

// getIdle pops an idle connection. With check, it is one found still
// open and quiet, and dead ones are discarded on the way; without, the
// caller must be ready for one the instance has closed (see roundTrip).
func (t *Target) getIdle(check bool) *upstreamConn {
	for {
		t.mu.Lock()
		n := len(t.idle)
		if n == 0 {
			t.mu.Unlock()
			return nil
		}
		c := t.idle[n-1]
		t.idle = t.idle[:n-1]
		t.mu.Unlock()
		if c.checked = check; c.alive(check) {
			return c
		}
		c.close()
	}
}

// maxIdle bounds each target's idle connections.
const maxIdle = 1024

// putIdle returns a connection for reuse, or closes it when the target is
// draining or has enough idle connections already.
func (t *Target) putIdle(c *upstreamConn) {
	if !t.draining.Load() {
		t.mu.Lock()
		if len(t.idle) < maxIdle && !t.draining.Load() {
			c.pooled = true
			t.idle = append(t.idle, c)
			t.mu.Unlock()
			return
		}
		t.mu.Unlock()
	}
	c.close()
}

func (t *Target) track(c *upstreamConn) {
	t.mu.Lock()
	t.conns[c] = struct{}{}
	t.mu.Unlock()
}

func (t *Target) untrack(c *upstreamConn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

func (t *Target) addTunnel(tu *tunnel) {
	t.mu.Lock()
	t.tunnels[tu] = struct{}{}
	t.mu.Unlock()
}

func (t *Target) removeTunnel(tu *tunnel) {
	t.mu.Lock()
	delete(t.tunnels, tu)
	t.mu.Unlock()
}

// goAwayTunnels ends every tunnel on the target, politely where the
// protocol allows, waits for them, and returns how many there were.
func (t *Target) goAwayTunnels() int {
	t.mu.Lock()
	tunnels := make([]*tunnel, 0, len(t.tunnels))
	for tu := range t.tunnels {
		tunnels = append(tunnels, tu)
	}
	t.mu.Unlock()
	var wg sync.WaitGroup
	for _, tu := range tunnels {
		wg.Add(1)
		go func() { defer wg.Done(); tu.goAway() }()
	}
	wg.Wait()
	return len(tunnels)
}

// closeIdle closes every idle connection.
func (t *Target) closeIdle() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	t.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// closeAll closes every connection, cutting what is still in flight.
func (t *Target) closeAll() int {
	t.closeIdle()
	t.mu.Lock()
	all := make([]*upstreamConn, 0, len(t.conns))
	for c := range t.conns {
		all = append(all, c)
	}
	t.mu.Unlock()
	for _, c := range all {
		c.close()
	}
	return len(all)
}

// TargetStatus is a target's state for status output.
type TargetStatus struct {
	Addr      string    `json:"addr"`
	Release   string    `json:"release,omitempty"`
	Healthy   bool      `json:"healthy"`
	Inflight  int64     `json:"inflight"`
	Draining  bool      `json:"draining,omitempty"`
	Since     time.Time `json:"draining_since,omitzero"`
	LastError string    `json:"last_error,omitempty"`
	CheckedAt time.Time `json:"checked_at,omitzero"`
}

func (t *Target) status(release string) TargetStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := TargetStatus{
		Addr: t.Addr, Release: release, Healthy: t.healthy.Load(), Inflight: t.inflight.Load(),
		Draining: t.draining.Load(), LastError: t.lastError, CheckedAt: t.checkedAt,
	}
	if s.Draining {
		s.Since = t.drainedAt
	}
	return s
}
