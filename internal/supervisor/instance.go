package supervisor

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
)

// Spec is what to run: one instance of one release of an app. It is stored
// with the instance so that a restarted handoff can restart the instance
// without the config it was started from.
type Spec struct {
	App string `json:"app"`
	// Release is the release's label; it names the instance and is given to
	// the process as HANDOFF_RELEASE.
	Release string `json:"release"`
	// Dir is the release directory: the process's working directory, and
	// what InUse reports while the instance exists. Start makes it absolute.
	Dir string `json:"dir"`
	// Command is the program and its arguments. A relative program path
	// with a slash (bin/server) is relative to Dir; a bare name is looked
	// up in PATH.
	Command []string          `json:"command"`
	Env     map[string]string `json:"env,omitempty"`
	Kind    config.Kind       `json:"kind"`
	// Index is the instance's slot, 0..instances-1. Brick is its group,
	// counted from 1 as a deploy's steps and every display count them (0:
	// none given).
	Index int `json:"index"`
	Brick int `json:"brick"`
	// Stop is the signal that stops the process and how long to wait
	// before SIGKILL; it defaults to SIGTERM and 10s.
	Stop config.Signal `json:"stop"`
	// Drain is the signal that asks a worker to finish its jobs and exit,
	// and how long to wait before SIGKILL; it defaults to SIGTERM and 2h.
	Drain config.Signal `json:"drain"`
}

// Defaults for a Spec's signals, the same as the config's.
const (
	defaultStopTimeout  = 10 * time.Second
	defaultDrainTimeout = 2 * time.Hour
)

// withDefaults fills in the signals and the kind.
func (s Spec) withDefaults() Spec {
	if s.Kind == "" {
		s.Kind = config.KindHTTP
	}
	if s.Stop.Signal == "" {
		s.Stop.Signal = "SIGTERM"
	}
	if s.Stop.Timeout == 0 {
		s.Stop.Timeout = config.Duration(defaultStopTimeout)
	}
	if s.Drain.Signal == "" {
		s.Drain.Signal = "SIGTERM"
	}
	if s.Drain.Timeout == 0 {
		s.Drain.Timeout = config.Duration(defaultDrainTimeout)
	}
	s.Command = slices.Clone(s.Command)
	s.Env = maps.Clone(s.Env)
	return s
}

func (s Spec) validate() error {
	var errs []error
	if s.App == "" {
		errs = append(errs, errors.New("no app"))
	}
	if s.Release == "" {
		errs = append(errs, errors.New("no release"))
	}
	if s.Dir == "" {
		errs = append(errs, errors.New("no release directory"))
	}
	if len(s.Command) == 0 || s.Command[0] == "" {
		errs = append(errs, errors.New("no command"))
	}
	if s.Kind != config.KindHTTP && s.Kind != config.KindWorker && s.Kind != config.KindTCP {
		errs = append(errs, fmt.Errorf("kind %q is not http, worker or tcp", s.Kind))
	}
	if s.Index < 0 {
		errs = append(errs, fmt.Errorf("negative index %d", s.Index))
	}
	for _, sig := range []config.Signal{s.Stop, s.Drain} {
		if _, ok := config.Signals[sig.Signal]; !ok {
			errs = append(errs, fmt.Errorf("unknown signal %q", sig.Signal))
		}
	}
	return errors.Join(errs...)
}

// ID names the instance of this spec: app-release-index, with characters
// other than letters, digits, '.', '_' and '-' replaced so that it is also a
// safe file name for the instance's log.
func (s Spec) ID() string {
	return safeName(s.App) + "-" + safeName(s.Release) + "-" + strconv.Itoa(s.Index)
}

func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, s)
}

// State is where an instance is in its life.
type State string

// The states of an instance. A stored record is never in StateExited: the
// record is deleted when a stopped or drained instance exits, and
// StateExited appears only in what Stop, Kill and Wait return.
const (
	// StateStarting: the record is written, the process not yet known to run.
	StateStarting State = "starting"
	// StateRunning: the process runs and is watched.
	StateRunning State = "running"
	// StateBackoff: the process exited unexpectedly and will be restarted
	// in the same slot, on the same port, after a delay that doubles with
	// each crash.
	StateBackoff State = "backoff"
	// StateCrashLoop: the instance crashed Options.CrashLoop times within
	// Options.CrashLoopWindow. It is still restarted (at the backoff's
	// pace) and stays in this state, with or without a process, until a
	// process of it has stayed up for Options.StableAfter.
	StateCrashLoop State = "crashloop"
	// StateDraining: a worker was sent its drain signal and is finishing
	// its jobs; it is not restarted when it exits.
	StateDraining State = "draining"
	// StateStopping: the process was sent its stop signal (or SIGKILL) and
	// is not restarted when it exits.
	StateStopping State = "stopping"
	// StateExited: the instance is gone (see above).
	StateExited State = "exited"
	// StateSuspended: handoff stopped the instance when it stopped itself
	// (Suspend: a SIGTERM to handoff serve, a reboot); the record stays, and
	// the next handoff serve starts it again on the same port, so that the
	// app comes back to the state it was in.
	StateSuspended State = "suspended"
)

