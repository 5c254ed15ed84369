package tcpproxy

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// target is one instance of a tcp app: an address, its health, and its
// open connections. It lives while a route lists it or it drains.
type target struct {
	addr string

	healthy  atomic.Bool
	draining atomic.Bool
	open     atomic.Int64

	// Counters, resolved once: the hot path only adds.
	accepted, dialFailures prometheus.Counter
	bytesTo, bytesFrom     prometheus.Counter
	// Totals for status, kept beside the metrics (which cannot be read).
	total, failures, sent, received atomic.Int64

	mu        sync.Mutex
	conns     map[*conn]struct{}
	lastError string
	checkedAt time.Time
	passedAt  time.Time
	failing   time.Time
	drainedAt time.Time
	listed    bool   // a route lists it (guarded by Proxy.mu)
	stopCheck func() // stops the health monitor (guarded by Proxy.mu)
}

func newTarget(p *Proxy, app, addr string) *target {
	t := &target{addr: addr, conns: map[*conn]struct{}{},
		accepted:     p.metrics.conns.WithLabelValues(app, addr),
		dialFailures: p.metrics.dialFailures.WithLabelValues(app, addr),
		bytesTo:      p.metrics.bytes.WithLabelValues(app, addr, "to_target"),
		bytesFrom:    p.metrics.bytes.WithLabelValues(app, addr, "to_client"),
	}
	// Optimistic until the first check says otherwise: a restored route
	// must serve at once, and a dead target is found by its first dial.
	t.healthy.Store(true)
	return t
}

// track registers a new connection, unless the target drains: then the
// connection must go elsewhere. Counting first and looking at draining
// second pairs with a drain, which sets draining first and counts second:
// either the drain sees this connection, or this sees the drain.
func (t *target) track(c *conn) bool {
	t.mu.Lock()
	t.conns[c] = struct{}{}
	t.mu.Unlock()
	t.open.Add(1)
	if t.draining.Load() {
		t.untrack(c)
		return false
	}
	t.accepted.Inc()
	t.total.Add(1)
	return true
}

func (t *target) untrack(c *conn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	t.open.Add(-1)
}

func (t *target) toTarget(n int64) {
	if n > 0 {
		t.bytesTo.Add(float64(n))
		t.sent.Add(n)
	}
}

func (t *target) toClient(n int64) {
	if n > 0 {
		t.bytesFrom.Add(float64(n))
		t.received.Add(n)
	}
}

// dialFailed is the passive health check: a target that refuses a
// connection is out of rotation until an active check passes again.
func (t *target) dialFailed(p *Proxy, err error) {
	t.dialFailures.Inc()
	t.failures.Add(1)
	if t.Healthy() {
		p.log.Info("tcp target refused a connection: out of rotation until its check passes", "target", t.addr, "error", err)
	}
	t.setHealth(false, err)
}

// Healthy reports the last verdict.
func (t *target) Healthy() bool { return t.healthy.Load() }

func (t *target) setHealth(ok bool, err error) {
	t.healthy.Store(ok)
	t.mu.Lock()
	defer t.mu.Unlock()
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
}

// cutAll closes every open connection (a drain's deadline) and returns
// how many there were.
func (t *target) cutAll() int {
	t.mu.Lock()
	all := make([]*conn, 0, len(t.conns))
	for c := range t.conns {
		all = append(all, c)
	}
	t.mu.Unlock()
	for _, c := range all {
		c.close()
	}
	return len(all)
}
