package supervisor

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
)

// A worker in the middle of a job is drained: it gets SIGTERM, finishes the
// job, exits; meanwhile it is listed as draining and its release is in use.
func TestDrainWorker(t *testing.T) {
	h := newHarness(t)
	sup := h.open(nil)
	ctx := context.Background()
	gate := filepath.Join(t.TempDir(), "gate")
	spec := h.spec("worker", 0, map[string]string{"CHILD_GATE": gate})
	spec.App = "mailin"
	spec.Drain = config.Signal{Signal: "SIGTERM", Timeout: config.Duration(time.Hour)}
	inst, err := sup.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if inst.Port != 0 {
		t.Errorf("a worker got port %d", inst.Port)
	}
	waitFor(t, "the job to start", func() bool { return strings.Contains(readLog(t, inst.Log), "child: job started") })

	before := time.Now()
	drained, err := sup.Drain(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if drained.State != StateDraining || drained.DrainingSince.Before(before.Add(-time.Second)) || drained.Signalled.IsZero() {
		t.Fatalf("after Drain: state %s, draining since %v, signalled %v", drained.State, drained.DrainingSince, drained.Signalled)
	}
	waitFor(t, "the worker to see SIGTERM", func() bool { return strings.Contains(readLog(t, inst.Log), "child: draining") })
	// It has the signal and is still at its job: still there, still draining.
	now, err := sup.Get(inst.ID)
	if err != nil || now.State != StateDraining || now.PID != inst.PID {
		t.Fatalf("while the job runs: %+v, %v; want the same process, draining", now, err)
	}
	if rec, _ := h.record(inst.ID); rec.State != StateDraining || rec.DrainingSince.IsZero() {
		t.Errorf("record: state %s, draining since %v", rec.State, rec.DrainingSince)
	}
	if !sup.InUse()[h.dir] {
		t.Error("the release of a draining worker is not in use")
	}
	waitCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	if _, err := sup.Wait(waitCtx, inst.ID); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait returned %v while the job runs", err)
	}
	cancel()

	if err := writeFile(gate); err != nil {
		t.Fatal(err)
	}
	final, err := sup.Wait(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if final.State != StateExited || final.LastExit != "exit status 0" || final.Restarts != 0 {
		t.Errorf("after the job: state %s, last exit %q, restarts %d", final.State, final.LastExit, final.Restarts)
	}
	if log := readLog(t, inst.Log); !strings.Contains(log, "child: job done") {
		t.Errorf("the job did not finish:\n%s", log)
	}
	if sup.InUse()[h.dir] {
		t.Error("the release is still in use after the worker exited")
	}
	if _, ok := h.record(inst.ID); ok {
		t.Error("the record is left")
	}
	if !h.hasEvent(EventInstance, "drained: exit status 0") {
		t.Errorf("no drain event in %v", h.events())
	}
}

func TestDrainTimeoutKills(t *testing.T) {
	h := newHarness(t)
	sup := h.open(nil)
	ctx := context.Background()
	spec := h.spec("worker", 0, map[string]string{"CHILD_GATE": filepath.Join(t.TempDir(), "never")})
	spec.Drain = config.Signal{Signal: "SIGTERM", Timeout: config.Duration(300 * time.Millisecond)}
	inst, err := sup.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job to start", func() bool { return strings.Contains(readLog(t, inst.Log), "child: job started") })
	if _, err := sup.Drain(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	final, err := sup.Wait(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if final.LastExit != "signal: killed" {
		t.Errorf("last exit %q, want signal: killed", final.LastExit)
	}
	if !strings.Contains(readLog(t, inst.Log), "child: draining") {
		t.Error("the worker never saw its drain signal")
	}
	if !h.hasEvent(EventInstance, "killed (SIGKILL): still running 300ms after SIGTERM") {
		t.Errorf("no kill event in %v", h.events())
	}
}

func TestStopAll(t *testing.T) {
	h := newHarness(t)
	sup := h.open(nil)
	ctx := context.Background()
	gate := filepath.Join(t.TempDir(), "gate")
	if _, err := sup.Start(ctx, h.spec("http", 0, nil)); err != nil {
		t.Fatal(err)
	}
	w := h.spec("worker", 0, map[string]string{"CHILD_GATE": gate})
	w.App = "mailin"
	worker, err := sup.Start(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job to start", func() bool { return strings.Contains(readLog(t, worker.Log), "child: job started") })
	// The worker's job never ends: StopAll kills it when ctx runs out.
	stopCtx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := sup.StopAll(stopCtx); err != nil {
		t.Fatal(err)
	}
	if got := sup.List(""); len(got) != 0 {
		t.Errorf("left after StopAll: %v", got)
	}
	if len(h.procs()) != 0 {
		t.Error("a process is left")
	}
	if !strings.Contains(readLog(t, worker.Log), "child: draining") {
		t.Error("the worker was not drained first")
	}
}
