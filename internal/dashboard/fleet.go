package dashboard

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/fleet"
)

// fleetView is the nodes sharing a Postgres state, as tiles, and for each
// app whether every live node runs one release. It is shown only for a
// fleet of more than one node: a single node's page is the fleet.
type fleetView struct {
	Nodes []nodeView
	Apps  []fleetAppView
	Lost  int
}

// nodeView is one node's tile.
type nodeView struct {
	Name, Host string
	Self, Lost bool
	// Age is how long ago its last heartbeat was, to the second (so that
	// the tile changes once a second at most, not with every heartbeat).
	Age string
	// Drain is its place at the load balancer: ready, draining, drained,
	// maint.
	Drain    string
	Gateway  string
	Releases []appReleases
}

// appReleases is what one node runs of one app.
type appReleases struct {
	App      string
	Releases string // "v42 ×4", or "v42 ×2+v41 ×2" while a rollout is under way there
}

// fleetAppView is one app's verdict across the live nodes.
type fleetAppView struct {
	App string
	// One is the release every live node runs, "" when they differ.
	One string
	// Mixed says which node runs what when they differ: "v42 on web-1,
	// web-2; v41 on web-3".
	Mixed string
}

// newFleetView arranges the nodes; nil unless there is more than one.
func newFleetView(nodes []fleet.Node) *fleetView {
	if len(nodes) < 2 {
		return nil
	}
	v := &fleetView{}
	onApp := map[string]map[string][]string{} // app → releases → live nodes
	for _, n := range nodes {
		nv := nodeView{Name: n.Name, Host: n.Host, Self: n.Self, Lost: n.Lost, Drain: string(n.Drain),
			Age: n.Since.Round(time.Second).String(), Gateway: strings.Join(n.Gateway, ", ")}
		if nv.Drain == "" {
			nv.Drain = string(fleet.Ready)
		}
		if n.Lost {
			v.Lost++
		}
		for _, app := range slices.Sorted(maps.Keys(n.Releases)) {
			rels := n.Releases[app]
			nv.Releases = append(nv.Releases, appReleases{App: app, Releases: n.ReleasesOf(app)})
			if n.Lost {
				continue // what it last said is no longer known to run
			}
			if onApp[app] == nil {
				onApp[app] = map[string][]string{}
			}
			key := strings.Join(rels, "+")
			onApp[app][key] = append(onApp[app][key], n.Name)
		}
		v.Nodes = append(v.Nodes, nv)
	}
	live := len(nodes) - v.Lost
	for _, app := range slices.Sorted(maps.Keys(onApp)) {
		byRel := onApp[app]
		av := fleetAppView{App: app}
		if len(byRel) == 1 {
			for rel, on := range byRel {
				if len(on) == live && !strings.Contains(rel, "+") {
					av.One = rel
				}
			}
		}
		if av.One == "" {
			var parts []string
			var seen []string
			for _, rel := range slices.Sorted(maps.Keys(byRel)) {
				parts = append(parts, rel+" on "+strings.Join(byRel[rel], ", "))
				seen = append(seen, byRel[rel]...)
			}
			var without []string
			for _, n := range nodes {
				if !n.Lost && !slices.Contains(seen, n.Name) {
					without = append(without, n.Name)
				}
			}
			if len(without) > 0 {
				parts = append(parts, "none on "+strings.Join(without, ", "))
			}
			av.Mixed = strings.Join(parts, "; ")
		}
		v.Apps = append(v.Apps, av)
	}
	return v
}
