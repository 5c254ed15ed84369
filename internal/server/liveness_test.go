package server

import (
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/supervisor"
)

// TestHungRule: when an instance that fails its health check is due for a
// restart.
func TestHungRule(t *testing.T) {
	now := time.Now()
	app := &config.App{Health: config.Health{RestartAfter: config.Duration(30 * time.Second)}, StartTimeout: config.Duration(60 * time.Second)}
	started := now.Add(-10 * time.Minute)
	inst := supervisor.Instance{Started: started, PID: 42}
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	for _, c := range []struct {
		name string
		h    gateway.TargetHealth
		inst supervisor.Instance
		due  bool
	}{
		{"healthy", gateway.TargetHealth{Healthy: true, Passed: ago(time.Second)}, inst, false},
		{"failing, not long enough", gateway.TargetHealth{Passed: ago(21 * time.Second), FailingSince: ago(20 * time.Second)}, inst, false},
		{"failing for restart_after", gateway.TargetHealth{Passed: ago(31 * time.Second), FailingSince: ago(30 * time.Second)}, inst, true},
		{"draining", gateway.TargetHealth{Draining: true, Passed: ago(time.Hour), FailingSince: ago(time.Hour)}, inst, false},
		{"failures of the process before: count from the new one's start",
			gateway.TargetHealth{Passed: ago(time.Hour), FailingSince: ago(time.Hour)},
			supervisor.Instance{PID: 43, Started: ago(80 * time.Second)}, false},
		{"never passed since its start: start_timeout first",
			gateway.TargetHealth{Passed: ago(time.Hour), FailingSince: ago(time.Hour)},
			supervisor.Instance{PID: 43, Started: ago(91 * time.Second)}, true},
		{"never passed at all", gateway.TargetHealth{FailingSince: ago(time.Hour)}, supervisor.Instance{PID: 43, Started: ago(89 * time.Second)}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			why, due := hungFor(c.h, app, c.inst, now)
			if due != c.due {
				t.Errorf("due %v, want %v (%s)", due, c.due, why)
			}
		})
	}
}
