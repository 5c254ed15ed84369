package deploy

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/store"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// savedDeploys keeps every deploy written to the store, as written.
type savedDeploys struct {
	store.Store
	mu   sync.Mutex
	seen []Deploy
}

func (s *savedDeploys) PutAll(ctx context.Context, docs ...store.Put) error {
	for _, d := range docs {
		if dep, ok := d.Value.(*Deploy); ok {
			s.mu.Lock()
			c := *dep
			c.Steps = nil
			for _, st := range dep.Steps {
				cs := *st
				c.Steps = append(c.Steps, &cs)
			}
			s.seen = append(s.seen, c)
			s.mu.Unlock()
		}
	}
	return s.Store.PutAll(ctx, docs...)
}

// targetsDeployer is a Deployer of one app "web" of external targets,
// on a SQLite store that wrap wraps, and the addresses of n healthy
// targets to deploy.
func targetsDeployer(t *testing.T, n int, wrap func(store.Store) store.Store) (*Deployer, []string) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, testdb.SQLite(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	var addrs []string
	for range n {
		b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
		t.Cleanup(b.Close)
		addrs = append(addrs, strings.TrimPrefix(b.URL, "http://"))
	}
	cfg, err := config.Parse("t.yaml", []byte("apps:\n  web:\n    targets: ["+addrs[0]+"]\n    health: { path: /healthz }\n"))
	if err != nil {
		t.Fatal(err)
	}
	gw := gateway.New(gateway.Options{})
	if err := gw.Configure(cfg.Apps); err != nil {
		t.Fatal(err)
	}
	d := New(ctx, Options{Store: wrap(st), Gateway: gw, Apps: cfg.Apps, Logger: slog.New(slog.DiscardHandler)})
	if err := d.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	return d, addrs
}

// A canary's deploy is never written with its canary step done and the
// deploy still running: a process that read that (its successor, after a
// kill between two writes or a failed second write) would finish it as
// done and leave its traffic split with no canary to promote or roll back.
func TestCanaryOpensInOneWrite(t *testing.T) {
	saved := &savedDeploys{}
	d, addrs := targetsDeployer(t, 1, func(st store.Store) store.Store { saved.Store = st; return saved })
	dep, err := d.Start(context.Background(), Request{App: "web", Targets: addrs, Label: "v2", Strategy: Canary, Percent: 30}, nil)
	if err != nil || dep.State != CanaryWait {
		t.Fatalf("the canary opens: %v %+v", err, dep)
	}
	for _, w := range saved.seen {
		for _, s := range w.Steps {
			if s.Name == StepCanary && s.State == Done && w.State == Running {
				t.Fatalf("a write has the canary done and the deploy running: %+v", w)
			}
		}
	}
}

// failingStore fails the first write of a deploy that fail picks.
type failingStore struct {
	store.Store
	mu     sync.Mutex
	fail   func(*Deploy) bool
	failed bool
}

func (s *failingStore) PutAll(ctx context.Context, docs ...store.Put) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range docs {
		if dep, ok := d.Value.(*Deploy); ok && !s.failed && s.fail != nil && s.fail(dep) {
			s.failed = true
			return errors.New("no space left on device")
		}
	}
	return s.Store.PutAll(ctx, docs...)
}

// A deploy that stalled before its switch (the store could not be
// written), then `handoff rollback`: the deploy is undone, back to what
// served before it — not to the release before that (v0), as a rollback
// from the record's previous release went.
func TestRollbackOfAStalledDeploy(t *testing.T) {
	ctx := context.Background()
	fs := &failingStore{}
	d, addrs := targetsDeployer(t, 3, func(st store.Store) store.Store { fs.Store = st; return fs })
	for i, label := range []string{"v0", "v1"} {
		if _, err := d.Start(ctx, Request{App: "web", Targets: []string{addrs[i]}, Label: label}, nil); err != nil {
			t.Fatal(err)
		}
	}
	fs.mu.Lock()
	fs.fail = func(dep *Deploy) bool {
		s := dep.next()
		return dep.To.Label == "v2" && s != nil && s.Name == StepSwitch && s.State == Running
	}
	fs.mu.Unlock()
	if _, err := d.Start(ctx, Request{App: "web", Targets: []string{addrs[2]}, Label: "v2"}, nil); err == nil || !strings.Contains(err.Error(), "stalled") {
		t.Fatalf("the deploy of v2 stalls: %v", err)
	}
	dep, err := d.Rollback(ctx, "web", RollbackOptions{}, nil)
	if err != nil {
		t.Fatalf("rollback: %v", err)
	}
	rec, err := d.Record(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if dep.To.Label != "v2" || dep.State != RolledBack || rec.Current == nil || rec.Current.Label != "v1" || rec.Deploy != "" {
		t.Fatalf("want deploy of v2 rolled back, v1 current: deploy %s to %s %s; current %s", dep.ID, dep.To.Label, dep.State, labelOf(rec.Current))
	}
}
