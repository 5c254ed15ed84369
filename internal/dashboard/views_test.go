package dashboard

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/dbproxy"
	"github.com/handoff-dev/handoff/internal/fleet"
)

// fakeDBAPI is a fakeAPI that also answers db status, as the server does
// when the config has databases:.
type fakeDBAPI struct {
	*fakeAPI
	dbMu  sync.Mutex
	db    control.DBStatus
	dbErr error
}

func (f *fakeDBAPI) DBStatus(ctx context.Context) (*control.DBStatus, error) {
	f.dbMu.Lock()
	defer f.dbMu.Unlock()
	if f.dbErr != nil {
		return nil, f.dbErr
	}
	st := f.db
	st.Databases = append([]control.DatabaseStatus(nil), f.db.Databases...)
	return &st, nil
}

func (f *fakeDBAPI) setDB(change func(*control.DBStatus)) {
	f.dbMu.Lock()
	defer f.dbMu.Unlock()
	change(&f.db)
}

func dur(d time.Duration) *time.Duration { return &d }
func i64(n int64) *int64                 { return &n }

// runningSwitchover is a Postgres endpoint in the middle of a switchover:
// held, catching up.
func runningSwitchover(started time.Time) control.DatabaseStatus {
	return control.DatabaseStatus{
		Stats:  dbproxy.Stats{Name: "main", Kind: "postgres", Primary: "10.0.0.1:5432", Paused: true, Connections: 9, Idle: 3, InTransaction: 2, Held: 4, Moved: 5},
		Listen: "127.0.0.1:6432", Role: "primary",
		Replicas: []control.Replica{
			{Source: "pg_stat_replication", Addr: "10.0.0.2:40112", Name: "walreceiver", State: "streaming, async", ReplayLag: dur(1500 * time.Microsecond), LagBytes: i64(2048)},
			{Source: "pg_stat_replication", Addr: "10.0.0.3:40113", Name: "sub_main", State: "streaming, async"},
		},
		Switchover: &control.SwitchoverStatus{Kind: "postgres-physical", FromAddr: "10.0.0.1:5432", ToAddr: "10.0.0.2:5432",
			Deadline: 4 * time.Second, Started: started, Step: "catching-up", Running: true,
			Steps: []control.SwitchoverStep{{Step: "holding", Took: 200 * time.Millisecond}, {Step: "fencing", At: 200 * time.Millisecond, Took: 100 * time.Millisecond},
				{Step: "catching-up", At: 300 * time.Millisecond}}},
	}
}