// ending reports whether the instance is on its way out: not restarted.
func (s State) ending() bool { return s == StateDraining || s == StateStopping || s == StateExited }

// Instance is one supervised process of one release, as stored (kind
// "instance", key "<node>/<id>") and as reported by List and Get.
type Instance struct {
	Spec
	// ID is Spec.ID(); it is unique on a node and is the process's
	// HANDOFF_INSTANCE.
	ID   string `json:"id"`
	Node string `json:"node"`
	// Port is the instance's 127.0.0.1 port (0 for workers). It is kept
	// across restarts so the gateway's target does not change.
	Port int `json:"port,omitempty"`
	// PID is the process (and process group) now running, 0 when none is.
	// StartTime is its start time in clock ticks after boot, from
	// /proc/PID/stat; with the PID it names the process even if the PID
	// is later reused.
	PID       int    `json:"pid,omitempty"`
	StartTime uint64 `json:"start_time,omitempty"`
	// Boot is the machine's boot ID when PID was written: after a reboot
	// the same PID and start time may name another process.
	Boot  string `json:"boot,omitempty"`
	State State  `json:"state"`
	// Since is when the instance entered State.
	Since time.Time `json:"since"`
	// Created is when the instance was first started; Started is when its
	// current (or last) process was.
	Created time.Time `json:"created"`
	Started time.Time `json:"started,omitzero"`
	// Restarts counts processes started after an unexpected exit.
	Restarts int `json:"restarts"`
	// LastExit says how the last process ended: "exit status 1",
	// "signal: killed", or, for an adopted process whose status handoff
	// cannot read, "exited (status unknown: not handoff's child)".
	LastExit string `json:"last_exit,omitempty"`
	// DrainingSince is when the drain signal was asked for.
	DrainingSince time.Time `json:"draining_since,omitzero"`
	// Signalled is when the stop or drain signal was sent; zero while
	// draining or stopping means it may not have been sent yet (a restarted
	// handoff sends it).
	Signalled time.Time `json:"signalled,omitzero"`
	// Log is the file that receives the process's stdout and stderr.
	Log string `json:"log"`
	// Suspending: the stop or drain under way is a Suspend's, so the
	// instance is to run again when handoff starts (StateSuspended once
	// its process has exited).
	Suspending bool `json:"suspending,omitempty"`
}

// Addr is the instance's address for the gateway ("" for workers).
func (i Instance) Addr() string {
	if i.Port == 0 {
		return ""
	}
	return "127.0.0.1:" + strconv.Itoa(i.Port)
}

// clone copies the instance so that a caller cannot change the supervisor's.
func (i Instance) clone() Instance {
	i.Command = slices.Clone(i.Command)
	i.Env = maps.Clone(i.Env)
	return i
}

// RedactedValue stands for every value of an instance's Env wherever the
// instance is shown.
const RedactedValue = "[redacted]"

// Redacted returns a copy of the instance fit to show: its Env keeps its
// names, each value replaced by RedactedValue, as the environment holds
// passwords and database URLs. Status, the API, the dashboard and the logs
// show only redacted instances; the store keeps the values, which a
// restarted handoff needs to restart the instance.
func (i Instance) Redacted() Instance {
	i = i.clone()
	for k := range i.Env {
		i.Env[k] = RedactedValue
	}
	return i
}

// sameSpec reports whether two specs would run the same thing.
func sameSpec(a, b Spec) bool {
	return a.App == b.App && a.Release == b.Release && a.Dir == b.Dir &&
		slices.Equal(a.Command, b.Command) && maps.Equal(a.Env, b.Env) &&
		a.Kind == b.Kind && a.Index == b.Index && // Brick only names the group (older records count it from 0)
		a.Stop == b.Stop && a.Drain == b.Drain
}

// The environment variables handoff gives each process.
const (
	envNode     = "HANDOFF_NODE"
	envInstance = "HANDOFF_INSTANCE"
	envApp      = "HANDOFF_APP"
	envRelease  = "HANDOFF_RELEASE"
	envPort     = "PORT"
)

// environ is the process's environment: handoff's own (less the variables it
// sets), then the app's, then handoff's variables, which win.
func (i Instance) environ(base []string) []string {
	ours := map[string]string{envNode: i.Node, envInstance: i.ID, envApp: i.App, envRelease: i.Release}
	if i.Port != 0 {
		ours[envPort] = strconv.Itoa(i.Port)
	}
	env := make([]string, 0, len(base)+len(i.Env)+len(ours))
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		_, set := ours[k]
		_, app := i.Env[k]
		if set || app || k == envPort { // handoff's own PORT is not the instance's
			continue
		}
		env = append(env, kv)
	}
	for _, k := range slices.Sorted(maps.Keys(i.Env)) {
		if _, set := ours[k]; !set {
			env = append(env, k+"="+i.Env[k])
		}
	}
	for _, k := range slices.Sorted(maps.Keys(ours)) {
		env = append(env, k+"="+ours[k])
	}
	return env
}
