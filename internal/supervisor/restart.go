package supervisor

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/handoff-dev/handoff/internal/config"
)

// ErrNotRunning: Restart was asked for an instance that has no process, or
// one on its way out (stopping, draining); there is nothing to restart.
var ErrNotRunning = errors.New("instance is not running")

// Restart ends the process of a running instance that no longer answers
// (its health check fails while it lives: a deadlock, a SIGSTOP) so that it
// starts again in the same slot, on the same port: it sends the process
// group the instance's stop signal, SIGKILL after the stop timeout, and
// returns once the process has exited. The instance's monitor then finds its
// process gone and starts a new one as after a crash — after the backoff,
// counted in Restarts and towards a crash loop: an instance that hangs again
// and again is in a loop as much as one that crashes. why goes into the
// event log. If ctx ends first, Restart returns ctx's error and the SIGKILL
// is not sent.
//
// Restart signals from outside the monitor, which owns the process
// otherwise: the process is named by PID and start time, checked before
// each signal, so a signal can reach no other process; a stop or drain
// that the monitor begins meanwhile ends the same process, and wins (the
// instance is then not started again).
func (s *Supervisor) Restart(ctx context.Context, id, why string) (Instance, error) {
	inst, err := s.Get(id)
	if err != nil {
		return Instance{}, fmt.Errorf("restart %s: %w", id, err)
	}
	s.mu.Lock()
	detached := s.detached
	s.mu.Unlock()
	if detached {
		return Instance{}, fmt.Errorf("restart %s: %w", id, ErrDetached)
	}
	if inst.PID == 0 || inst.State.ending() || inst.State == StateStarting {
		return inst, fmt.Errorf("restart %s (%s): %w", id, inst.State, ErrNotRunning)
	}
	sig := inst.Stop
	if inst.Kind == config.KindWorker {
		sig = inst.Drain
	}
	if !s.env.alive(inst.PID, inst.StartTime) {
		return inst, nil // gone already: the monitor restarts it
	}
	s.event(inst, EventInstance, "%s; restarting it: sent %s, SIGKILL in %s", why, sig.Signal, sig.Timeout)
	if err := s.env.signalGroup(inst.PID, config.Signals[sig.Signal]); err != nil {
		s.log.Warn("signal instance", "instance", id, "signal", sig.Signal, "error", err)
	}
	wctx, cancel := context.WithTimeout(ctx, sig.Timeout.D())
	exited := s.waitExit(wctx, inst.PID, inst.StartTime)
	cancel()
	if exited {
		return inst, nil
	}
	if ctx.Err() != nil {
		return inst, fmt.Errorf("restart %s: %w", id, ctx.Err())
	}
	if s.env.alive(inst.PID, inst.StartTime) {
		if err := s.env.signalGroup(inst.PID, syscall.SIGKILL); err != nil {
			s.log.Warn("kill instance", "instance", id, "error", err)
		}
		s.event(inst, EventInstance, "killed (SIGKILL): still running %s after %s", sig.Timeout, sig.Signal)
	}
	kctx, cancel := context.WithTimeout(ctx, killWait)
	defer cancel()
	if !s.waitExit(kctx, inst.PID, inst.StartTime) {
		return inst, fmt.Errorf("restart %s: process %d still runs after SIGKILL: %w", id, inst.PID, kctx.Err())
	}
	return inst, nil
}
