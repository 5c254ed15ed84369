package supervisor

import (
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// osEnv is the supervisor's boundary with the operating system, as function
// fields (after tableflip's env). Production uses stdEnv; tests replace one
// field at a time to provoke what real processes cannot be made to do on
// demand: a kernel without pidfds, or handoff dying between two steps.
type osEnv struct {
	// start starts a configured command (exec.Cmd.Start).
	start func(cmd *exec.Cmd) error
	// kill sends sig to pid, or to the process group -pid (kill(2)).
	kill func(pid int, sig syscall.Signal) error
	// stat reads /proc/PID/stat.
	stat func(pid int) (procStat, error)
	// pids lists the processes in /proc.
	pids func() ([]int, error)
	// environ reads /proc/PID/environ: the environment the process was
	// started with, NUL-separated.
	environ func(pid int) ([]byte, error)
	// pidfdOpen returns a non-blocking pidfd for pid (pidfd_open(2)).
	pidfdOpen func(pid int) (int, error)
	// listen opens the listener a free port is taken from.
	listen func(network, address string) (net.Listener, error)
	// selfEnv is handoff's own environment, the base of every instance's.
	selfEnv func() []string
	// step is called at each point of Start, Stop and Drain after which a
	// death of handoff leaves a distinct state behind (see the step*
	// constants); tests kill the process there.
	step func(name string)
	// pollEvery is how often a process is checked in /proc when no pidfd
	// can watch it.
	pollEvery time.Duration
}

// The steps at which osEnv.step is called.
const (
	stepStartPersisted = "start:persisted" // record written, no process yet
	stepStartSpawned   = "start:spawned"   // process running, its PID not written
	stepStartRecorded  = "start:recorded"  // PID written, not yet watched
	stepRestartSpawned = "restart:spawned" // a crashed instance's new process running, its PID not written
	stepStopPersisted  = "stop:persisted"  // stopping written, signal not sent
	stepStopSignalled  = "stop:signalled"  // signal sent, process not exited
	stepDrainPersisted = "drain:persisted" // draining written, signal not sent
	stepDrainSignalled = "drain:signalled" // signal sent, process not exited
)

func stdEnv() *osEnv {
	return &osEnv{
		start:     (*exec.Cmd).Start,
		kill:      syscall.Kill,
		stat:      readStat,
		pids:      listPIDs,
		environ:   func(pid int) ([]byte, error) { return os.ReadFile(procPath(pid, "environ")) },
		pidfdOpen: pidfdOpen,
		listen:    net.Listen,
		selfEnv:   os.Environ,
		step:      func(string) {},
		pollEvery: time.Second,
	}
}