// TestPageDatabases: an endpoint shows its primary and role, the bar and
// counts of its connections, its replicas with their lag, and a running
// switchover as a timeline against its deadline, step by step.
func TestPageDatabases(t *testing.T) {
	api := &fakeDBAPI{fakeAPI: newFakeAPI()}
	api.db.Databases = []control.DatabaseStatus{runningSwitchover(time.Now().Add(-time.Second))}
	s := newTestServer(t, api)
	resp, body := s.do(t, "GET", "/", "", s.login(t, "bob"))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %s", resp.Status)
	}
	for _, want := range []string{
		`<section id="databases" class="card databases" aria-labelledby="databases-h">`, // shown
		`<article class="endpoint" id="db-main" data-role="primary">`, `<span class="role role-primary">primary</span>`, "paused",
		"primary <code>10.0.0.1:5432</code> · the app connects to <code>127.0.0.1:6432</code>",
		`idle</span> 3`, `in tx</span> 2`, `held</span> 4`, `moved</span> 5`,
		`<rect class="c-held" x="55.5" width="44.4" height="10"><title>4 held</title></rect>`, // the connections' bar
		"<code>10.0.0.2:40112</code> walreceiver", `<span class="lag">replay 1.5ms · 2.0 KiB behind</span>`,
		`<span class="lag">caught up (not measured while idle)</span>`,
		`<div class="switchover" data-state="running" data-step="catching-up">`, "running: catching-up", "of the 4s deadline",
		`<rect class="sw-done" x="0" width="5" height="10"><title>holding &#43;0s, took 200ms</title></rect>`, // the timeline, on the deadline's scale
		`<rect class="sw-running" x="7.5"`, `<line class="deadline" x1="100" x2="100"`,
		`<li class="step state-running" data-step="catching-up" data-state="running">`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if !strings.Contains(body, `<section id="fleet" class="card fleet" aria-labelledby="fleet-h" hidden>`) {
		t.Error("a node without a fleet shows a fleet section")
	}

	// The last one, rolled back: its outcome and error; a probe's error in place.
	api.setDB(func(st *control.DBStatus) {
		d := &st.Databases[0]
		d.Role, d.RoleError, d.ReplicasError, d.Replicas = "unknown", "dial tcp 10.0.0.1:5432: i/o timeout", "dial tcp 10.0.0.1:5432: i/o timeout", nil
		sw := *d.Switchover
		sw.Running, sw.Step, sw.Error = false, "rolled-back", "switchover rolled back at catching-up: deadline 4s passed"
		sw.Steps = append(sw.Steps[:2:2], control.SwitchoverStep{Step: "catching-up", At: 300 * time.Millisecond, Took: 3700 * time.Millisecond},
			control.SwitchoverStep{Step: "rolling-back", At: 4 * time.Second, Took: 50 * time.Millisecond}, control.SwitchoverStep{Step: "rolled-back", At: 4050 * time.Millisecond})
		d.Switchover = &sw
	})
	_, body = s.do(t, "GET", "/", "", s.login(t, "bob"))
	for _, want := range []string{
		`<span class="role role-unknown">unknown</span>`, "cannot ask the primary for its role: dial tcp 10.0.0.1:5432: i/o timeout",
		"cannot read the replicas: dial tcp", `data-state="rolled-back"`, "last switchover", `<span class="state state-failed">rolled-back</span>`,
		"4.05s (deadline 4s)", "switchover rolled back at catching-up: deadline 4s passed", `<rect class="sw-failed"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page (rolled back) lacks %q", want)
		}
	}

	// db status failing: said in the section, the page still served.
	api.setDB(func(*control.DBStatus) {})
	api.dbErr = errors.New("the server went away")
	_, body = s.do(t, "GET", "/", "", s.login(t, "bob"))
	if !strings.Contains(body, "read db status: the server went away") || !strings.Contains(body, `id="app-web-state"`) {
		t.Error("a failing db status should be said in its section, the rest of the page served")
	}
}

// TestPageNoDatabases: without databases: (no db status, or no endpoint)
// the section is hidden.
func TestPageNoDatabases(t *testing.T) {
	for name, api := range map[string]control.API{"no db status": newFakeAPI(), "no endpoint": &fakeDBAPI{fakeAPI: newFakeAPI()}} {
		s := newTestServer(t, api)
		_, body := s.do(t, "GET", "/", "", s.login(t, "bob"))
		if !strings.Contains(body, `<section id="databases" class="card databases" aria-labelledby="databases-h" hidden>`) || strings.Contains(body, `class="endpoint"`) {
			t.Errorf("%s: the databases section is shown", name)
		}
	}
}

// TestStreamSwitchoverLive: as a switchover goes from step to step, the
// event stream sends the databases part again with the new step.
func TestStreamSwitchoverLive(t *testing.T) {
	api := &fakeDBAPI{fakeAPI: newFakeAPI()}
	api.db.Databases = []control.DatabaseStatus{runningSwitchover(time.Now())}
	s := newTestServer(t, api)
	st := s.stream(t, "/events?after=0", s.login(t, "alice"))
	if first := st.expect("status"); !strings.Contains(first.data, `data-step="catching-up"`) {
		t.Fatalf("the first status lacks the switchover:\n%s", first.data)
	}
	api.setDB(func(db *control.DBStatus) {
		d := runningSwitchover(db.Databases[0].Switchover.Started)
		sw := d.Switchover
		sw.Step = "promoting"
		sw.Steps[2].Took = 400 * time.Millisecond
		sw.Steps = append(sw.Steps, control.SwitchoverStep{Step: "promoting", At: 700 * time.Millisecond})
		db.Databases[0] = d
	})
	deadline := time.Now().Add(5 * time.Second)
	for {
		m := st.expect("status")
		if strings.Contains(m.data, `data-step="promoting"`) {
			if !strings.Contains(m.data, `<div id="databases"`) && !strings.Contains(m.data, `<section id="databases"`) {
				t.Errorf("the step came in another part:\n%s", m.data)
			}
			if !strings.Contains(m.data, "took 400ms") {
				t.Errorf("catching-up's time is not shown:\n%s", m.data)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream did not send the new step")
		}
	}
}

// TestPageFleet: every node as a tile with its heartbeat's age, live or
// LOST, its place at the load balancer and its releases; per app, one
// release across the live nodes or what is mixed.
func TestPageFleet(t *testing.T) {
	api := newFakeAPI()
	api.setStatus(func(st *control.Status) {
		st.Node = "web-1"
		st.Nodes = []fleet.Node{
			{Name: "web-1", Host: "h1", Self: true, Since: 200 * time.Millisecond, Report: fleet.Report{Drain: fleet.Ready, Releases: map[string][]string{"web": {"v42"}, "api": {"a7"}}}},
			{Name: "web-2", Host: "h2", Since: 700 * time.Millisecond, Report: fleet.Report{Drain: fleet.Drained, Releases: map[string][]string{"web": {"v41"}, "api": {"a7"}}}},
			{Name: "web-3", Host: "h3", Lost: true, Since: 12 * time.Second, Report: fleet.Report{Drain: fleet.Ready, Releases: map[string][]string{"web": {"v40"}, "api": {"a6"}}}},
		}
	})
	s := newTestServer(t, api)
	_, body := s.do(t, "GET", "/", "", s.login(t, "bob"))
	for _, want := range []string{
		`<section id="fleet" class="card fleet" aria-labelledby="fleet-h">`, `3 nodes, <strong class="lost-count">1 lost</strong>`,
		`<li class="node-tile" data-node="web-1" data-lost="false" data-drain="ready">`, `<span class="self">this node</span>`,
		`<li class="node-tile lost" data-node="web-3" data-lost="true" data-drain="ready">`, `<span class="liveness">LOST</span>`, "12s ago",
		`data-node="web-2" data-lost="false" data-drain="drained"`, `<span class="drain drain-drained">drained</span>`,
		`<span class="k">web</span> v41`,
		// a lost node's releases are not counted: api runs a7 on every live node
		`<li class="verdict" data-app="api"><strong>api</strong>: every node runs <strong>a7</strong></li>`,
		`<li class="verdict mixed" data-app="web"><strong>web</strong>: mixed: v41 on web-2; v42 on web-1</li>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %q", want)
		}
	}

	// One node is no fleet: the section is hidden.
	api.setStatus(func(st *control.Status) { st.Nodes = st.Nodes[:1] })
	_, body = s.do(t, "GET", "/", "", s.login(t, "bob"))
	if !strings.Contains(body, `<section id="fleet" class="card fleet" aria-labelledby="fleet-h" hidden>`) {
		t.Error("a single node shows a fleet section")
	}
}

