package switchover

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakePair is a Pair whose failures the test chooses: the engine's order
// and rollback rules, without servers (those are proven against real ones
// in the other tests).
type fakePair struct {
	mu                 sync.Mutex
	calls              []string
	promoteErr         error
	promoted, fenced   bool
	promoteLeavesWrite bool // a failed Promote that left the replica writable
	caughtUpDelay      time.Duration
	kind               string // "" is "fake"
}

func (f *fakePair) call(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, s)
}

func (f *fakePair) Kind() string {
	if f.kind == "" {
		return "fake"
	}
	return f.kind
}
func (f *fakePair) Check(context.Context, time.Duration) error { f.call("check"); return nil }
func (f *fakePair) Position(context.Context) (string, error)   { return "1", nil }
func (f *fakePair) Addrs() (string, string)                    { return "old:1", "new:1" }
func (f *fakePair) Close() error                               { return nil }
func (f *fakePair) Prepare(context.Context) error              { f.call("prepare"); return nil }
func (f *fakePair) Promoted(context.Context) (bool, error)     { return f.promoted, nil }
func (f *fakePair) Unfence(context.Context) error              { f.call("unfence"); f.fenced = false; return nil }
func (f *fakePair) Fence(context.Context) error                { f.call("fence"); f.fenced = true; return nil }
func (f *fakePair) CaughtUp(ctx context.Context, _ string) error {
	select {
	case <-time.After(f.caughtUpDelay):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *fakePair) Promote(context.Context) error {
	f.call("promote")
	if f.promoteErr != nil {
		f.promoted = f.promoteLeavesWrite
		return f.promoteErr
	}
	f.promoted = true
	return nil
}

// fakeEndpoint records its calls.
type fakeEndpoint struct {
	mu       sync.Mutex
	calls    []string
	pauseErr error
}

func (e *fakeEndpoint) Pause(ctx context.Context) error {
	e.mu.Lock()
	e.calls = append(e.calls, "pause")
	e.mu.Unlock()
	return e.pauseErr
}
func (e *fakeEndpoint) Repoint(addr string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.calls = append(e.calls, "repoint "+addr)
	return nil
}
func (e *fakeEndpoint) Resume() { e.mu.Lock(); e.calls = append(e.calls, "resume"); e.mu.Unlock() }

func steps(r Record) []Step {
	var s []Step
	for _, st := range r.Steps {
		s = append(s, st.Step)
	}
	return s
}

func TestEngineOrderAndRollbackRules(t *testing.T) {
	ctx := context.Background()
	opts := func(ep Endpoint, g Gate, j Journal) Options {
		return Options{Name: "main", From: "postgres://old", To: "postgres://new", Deadline: time.Second, Endpoint: ep, Gate: g, Journal: j}
	}

	t.Run("done", func(t *testing.T) {
		p, ep, g := &fakePair{}, &fakeEndpoint{}, &gate{}
		rec, err := Run(ctx, p, opts(ep, g, &memJournal{}))
		if err != nil {
			t.Fatal(err)
		}
		want := []Step{Holding, Fencing, CatchingUp, Promoting, Repointing, Resuming, Done}
		if !slices.Equal(steps(rec), want) {
			t.Fatalf("steps %v, want %v", steps(rec), want)
		}
		if !slices.Equal(ep.calls, []string{"pause", "repoint new:1", "resume"}) || g.releaseCall != 1 {
			t.Fatalf("endpoint %v, gate released %d", ep.calls, g.releaseCall)
		}
		if !slices.Equal(p.calls, []string{"check", "fence", "prepare", "promote"}) {
			t.Fatalf("pair %v", p.calls)
		}
	})

	t.Run("promotion fails, the replica still a replica: rolled back", func(t *testing.T) {
		p, ep, g := &fakePair{promoteErr: errors.New("boom")}, &fakeEndpoint{}, &gate{}
		rec, err := Run(ctx, p, opts(ep, g, &memJournal{}))
		var serr *Error
		if !errors.As(err, &serr) || !serr.RolledBack || rec.Step != RolledBack || p.fenced {
			t.Fatalf("err %v, step %s, fenced %v; want rolled back and unfenced", err, rec.Step, p.fenced)
		}
		if !slices.Equal(ep.calls, []string{"pause", "resume"}) || g.releaseCall != 1 {
			t.Fatalf("endpoint %v (never repointed), gate released %d", ep.calls, g.releaseCall)
		}
	})

	t.Run("promotion errs but the replica is promoted: finished", func(t *testing.T) {
		p, ep := &fakePair{promoteErr: errors.New("boom"), promoteLeavesWrite: true}, &fakeEndpoint{}
		rec, err := Run(ctx, p, opts(ep, &gate{}, &memJournal{}))
		if err != nil || !p.fenced || rec.Step != Done || !slices.Equal(ep.calls, []string{"pause", "repoint new:1", "resume"}) {
			t.Fatalf("err %v, step %s, fenced %v, endpoint %v; want done on the new primary, the old one fenced", err, rec.Step, p.fenced, ep.calls)
		}
	})

	t.Run("pause fails: rolled back, resumed, never fenced", func(t *testing.T) {
		p, ep, g := &fakePair{}, &fakeEndpoint{pauseErr: errors.New("stuck")}, &gate{}
		_, err := Run(ctx, p, opts(ep, g, nil))
		if err == nil || !strings.Contains(err.Error(), "pause the database endpoint") || slices.Contains(p.calls, "fence") {
			t.Fatalf("err %v, pair %v", err, p.calls)
		}
		if !slices.Equal(ep.calls, []string{"pause", "resume"}) || g.releaseCall != 1 {
			t.Fatalf("endpoint %v, gate released %d", ep.calls, g.releaseCall)
		}
	})

	t.Run("an unfinished switchover refuses the next", func(t *testing.T) {
		j := &memJournal{}
		_ = j.Put(ctx, JournalKind, "main", Record{Name: "main", Step: CatchingUp})
		_, err := Run(ctx, &fakePair{}, opts(nil, nil, j))
		if err == nil || !strings.Contains(err.Error(), "still at step catching-up") {
			t.Fatalf("err %v", err)
		}
	})

	t.Run("recovery at promoting whose promotion fails: rolled back to the old primary", func(t *testing.T) {
		p, ep, j := &fakePair{promoteErr: errors.New("boom"), fenced: true}, &fakeEndpoint{}, &memJournal{}
		rec := Record{Name: "main", Step: Promoting, FromAddr: "old:1", ToAddr: "new:1"}
		rec, err := Recover(ctx, rec, p, ep, j)
		if err != nil || rec.Step != RolledBack || p.fenced || !slices.Equal(ep.calls, []string{"repoint old:1"}) {
			t.Fatalf("err %v, step %s, fenced %v, endpoint %v", err, rec.Step, p.fenced, ep.calls)
		}
	})
}
