package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/supervisor"
)

// livenessEvery is how often the server looks for hung instances: often
// enough that health.restart_after is kept to within a fraction of a second.
const livenessEvery = 250 * time.Millisecond

// monitorLiveness restarts a supervised instance whose process lives but
// which has failed its health check for its app's health.restart_after (a
// deadlock, a stopped process: its socket accepts and nothing answers).
// The gateway has taken it out of rotation at its first failed check, and
// requests already sent to it end with 504 after the response timeout; the
// restart gives the app its capacity back. The gateway (for a tcp app,
// the tcp proxy) only reports health (it knows nothing of processes); the
// supervisor restarts. Crashed instances are the supervisor's own
// business, and external targets are never restarted.
func (s *Server) monitorLiveness(ctx context.Context) {
	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		restarting = map[string]int{} // instance ID → the PID being restarted
	)
	defer wg.Wait()
	tick := time.NewTicker(livenessEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if s.upgrading.Load() {
			continue // the supervisor is, or is about to be, the successor's
		}
		sup := s.supervisor()
		now := time.Now()
		for _, app := range s.cfg.Apps {
			if app.Kind == config.KindWorker || app.Health.RestartAfter <= 0 {
				continue
			}
			for _, inst := range sup.List(app.Name) {
				why, due := hung(s.targetHealth(app), app, inst, now)
				mu.Lock()
				busy := restarting[inst.ID] == inst.PID
				if due && !busy {
					restarting[inst.ID] = inst.PID
				}
				mu.Unlock()
				if !due || busy {
					continue
				}
				wg.Go(func() {
					_, err := sup.Restart(ctx, inst.ID, why)
					if err != nil && ctx.Err() == nil && !errors.Is(err, supervisor.ErrDetached) &&
						!errors.Is(err, supervisor.ErrNotFound) && !errors.Is(err, supervisor.ErrNotRunning) {
						s.log.Warn("restart a hung instance", "instance", inst.ID, "error", err)
					}
					// Keep the entry until the monitor has a new process:
					// the old PID is then no longer listed, and the entry
					// matches nothing.
				})
			}
		}
	}
}

// hung reports whether inst lives but has failed its health check for
// health.restart_after, and says so for the event log. The time counts
// from the later of its first failed check and its process's start; a
// process that has not passed a check since it started (it may be slow to
// start) gets start_timeout more first, as a deploy would give it.
func hung(health func(addr string) (gateway.TargetHealth, bool), app *config.App, inst supervisor.Instance, now time.Time) (string, bool) {
	if inst.PID == 0 || inst.Port == 0 || (inst.State != supervisor.StateRunning && inst.State != supervisor.StateCrashLoop) {
		return "", false
	}
	h, ok := health(inst.Addr())
	if !ok {
		return "", false // no route lists it: not the gateway's to judge
	}
	return hungFor(h, app, inst, now)
}

// hungFor is hung's rule, given what the gateway knows of the instance.
func hungFor(h gateway.TargetHealth, app *config.App, inst supervisor.Instance, now time.Time) (string, bool) {
	if h.Healthy || h.Draining || h.FailingSince.IsZero() {
		return "", false
	}
	failing := later(h.FailingSince, inst.Started)
	due := failing
	if h.Passed.Before(inst.Started) {
		due = later(due, inst.Started.Add(app.StartTimeout.D()))
	}
	if now.Sub(due) < app.Health.RestartAfter.D() {
		return "", false
	}
	return fmt.Sprintf("failing its health check for %s while its process (pid %d) lives (health.restart_after %s; last error: %s)",
		now.Sub(failing).Round(100*time.Millisecond), inst.PID, app.Health.RestartAfter, h.LastError), true
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