// TestFleetVerdict: a live node without the app, or in the middle of a
// rollout, makes it mixed.
func TestFleetVerdict(t *testing.T) {
	v := newFleetView([]fleet.Node{
		{Name: "a", Report: fleet.Report{Releases: map[string][]string{"web": {"v2", "v1"}}}},
		{Name: "b", Report: fleet.Report{Releases: map[string][]string{"web": {"v2", "v1"}}}},
		{Name: "c", Report: fleet.Report{Releases: map[string][]string{"jobs": {"j1"}}}},
	})
	got := map[string]string{}
	for _, a := range v.Apps {
		got[a.App] = a.One + "|" + a.Mixed
	}
	if got["web"] != "|v2+v1 on a, b; none on c" || got["jobs"] != "|j1 on c; none on a, b" {
		t.Errorf("verdicts: %v", got)
	}
}

// TestSwitchoverViewWindow: a migrate-on-copy is drawn against its
// read-only window, not the deadline of its start.
func TestSwitchoverViewWindow(t *testing.T) {
	start := time.Now()
	v := newSwitchoverView(&control.SwitchoverStatus{Deadline: 5 * time.Second, Migrate: "/srv/migrations", Window: 10 * time.Second,
		Started: start, Step: "migrating", Running: true,
		Steps: []control.SwitchoverStep{{Step: "read-only", Took: time.Second}, {Step: "migrating", At: time.Second}}}, start.Add(2*time.Second))
	if v.Limit != 10*time.Second || v.LimitName != "window" || v.LimitX != 100 {
		t.Errorf("limit %v %s at %v", v.Limit, v.LimitName, v.LimitX)
	}
	if s := v.Steps[1]; s.X != 10 || s.W != 10 || s.Class != "running" || v.Elapsed != "2s" {
		t.Errorf("the running step: %+v, elapsed %s", s, v.Elapsed)
	}
}
