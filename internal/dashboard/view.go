package dashboard

import (
	"cmp"
	"slices"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/supervisor"
)

// statusView is control.Status arranged for the page: each app with its
// instances joined to the gateway's targets.
type statusView struct {
	PID        int
	Apps       []appView
	Migrations []control.Migration
	Warnings   []string
	// Problem is why the status could not be read, if it could not.
	Problem string
	// Fleet is the nodes sharing the state (more than one); Databases the
	// database endpoints. Each is nil, and its section hidden, without.
	Fleet     *fleetView
	Databases *databasesView
}

// appView is one app.
type appView struct {
	Name, Kind, Mode  string
	Hosts             []string
	Current, Previous string
	Modes             gateway.Modes
	Held              int
	Deploy            *deployView
	Instances         []instanceView
	// Running counts the instances of each release, current first: more
	// than one means a rollout has not finished (or a worker still drains).
	Running []releaseCount
	// Health is each release's answers and latency, side by side.
	Health []healthView
	// TCP is a tcp app's listeners and counts (tcp.go).
	TCP *tcpView
}

// releaseCount is how many instances run a release.
type releaseCount struct {
	Release string
	N       int
}

// Mixed reports whether the app runs more than one release.
func (a appView) Mixed() bool { return len(a.Running) > 1 }

// Worker reports whether the app gets no traffic (and so has no modes).
func (a appView) Worker() bool { return a.Kind == "worker" }

// NoModes reports whether the gateway's modes do not apply to the app: a
// worker gets no traffic, a tcp app's does not pass the gateway.
func (a appView) NoModes() bool { return a.Worker() || a.TCP != nil }

// StateID and ModesID are the ids of the app's two parts of the page: the
// event stream replaces each by id when it changes.
func (a appView) StateID() string { return "app-" + a.Name + "-state" }

// ModesID: see StateID.
func (a appView) ModesID() string { return "app-" + a.Name + "-modes" }

// instanceView is one instance or worker, or an external target.
type instanceView struct {
	Name    string // the instance's ID, or the target's address
	Addr    string // where the gateway sends its traffic ("" for workers)
	Release string
	Brick   int    // 1-based, 0 when unknown (an external target)
	State   string // the supervisor's state, or "external"
	// Health is "healthy", "failing" or "" (no check: a worker, or a
	// target the gateway does not route to).
	Health, HealthDetail string
	Inflight             int64
	DrainingSince        time.Time
	Restarts             int
	PID                  int
	LastExit             string
	// TCP is a tcp app's counts for this target.
	TCP *tcpTargetView
}

// deployView is the deploy in progress, or the last one.
type deployView struct {
	ID, Strategy, State, Error string
	From, To                   string
	Rollback, RollingBack      bool
	Started, Finished          time.Time
	Steps                      []stepView
	Done                       int
}

// Active reports whether the deploy has not ended: running, or an open canary.
func (d deployView) Active() bool {
	return d.State == string(deploy.Running) || d.State == string(deploy.CanaryWait)
}

// stepView is one step of a deploy.
type stepView struct {
	Label, State, Detail string
	Started, Finished    time.Time
}

// newStatusView arranges st for the page.
func newStatusView(st *control.Status) statusView {
	v := statusView{PID: st.PID, Migrations: st.Migrations, Warnings: st.Warnings, Fleet: newFleetView(st.Nodes)}
	targets := map[string]gateway.TargetStatus{}
	for _, a := range st.Apps {
		for _, p := range a.Pools {
			for _, t := range p.Targets {
				targets[t.Addr] = t
			}
		}
		for _, t := range a.Draining {
			targets[t.Addr] = t
		}
	}
	for _, a := range st.Apps {
		v.Apps = append(v.Apps, newAppView(a, targets))
	}
	return v
}

func newAppView(a control.AppStatus, targets map[string]gateway.TargetStatus) appView {
	v := appView{Name: a.App, Kind: a.Kind, Mode: a.Mode, Hosts: a.Hosts, Current: a.Current, Previous: a.Previous,
		Modes: a.Modes, Held: a.Held, Health: newHealthViews(a.Releases), TCP: newTCPView(a.TCP)}
	if a.Deploy != nil {
		v.Deploy = newDeployView(a.Deploy)
	}
	seen := map[string]bool{}
	for _, inst := range a.Instances {
		iv := newInstanceView(inst)
		if t, ok := targets[inst.Addr()]; ok && inst.Port != 0 {
			seen[t.Addr] = true
			withTarget(&iv, t)
		}
		v.Instances = append(v.Instances, iv)
	}
	// Targets that no instance of handoff's runs: external ones.
	for _, t := range appTargets(a) {
		if !seen[t.Addr] {
			seen[t.Addr] = true
			iv := instanceView{Name: t.Addr, Release: t.Release, State: "external"}
			withTarget(&iv, t)
			v.Instances = append(v.Instances, iv)
		}
	}
	current := a.Current
	slices.SortStableFunc(v.Instances, func(x, y instanceView) int {
		// The current release first, then the others by name.
		return cmp.Or(cmp.Compare(boolInt(x.Release != current), boolInt(y.Release != current)),
			cmp.Compare(x.Release, y.Release))
	})
	v.Running = running(v.Instances)
	withTCP(v.Instances, v.TCP)
	return v
}

// running counts instances by release, in the order of instances.
func running(instances []instanceView) []releaseCount {
	var out []releaseCount
	for _, iv := range instances {
		if iv.Release == "" {
			continue
		}
		i := slices.IndexFunc(out, func(c releaseCount) bool { return c.Release == iv.Release })
		if i < 0 {
			out = append(out, releaseCount{Release: iv.Release})
			i = len(out) - 1
		}
		out[i].N++
	}
	return out
}

func appTargets(a control.AppStatus) []gateway.TargetStatus {
	var out []gateway.TargetStatus
	for _, p := range a.Pools {
		out = append(out, p.Targets...)
	}
	return append(out, a.Draining...)
}

func newInstanceView(inst supervisor.Instance) instanceView {
	return instanceView{Name: inst.ID, Addr: inst.Addr(), Release: inst.Release, Brick: inst.Brick,
		State: string(inst.State), DrainingSince: inst.DrainingSince, Restarts: inst.Restarts, PID: inst.PID, LastExit: inst.LastExit}
}

// withTarget adds what the gateway knows of an instance's target.
func withTarget(iv *instanceView, t gateway.TargetStatus) {
	iv.Addr, iv.Inflight = t.Addr, t.Inflight
	if iv.Release == "" {
		iv.Release = t.Release
	}
	iv.Health, iv.HealthDetail = "healthy", ""
	if !t.Healthy {
		iv.Health, iv.HealthDetail = "failing", t.LastError
	}
	if t.Draining && iv.DrainingSince.IsZero() {
		iv.DrainingSince = t.Since
	}
}

func newDeployView(d *deploy.Deploy) *deployView {
	v := &deployView{ID: d.ID, Strategy: string(d.Strategy), State: string(d.State), Error: d.Error, To: d.To.Label,
		Rollback: d.Rollback, RollingBack: d.RollingBack, Started: d.Started, Finished: d.Finished}
	if d.From != nil {
		v.From = d.From.Label
	}
	for _, s := range d.Steps {
		v.Steps = append(v.Steps, stepView{Label: s.String(), State: string(s.State), Detail: s.Detail, Started: s.Started, Finished: s.Finished})
		if s.State == deploy.Done {
			v.Done++
		}
	}
	return v
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}
