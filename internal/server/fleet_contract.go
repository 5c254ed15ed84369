package server

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/fleet"
)

// releaseMigrations keeps the migrations of the releases this node runs, so
// that a heartbeat does not read the store for each: a release's record
// does not change its migrations once written.
type releaseMigrations struct {
	mu sync.Mutex
	m  map[string][]string // app/label → migrations
}

// runningReport is what the heartbeat says of the releases this node runs
// of the apps that use the database. It is bounded in time: a slow store
// read must not make the heartbeat late; the report is then left out and
// the other nodes' contracts wait for this node, naming it.
func (s *Server) runningReport() ([]fleet.Running, bool) {
	ctx, cancel := context.WithTimeout(s.ctx, time.Second)
	defer cancel()
	running, err := s.deployer.RunningReleases(ctx)
	if err != nil {
		return nil, false
	}
	c := &s.fleet.migrations
	out := make([]fleet.Running, 0, len(running))
	for _, r := range running {
		key := r.App + "/" + r.Release
		c.mu.Lock()
		migs, known := c.m[key]
		c.mu.Unlock()
		if !known {
			var err error
			migs, known, err = s.deployer.ReleaseMigrations(ctx, r.App, r.Release)
			if err != nil {
				return nil, false
			}
			if known {
				c.mu.Lock()
				if c.m == nil {
					c.m = map[string][]string{}
				}
				c.m[key] = migs
				c.mu.Unlock()
			}
		}
		out = append(out, fleet.Running{App: r.App, Release: r.Release, Instances: r.Instances, Migrations: migs, Known: known})
	}
	return out, true
}

// fleetContractBlockers names what the other nodes run that a contract of
// migrations must wait for: each release without all of them (or that
// its node has no record of), each lost node (what it runs is not known,
// and it may come back running an old release), and each node that does
// not report what it runs. A fleet that cannot be read is waited for too:
// a contract that drops a column an old instance elsewhere still uses
// cannot be undone.
func (s *Server) fleetContractBlockers(ctx context.Context, migrations []string) []string {
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	nodes, err := s.fleet.f.Nodes(qctx)
	if err != nil {
		return []string{fmt.Sprintf("the fleet's nodes, which cannot be read (%v)", err)}
	}
	var out []string
	for _, n := range nodes {
		switch {
		case n.Self:
			continue
		case n.Lost:
			out = append(out, fmt.Sprintf("node %s, lost (last heartbeat %s ago): what it runs is not known; bring it back or 'handoff fleet forget %s'", n.Name, n.Since.Round(time.Second), n.Name))
			continue
		case !n.RunningReported:
			out = append(out, fmt.Sprintf("node %s, which does not report what it runs (an older handoff, or its state store reads fail)", n.Name))
			continue
		}
		for _, r := range n.Running {
			if r.Known && containsAll(r.Migrations, migrations) {
				continue
			}
			what := fmt.Sprintf("node %s: app %s release %s", n.Name, r.App, r.Release)
			if r.Instances > 0 {
				what += fmt.Sprintf(" (%d instances)", r.Instances)
			}
			if !r.Known {
				what += " (no record of its migrations there)"
			}
			out = append(out, what)
		}
	}
	return out
}

func containsAll(have, want []string) bool {
	for _, m := range want {
		if !slices.Contains(have, m) {
			return false
		}
	}
	return true
}
