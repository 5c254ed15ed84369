package supervisor

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
)

// TestRestartAHungInstance: a process that lives but does not answer (here
// SIGSTOP'd, so its stop signal stays pending) gets its stop signal, then
// SIGKILL after the stop timeout, and starts again on the same port.
func TestRestartAHungInstance(t *testing.T) {
	h := newHarness(t)
	sup := h.open(nil)
	ctx := context.Background()
	spec := h.spec("http", 0, nil)
	spec.Stop.Timeout = config.Duration(400 * time.Millisecond)
	inst, err := sup.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	askUntil(t, inst.Port)
	if err := syscall.Kill(inst.PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(inst.PID, syscall.SIGCONT) })
	begun := time.Now()
	if _, err := sup.Restart(ctx, inst.ID, "not answering its health check for 1s"); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begun); took < 400*time.Millisecond {
		t.Errorf("restart returned after %s, before the stop timeout", took)
	}
	var now Instance
	waitFor(t, "the new process", func() bool {
		now, _ = sup.Get(inst.ID)
		return now.PID != 0 && now.PID != inst.PID && now.State == StateRunning
	})
	if info := askUntil(t, inst.Port); info.PID != now.PID || now.Port != inst.Port {
		t.Errorf("port %d (was %d) answered by pid %d, want the new process %d", now.Port, inst.Port, info.PID, now.PID)
	}
	for _, ev := range []string{"not answering its health check for 1s; restarting it: sent SIGTERM, SIGKILL in 400ms", "killed (SIGKILL): still running 400ms after SIGTERM"} {
		if !h.hasEvent(EventInstance, ev) {
			t.Errorf("no event %q in %v", ev, h.events())
		}
	}
	if now.Restarts != 1 {
		t.Errorf("restarts %d, want 1", now.Restarts)
	}
	// Nothing to restart: stopping, or unknown.
	if _, err := sup.Stop(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := sup.Restart(ctx, inst.ID, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("restart of a stopped instance: %v, want ErrNotFound", err)
	}
}
