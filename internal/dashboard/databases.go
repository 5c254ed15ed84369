package dashboard

import (
	"context"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
)

// databasesView is the database endpoints (databases: in the config): nil
// when there are none, and then the section is hidden.
type databasesView struct {
	// Problem is why db status could not be read.
	Problem   string
	Endpoints []endpointView
}

// endpointView is one endpoint: its primary, role, replicas, connections
// and switchover.
type endpointView struct {
	control.DatabaseStatus
	Replicas   []replicaView
	Switchover *switchoverView
	// Conns is the connections as one bar: idle, in a transaction, held,
	// logging in.
	Conns []connBar
}

// connBar is one part of the connections' bar, 0–100.
type connBar struct {
	Class, Label string
	X, W         float64
}

func connBars(d control.DatabaseStatus) []connBar {
	total := d.Idle + d.InTransaction + d.Held + d.Starting
	if total == 0 {
		return nil
	}
	var out []connBar
	x := 0.0
	for _, p := range []struct {
		class, label string
		n            int
	}{{"idle", "idle", d.Idle}, {"intx", "in a transaction", d.InTransaction}, {"held", "held", d.Held}, {"starting", "logging in", d.Starting}} {
		if p.n == 0 {
			continue
		}
		w := math.Round(float64(p.n)*1000/float64(total)) / 10
		out = append(out, connBar{Class: p.class, Label: fmt.Sprintf("%d %s", p.n, p.label), X: x, W: w})
		x += w
	}
	return out
}

// replicaView is one replica with its lag in words.
type replicaView struct {
	control.Replica
	Lag string
}

// switchoverView is a switchover as a timeline: each step a bar as long as
// it took, on a scale of the deadline (or of the whole, when longer).
type switchoverView struct {
	*control.SwitchoverStatus
	// State is running, done or rolled-back (the final step).
	State string
	Steps []swStepView
	// Limit is what bounds it: the deadline, or a migrate-on-copy's
	// read-only window; LimitName says which. LimitX is where it falls on
	// the timeline, 0–100.
	Limit     time.Duration
	LimitName string
	LimitX    float64
	// Elapsed is the time since the start, while it runs; Took the whole,
	// once it ended.
	Elapsed, Took string
}

// swStepView is one step on the timeline.
type swStepView struct {
	Step    string
	At      string // "+120ms"
	Took    string // "" for the step now
	Current bool
	// Class is done, running (the step now) or failed (a rollback's).
	Class string
	X, W  float64 // the bar, 0–100
}

// dbTimeout bounds reading db status for the page: the server bounds each
// probe by 2 s, this leaves it room.
const dbTimeout = 4 * time.Second

// dbView reads db status from api when it serves one.
func dbView(ctx context.Context, api control.API, now time.Time) *databasesView {
	dbs, ok := api.(control.DBStatusAPI)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	st, err := dbs.DBStatus(ctx)
	if err != nil {
		return &databasesView{Problem: "read db status: " + err.Error()}
	}
	return newDatabasesView(st, now)
}

// newDatabasesView arranges st for the page; nil when there is no endpoint.
func newDatabasesView(st *control.DBStatus, now time.Time) *databasesView {
	if st == nil || len(st.Databases) == 0 {
		return nil
	}
	v := &databasesView{}
	for _, d := range st.Databases {
		ev := endpointView{DatabaseStatus: d, Conns: connBars(d)}
		for _, r := range d.Replicas {
			ev.Replicas = append(ev.Replicas, replicaView{Replica: r, Lag: replicaLag(r)})
		}
		if d.Switchover != nil {
			ev.Switchover = newSwitchoverView(d.Switchover, now)
		}
		v.Endpoints = append(v.Endpoints, ev)
	}
	return v
}

// replicaLag is what the replica's source measured of its lag.
func replicaLag(r control.Replica) string {
	var parts []string
	if r.ReplayLag != nil {
		parts = append(parts, "replay "+short(*r.ReplayLag))
	}
	if r.WriteLag != nil && r.ReplayLag == nil {
		parts = append(parts, "write "+short(*r.WriteLag))
	}
	if r.LagBytes != nil {
		parts = append(parts, byteSize(*r.LagBytes)+" behind")
	}
	if r.SecondsBehind != nil {
		parts = append(parts, fmt.Sprintf("%d s behind", *r.SecondsBehind))
	}
	switch {
	case len(parts) > 0:
		return strings.Join(parts, " · ")
	case r.Source == "replica hosts":
		return "the primary does not know its lag"
	case r.Error == "":
		return "caught up (not measured while idle)"
	}
	return ""
}

// short writes a duration to about three digits: 234µs, 1.2ms, 3.4s.
func short(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.Round(time.Microsecond).String()
	case d < time.Second:
		return d.Round(100 * time.Microsecond).String()
	}
	return d.Round(10 * time.Millisecond).String()
}

func newSwitchoverView(sw *control.SwitchoverStatus, now time.Time) *switchoverView {
	v := &switchoverView{SwitchoverStatus: sw, State: sw.Step}
	if sw.Running {
		v.State = "running"
	}
	// The whole: up to now while it runs, else to the final step.
	var end time.Duration
	if n := len(sw.Steps); n > 0 {
		end = sw.Steps[n-1].At
	}
	if sw.Running {
		// To the tenth of a second: the part changes as the switchover
		// goes on, not with every poll of the page.
		end = max(end, now.Sub(sw.Started).Truncate(100*time.Millisecond))
		v.Elapsed = short(end)
	} else {
		v.Took = short(end)
	}
	v.Limit, v.LimitName = sw.Deadline, "deadline"
	if sw.Migrate != "" && sw.Window > 0 {
		v.Limit, v.LimitName = sw.Window, "window"
	}
	scale := max(v.Limit, end, time.Millisecond)
	if v.Limit > 0 {
		v.LimitX = pct(v.Limit, scale)
	}
	for i, s := range sw.Steps {
		sv := swStepView{Step: s.Step, At: "+" + short(s.At), X: pct(s.At, scale)}
		stop := end
		if i+1 < len(sw.Steps) {
			stop = sw.Steps[i+1].At
			sv.Took = short(s.Took)
		} else {
			sv.Current = sw.Running
		}
		sv.W = pct(stop-s.At, scale)
		switch {
		case sv.Current:
			sv.Class = "running"
		case s.Step == "rolling-back" || s.Step == "rolled-back":
			sv.Class = "failed"
		default:
			sv.Class = "done"
		}
		v.Steps = append(v.Steps, sv)
	}
	return v
}

// pct is d as a share of scale, 0–100, to a tenth.
func pct(d, scale time.Duration) float64 {
	return math.Round(math.Min(100, math.Max(0, float64(d)*100/float64(scale)))*10) / 10
}
