// Package deploy moves an app from one release to another as an explicit
// state machine: a plan of steps, each persisted in the store before it is
// acted on, so that a restarted server resumes a deploy by the same code
// path that ran it, or rolls it back — never leaves it half-done.
package deploy

import (
	"fmt"
	"time"

	"github.com/handoff-dev/handoff/internal/gateway"
)

// Strategy is how a deploy moves traffic.
type Strategy string

// The strategies.
const (
	// All starts every new instance, switches at once and drains the old (blue/green).
	All Strategy = "all"
	// Rolling replaces instances brick by brick.
	Rolling Strategy = "rolling"
	// Canary sends a percentage of new clients to the new release until promoted.
	Canary Strategy = "canary"
)

// State is where a deploy or a step is.
type State string

// The states. A deploy waits in Canary until promoted or rolled back.
const (
	Pending    State = "pending"
	Running    State = "running"
	Done       State = "done"
	Failed     State = "failed"
	CanaryWait State = "canary"
	RolledBack State = "rolledback"
)

// Release is one version of an app's code: a directory of supervised code,
// or a label for external targets.
type Release struct {
	Label   string   `json:"label"`
	Dir     string   `json:"dir,omitempty"`
	Targets []string `json:"targets,omitempty"`
}

// Deploy is one move of an app between releases.
type Deploy struct {
	ID       string   `json:"id"`
	App      string   `json:"app"`
	Strategy Strategy `json:"strategy"`
	Percent  int      `json:"percent,omitempty"`
	From     *Release `json:"from,omitempty"`
	// Prior is the app's previous release when the deploy began, restored
	// if the deploy is rolled back.
	Prior    *Release `json:"prior,omitempty"`
	To       Release  `json:"to"`
	Rollback bool     `json:"rollback,omitempty"` // this deploy undoes an earlier one
	// MigrationDirs are the migrations the deploy's pipeline runs, if any.
	MigrationDirs []string `json:"migration_dirs,omitempty"`
	// RollingBack is set when a step failed and the rest of the plan puts
	// the old release back; Error says why.
	RollingBack bool      `json:"rolling_back,omitempty"`
	State       State     `json:"state"`
	Steps       []*Step   `json:"steps"`
	Error       string    `json:"error,omitempty"`
	Started     time.Time `json:"started"`
	Finished    time.Time `json:"finished,omitzero"`
}

// Step is one action of a deploy's plan.
type Step struct {
	Name StepName `json:"name"`
	// Brick is the brick (1-based) a rolling step acts on; 0 means all.
	Brick int `json:"brick,omitempty"`
	// Release and Indexes say which instances a start, check or stop step
	// acts on: the release's instances in those slots (all when nil).
	Release  string    `json:"release,omitempty"`
	Indexes  []int     `json:"indexes,omitempty"`
	State    State     `json:"state"`
	Detail   string    `json:"detail,omitempty"`
	Started  time.Time `json:"started,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	// Until is when a waiting step (a contract's soak time) may go on.
	Until time.Time `json:"until,omitzero"`
	// Percent is the share of new clients an analysis step gives the new
	// release.
	Percent int `json:"percent,omitempty"`
}

// StepName names what a step does.
type StepName string

// The steps of a plan.
const (
	// StepCheck waits for the new targets to pass their health check.
	StepCheck StepName = "check"
	// StepCanary shares new clients between the old and new release.
	StepCanary StepName = "canary"
	// StepSwitch points all traffic at the new release.
	StepSwitch StepName = "switch"
	// StepRevert points all traffic back at the old release.
	StepRevert StepName = "revert"
	// StepDrain waits for what is in flight on the replaced targets.
	StepDrain StepName = "drain"
	// StepStart starts a release's instances (supervised apps).
	StepStart StepName = "start"
	// StepShift moves one brick's share of traffic to the new release.
	StepShift StepName = "shift"
	// StepStop stops a release's instances after their drain; workers are
	// sent their drain signal and finish their jobs in their own time.
	StepStop StepName = "stop"
)

func (s *Step) String() string {
	name := string(s.Name)
	if s.Release != "" {
		name += " " + s.Release
	}
	if s.Brick > 0 {
		name += fmt.Sprintf(" (brick %d)", s.Brick)
	}
	if s.Percent > 0 {
		name += fmt.Sprintf(" %d%%", s.Percent)
	}
	return name
}

// next returns the first step still to run (pending, waiting, or running
// when a restart interrupted it), or nil.
func (d *Deploy) next() *Step {
	for _, s := range d.Steps {
		if s.State == Pending || s.State == Running || s.State == Waiting {
			return s
		}
	}
	return nil
}

// Record is what the store keeps of an app between deploys: its route as
// last applied, its current and previous release, and the deploy in progress.
type Record struct {
	Route    gateway.Route `json:"route"`
	Current  *Release      `json:"current,omitempty"`
	Previous *Release      `json:"previous,omitempty"`
	Deploy   string        `json:"deploy,omitempty"`
	// Waiting is a deploy whose contract waits for old releases to be gone.
	Waiting string `json:"waiting,omitempty"`
	Seq     int    `json:"seq"` // deploys so far; numbers the next one
}

// Progress is one thing that happened during a deploy, for the caller to show.
type Progress struct {
	Time    time.Time `json:"time"`
	Deploy  string    `json:"deploy"`
	Step    string    `json:"step,omitempty"`
	State   State     `json:"state"`
	Message string    `json:"message"`
	// Backfill is a backfill's progress, on the steps that run one.
	Backfill *BackfillProgress `json:"backfill,omitempty"`
}
