package server

import (
	"os"
	"strconv"
	"sync"
	"syscall"
)

// The variables a process manager or a predecessor gives this process, and
// no child of it: instances, release and backfill commands inherit
// handoff's environment, and an app server that speaks sd_notify (Puma,
// for one) would tell systemd READY=1 or STOPPING=1 in handoff's name
// (the unit has NotifyAccess=all, for an upgrade's new MAINPID); a
// respawned instance would hold the upgrade's readiness pipe, so that the
// predecessor never saw it close.
const (
	envNotifySocket = "NOTIFY_SOCKET"
	envWatchdogPID  = "WATCHDOG_PID"
	envWatchdogUsec = "WATCHDOG_USEC"
)

// procEnv is what this process was given in those variables, taken out of
// its environment once, first thing in New.
type procEnv struct {
	notifySocket string // systemd's, passed on to a successor
	readyFD      int    // the upgrade's readiness pipe; 0: none, or used
	upgradeFrom  int    // the predecessor's PID; 0: none
}

var (
	procEnvOnce sync.Once
	procEnvMu   sync.Mutex
	theProcEnv  procEnv
)

// takeProcEnv reads and clears the variables (LISTEN_* are inheritListeners'),
// and keeps the readiness pipe from any child.
func takeProcEnv() {
	procEnvOnce.Do(func() {
		e := procEnv{notifySocket: os.Getenv(envNotifySocket)}
		if fd, err := strconv.Atoi(os.Getenv(envReadyFD)); err == nil && fd > 2 {
			syscall.CloseOnExec(fd)
			e.readyFD = fd
		}
		e.upgradeFrom, _ = strconv.Atoi(os.Getenv(envUpgradeFrom))
		for _, k := range []string{envNotifySocket, envWatchdogPID, envWatchdogUsec, envReadyFD, envUpgradeFrom} {
			os.Unsetenv(k)
		}
		theProcEnv = e
	})
}

// takeReadyFD returns the readiness pipe, once.
func takeReadyFD() int {
	takeProcEnv()
	procEnvMu.Lock()
	defer procEnvMu.Unlock()
	fd := theProcEnv.readyFD
	theProcEnv.readyFD = 0
	return fd
}

func notifySocket() string { takeProcEnv(); return theProcEnv.notifySocket }

func upgradeFrom() int { takeProcEnv(); return theProcEnv.upgradeFrom }
