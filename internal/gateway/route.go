package gateway

import (
	"fmt"
	"regexp"
)

// Route is where an app's traffic goes: one pool per release that serves.
// Most of the time there is one pool; during a canary or a rolling deploy
// there are two, and new clients are shared between them by weight.
type Route struct {
	Pools []Pool `json:"pools"`
}

// Pool is one release's instances in a route.
type Pool struct {
	// Release labels the code the targets run; it is also the pin cookie's value.
	Release string `json:"release"`
	// Targets are the instances' host:port addresses.
	Targets []string `json:"targets"`
	// Weight is this pool's share of new, unpinned clients, relative to the
	// other pools' weights. A pool of weight 0 serves only clients pinned to it.
	Weight int `json:"weight"`
}

var releaseLabel = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// ValidRelease reports whether s can label a release (and so be a cookie value).
func ValidRelease(s string) bool { return releaseLabel.MatchString(s) }

// Validate checks a route before it is stored or applied.
func (r Route) Validate() error {
	seen := map[string]bool{}
	for _, p := range r.Pools {
		if !ValidRelease(p.Release) {
			return fmt.Errorf("release label %q: use letters, digits, '.', '_' and '-'", p.Release)
		}
		if seen[p.Release] {
			return fmt.Errorf("release %s appears twice in the route", p.Release)
		}
		seen[p.Release] = true
		if p.Weight < 0 {
			return fmt.Errorf("release %s: weight must not be negative", p.Release)
		}
	}
	return nil
}

// Addrs lists every target of the route.
func (r Route) Addrs() []string {
	var out []string
	for _, p := range r.Pools {
		out = append(out, p.Targets...)
	}
	return out
}

// Pool returns the pool of a release, or nil.
func (r *Route) Pool(release string) *Pool {
	for i := range r.Pools {
		if r.Pools[i].Release == release {
			return &r.Pools[i]
		}
	}
	return nil
}
