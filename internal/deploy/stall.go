package deploy

import (
	"context"
	"fmt"
)

// Stalled is the state of a deploy that stopped because the state store
// could not be written (a full disk, a read-only file system, a lost
// Postgres): traffic stays where its last recorded step left it, and the
// same deploy command goes on from there once the store works. It is never
// stored — the store is what failed — and shows only in this process.
const Stalled State = "stalled"

// stall notes that dep stopped on a failed write, and returns the error
// its caller gets.
func (d *Deployer) stall(dep *Deploy, s *Step, err error) error {
	at := "its start"
	if s != nil {
		at = "step " + s.String()
	}
	why := fmt.Sprintf("the state store could not be written at %s (%v): traffic stays as that step left it; run the same deploy again once the store works, and it goes on from there", at, err)
	d.mu.Lock()
	d.stalled[dep.ID] = why
	d.mu.Unlock()
	d.log.Error("deploy stalled", "app", dep.App, "deploy", dep.ID, "step", at, "error", err)
	return fmt.Errorf("deploy %s stalled: %s", dep.ID, why)
}

// overlay shows a stalled deploy as such: its stored state says running.
func (d *Deployer) overlay(dep *Deploy) *Deploy {
	d.mu.Lock()
	why, ok := d.stalled[dep.ID]
	d.mu.Unlock()
	if ok && dep.State == Running {
		dep.State, dep.Error = Stalled, why
	}
	return dep
}

// unfinished returns the app's deploy that stopped short (stalled on the
// store, or interrupted) and that no one runs now, or nil. The caller holds
// the app's claim, so a deploy recorded as running is not running.
func (d *Deployer) unfinished(ctx context.Context, rec *Record) *Deploy {
	if rec.Deploy == "" {
		return nil
	}
	dep, err := d.Get(ctx, rec.Deploy)
	if err != nil || (dep.State != Running && dep.State != Stalled) {
		return nil
	}
	return dep
}

// resumeStalled runs dep again from its first unfinished step.
func (d *Deployer) resumeStalled(dep *Deploy) {
	d.mu.Lock()
	delete(d.stalled, dep.ID)
	d.mu.Unlock()
	dep.State, dep.Error = Running, ""
}
