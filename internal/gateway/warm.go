package gateway

import (
	"context"
	"sync"
	"time"
)

// Warming bounds: enough connections for a busy app's clients, dialled
// within a budget that keeps the switch well inside its 50 ms goal.
const (
	maxWarm    = 256
	warmBudget = 20 * time.Millisecond
)

// warm opens idle keep-alive connections to targets that a switch is about
// to send traffic to, as many in all as the departing targets hold now.
// Without it, every client's first request after a switch waits for its own
// connect at the same moment, on a new instance that has not accepted a
// connection yet: a latency spike the size of a few hundred connects.
// Failures are ignored: a request dials for itself when it finds no idle
// connection, and a refused dial there marks the target down as usual.
func warm(fresh, departing []*Target) {
	if len(fresh) == 0 {
		return
	}
	n := 0
	for _, t := range departing {
		t.mu.Lock()
		n += len(t.conns)
		t.mu.Unlock()
	}
	per := min((n+len(fresh)-1)/len(fresh), maxWarm)
	ctx, cancel := context.WithTimeout(context.Background(), warmBudget)
	defer cancel()
	var wg sync.WaitGroup
	for _, t := range fresh {
		for range per {
			wg.Go(func() {
				if c, err := t.dial(ctx); err == nil {
					t.putIdle(c)
				}
			})
		}
	}
	wg.Wait()
}
