package gateway

import (
	"math/rand/v2"
	"net/http"
)

// choosePool picks the pool (release) for a request. A client pinned by its
// cookie to a release that still serves stays on it; others are shared by
// weight. pinned says the cookie decided, so no new cookie is needed.
func (a *appRoute) choosePool(r *http.Request) (p *pool, pinned bool) {
	if len(a.pools) == 1 {
		return a.pools[0], true
	}
	if c, err := r.Cookie(a.cookie); err == nil {
		for _, p := range a.pools {
			if p.release == c.Value {
				return p, true
			}
		}
	}
	if a.weights <= 0 {
		return a.pools[0], false
	}
	n := rand.IntN(a.weights)
	for _, p := range a.pools {
		if n < p.weight {
			return p, false
		}
		n -= p.weight
	}
	return a.pools[len(a.pools)-1], false
}

// pick chooses a target for one attempt: the healthy target with the fewest
// requests in flight in the preferred pool, else in any other pool, else any
// target not yet tried (health may lag behind a recovery). It skips targets
// in tried.
func (a *appRoute) pick(pref *pool, tried []*Target) (*Target, *pool) {
	if t := pref.leastLoaded(tried, true); t != nil {
		return t, pref
	}
	for _, p := range a.pools {
		if p != pref {
			if t := p.leastLoaded(tried, true); t != nil {
				return t, p
			}
		}
	}
	for _, p := range a.pools {
		if t := p.leastLoaded(tried, false); t != nil {
			return t, p
		}
	}
	return nil, nil
}

// leastLoaded returns the target with the fewest in-flight requests, starting
// the scan at a random place so that equal targets share the load.
func (p *pool) leastLoaded(tried []*Target, healthyOnly bool) *Target {
	n := len(p.targets)
	if n == 0 {
		return nil
	}
	var best *Target
	var bestLoad int64
	start := 0
	if n > 1 {
		start = rand.IntN(n)
	}
	for i := range n {
		t := p.targets[(start+i)%n]
		if (healthyOnly && !t.healthy.Load()) || t.draining.Load() || contains(tried, t) {
			continue
		}
		if load := t.inflight.Load(); best == nil || load < bestLoad {
			best, bestLoad = t, load
		}
	}
	return best
}

func contains(list []*Target, t *Target) bool {
	for _, x := range list {
		if x == t {
			return true
		}
	}
	return false
}

// pinCookie pins a client to the release that served it, for its visit.
func pinCookie(name, release string) string {
	c := http.Cookie{Name: name, Value: release, Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
	return c.String()
}
