package gateway

import (
	"errors"
	"sync"
	"syscall"
	"time"
)

// descriptorLogEvery is how often running out of file descriptors is logged:
// once per interval, with the count since the last line, not per request or
// per check — the log would otherwise add to the load that caused it.
const descriptorLogEvery = 10 * time.Second

// descriptorsExhausted reports whether err is this process (EMFILE) or the
// whole system (ENFILE) out of file descriptors: the gateway's own fault,
// which says nothing about the instance it was trying to reach.
func descriptorsExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// exhaustion keeps count of the gateway's failures for want of descriptors.
type exhaustion struct {
	mu       sync.Mutex
	count    int64
	last     time.Time
	lastErr  string
	loggedAt time.Time
	unlogged int64
}

// DescriptorExhaustion says how often the gateway ran out of file
// descriptors (EMFILE, ENFILE) while checking or dialling an instance.
// Such a failure is the gateway's, not the instance's: it marks no target
// down.
type DescriptorExhaustion struct {
	Count int64     `json:"count"`
	Last  time.Time `json:"last,omitzero"`
	Error string    `json:"error,omitempty"`
}

// DescriptorExhaustion reports the gateway's failures for want of file
// descriptors since it started.
func (g *Gateway) DescriptorExhaustion() DescriptorExhaustion {
	e := &g.exhausted
	e.mu.Lock()
	defer e.mu.Unlock()
	return DescriptorExhaustion{Count: e.count, Last: e.last, Error: e.lastErr}
}

// outOfDescriptors records a check or dial (op) that failed for want of
// descriptors: counted in the metrics, and logged at most once per
// descriptorLogEvery.
func (g *Gateway) outOfDescriptors(op, target string, err error) {
	g.metrics.descriptors.WithLabelValues(op).Inc()
	e := &g.exhausted
	now := time.Now()
	e.mu.Lock()
	e.count++
	e.last, e.lastErr = now, err.Error()
	e.unlogged++
	n := e.unlogged
	due := now.Sub(e.loggedAt) >= descriptorLogEvery
	if due {
		e.loggedAt, e.unlogged = now, 0
	}
	e.mu.Unlock()
	if due {
		g.log.Warn("the gateway is out of file descriptors; instances are not marked down for it: raise the open-file limit or lower gateway.max_connections",
			"failures", n, "op", op, "target", target, "error", err)
	}
}
