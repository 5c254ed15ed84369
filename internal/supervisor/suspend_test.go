package supervisor

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Suspend stops every process but keeps every record: the next
// Supervisor starts each instance again, on its port, as it was — the
// app comes back after a stop of handoff (a systemctl restart, a reboot).
func TestSuspendThenRestore(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	sup1 := h.open(nil)
	a, err := sup1.Start(ctx, h.spec("http", 0, nil))
	if err != nil {
		t.Fatal(err)
	}
	w := h.spec("worker", 0, map[string]string{"CHILD_GATE": filepath.Join(t.TempDir(), "gate")})
	w.App = "mailin"
	worker, err := sup1.Start(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the job to start", func() bool { return strings.Contains(readLog(t, worker.Log), "child: job started") })
	sctx, cancel := context.WithTimeout(ctx, time.Second) // the worker's job never ends: it is killed
	defer cancel()
	if err := sup1.Suspend(sctx); err != nil {
		t.Fatal(err)
	}
	if len(h.procs()) != 0 {
		t.Fatal("a process is left after Suspend")
	}
	for _, id := range []string{a.ID, worker.ID} {
		if rec, ok := h.record(id); !ok || rec.State != StateSuspended || rec.PID != 0 {
			t.Fatalf("record of %s after Suspend: %+v (kept %v), want suspended", id, rec, ok)
		}
	}
	if !strings.Contains(readLog(t, worker.Log), "child: draining") {
		t.Error("the worker was not drained first")
	}
	if err := sup1.Detach(ctx); err != nil {
		t.Fatal(err)
	}

	sup2 := h.open(nil)
	now, err := sup2.Get(a.ID)
	if err != nil || now.PID == 0 || now.Port != a.Port || now.State != StateRunning || now.Restarts != 0 {
		t.Fatalf("after restore: %+v, %v; want running again on port %d", now, err, a.Port)
	}
	if info := askUntil(t, now.Port); info.PID != now.PID {
		t.Errorf("port %d answered by %d, want %d", now.Port, info.PID, now.PID)
	}
	if wk, err := sup2.Get(worker.ID); err != nil || wk.PID == 0 {
		t.Errorf("the worker after restore: %+v, %v", wk, err)
	}
	if !h.hasEvent(EventInstance, "started again: it was suspended with handoff") {
		t.Error("no event says the instance was started again")
	}
}

// A handoff killed while it suspends leaves a process that runs (or was
// signalled): the next one adopts it as running, and if it exits it is
// restarted — never left suspended with nobody to start it.
func TestSuspendInterrupted(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	sup1 := h.open(nil)
	a, err := sup1.Start(ctx, h.spec("http", 0, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := sup1.Detach(ctx); err != nil {
		t.Fatal(err)
	}
	rec, _ := h.record(a.ID)
	rec.State, rec.Suspending = StateStopping, true // written, and the signal never sent
	if err := h.st.Put(ctx, KindInstance, h.node+"/"+a.ID, rec); err != nil {
		t.Fatal(err)
	}
	sup2 := h.open(nil)
	now, err := sup2.Get(a.ID)
	if err != nil || now.PID != a.PID || now.State != StateRunning || now.Suspending {
		t.Fatalf("adopted: %+v, %v; want process %d running", now, err, a.PID)
	}
	syscall.Kill(a.PID, syscall.SIGTERM) // as if the signal had gone out
	waitFor(t, "the instance to be restarted", func() bool {
		now, err := sup2.Get(a.ID)
		return err == nil && now.PID != 0 && now.PID != a.PID
	})
}

// An instance's log says how each of its processes ended, beside how it
// started.
func TestLogSaysHowAProcessEnded(t *testing.T) {
	h := newHarness(t)
	sup := h.open(nil)
	inst, err := sup.Start(context.Background(), h.spec("http", 0, nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sup.Stop(context.Background(), inst.ID); err != nil {
		t.Fatal(err)
	}
	log := readLog(t, inst.Log)
	if !strings.Contains(log, "--- handoff:") || !strings.Contains(log, "ended:") {
		t.Fatalf("the log does not say how the process ended:\n%s", log)
	}
}
