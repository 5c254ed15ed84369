package dashboard

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/store"
	"github.com/handoff-dev/handoff/internal/supervisor"
)

// fakeAPI is a control.API whose answers a test sets. A fake is enough
// here: the browser test (e2e) drives the dashboard against the real server.
type fakeAPI struct {
	mu        sync.Mutex
	status    control.Status
	statusErr error
	events    []store.Event
	modes     []string // "mode app on" of each SetMode
}

var _ control.API = (*fakeAPI)(nil)

func newFakeAPI() *fakeAPI {
	since := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	return &fakeAPI{status: control.Status{PID: 4242, Apps: []control.AppStatus{
		{
			AppStatus: gateway.AppStatus{App: "web", Kind: "http", Mode: "normal", Pools: []gateway.PoolStatus{{Release: "v2", Weight: 100,
				Targets: []gateway.TargetStatus{{Addr: "127.0.0.1:41000", Release: "v2", Healthy: true, Inflight: 3}}}}},
			Current: "v2", Previous: "v1",
			Instances: []supervisor.Instance{{Spec: supervisor.Spec{App: "web", Release: "v2", Index: 0, Brick: 1}, ID: "web-v2-0", Port: 41000, PID: 5150, State: supervisor.StateRunning, Since: since}},
			Deploy: &deploy.Deploy{ID: "web-7", App: "web", Strategy: "rolling", From: &deploy.Release{Label: "v1"}, To: deploy.Release{Label: "v2"},
				State: deploy.Running, Started: since, Steps: []*deploy.Step{
					{Name: deploy.StepStart, Brick: 1, Release: "v2", State: deploy.Done, Started: since, Finished: since.Add(time.Second)},
					{Name: deploy.StepCheck, Brick: 1, Release: "v2", State: deploy.Running, Started: since.Add(time.Second)},
				}},
		},
		{
			AppStatus: gateway.AppStatus{App: "jobs", Kind: "worker", Mode: "normal"},
			Current:   "v1",
			Instances: []supervisor.Instance{{Spec: supervisor.Spec{App: "jobs", Release: "v1"}, ID: "jobs-v1-0", PID: 5151, State: supervisor.StateRunning, Since: since}},
		},
	}}}
}

// setStatus changes the status under the lock.
func (f *fakeAPI) setStatus(change func(*control.Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(&f.status)
}

// appendEvent adds an event with the next ID.
func (f *fakeAPI) appendEvent(app, kind, actor, msg string) store.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	id := int64(1)
	if n := len(f.events); n > 0 {
		id = f.events[n-1].ID + 1
	}
	e := store.Event{ID: id, Time: time.Now().UTC(), App: app, Kind: kind, Actor: actor, Message: msg}
	f.events = append(f.events, e)
	return e
}

func (f *fakeAPI) Status(ctx context.Context, app string) (*control.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.statusErr != nil {
		return nil, f.statusErr
	}
	st := f.status
	st.Apps = append([]control.AppStatus(nil), f.status.Apps...)
	return &st, nil
}

func (f *fakeAPI) SetMode(ctx context.Context, mode string, req control.ModeRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	on := "off"
	if req.On {
		on = "on"
	}
	f.modes = append(f.modes, mode+" "+req.App+" "+on)
	return nil
}

func (f *fakeAPI) Events(ctx context.Context, after int64, limit int) (*control.Events, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := &control.Events{Events: []store.Event{}}
	for _, e := range f.events {
		if e.ID > after && len(out.Events) < limit {
			out.Events = append(out.Events, e)
		}
	}
	return out, nil
}

var errNotFaked = errors.New("not faked")

func (f *fakeAPI) Deploy(context.Context, control.DeployRequest, func(deploy.Progress)) (*deploy.Deploy, error) {
	return nil, errNotFaked
}

func (f *fakeAPI) Rollback(context.Context, control.RollbackRequest, func(deploy.Progress)) (*deploy.Deploy, error) {
	return nil, errNotFaked
}

func (f *fakeAPI) Releases(context.Context, string) (*control.Releases, error) {
	return nil, errNotFaked
}

func (f *fakeAPI) Logs(context.Context, io.Writer, string, int, bool) error { return errNotFaked }

func (f *fakeAPI) Upgrade(context.Context) (*control.Upgrade, error) { return nil, errNotFaked }

func (f *fakeAPI) FleetDrain(context.Context, control.FleetRequest) (*control.FleetStatus, error) {
	return nil, errNotFaked
}

func (f *fakeAPI) FleetForget(context.Context, control.FleetRequest) (*control.FleetStatus, error) {
	return nil, errNotFaked
}
