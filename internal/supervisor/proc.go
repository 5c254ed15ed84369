package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// procStat is what the supervisor reads from /proc/PID/stat.
type procStat struct {
	State byte // R, S, D, Z (zombie), X (dead), ...
	PGID  int
	// SID is its session: an instance's process never leads one (the
	// supervisor starts it with Setpgid, in handoff's session).
	SID int
	// Start is the process's start time in clock ticks after boot. A PID
	// is reused only after its process is gone, so PID and Start together
	// name one process for the life of the machine.
	Start uint64
}

// runs reports whether the process st describes is the one that started at
// start and has not exited (a zombie has).
func (st procStat) runs(start uint64) bool {
	return st.Start == start && st.State != 'Z' && st.State != 'X'
}

func procPath(pid int, file string) string {
	return "/proc/" + strconv.Itoa(pid) + "/" + file
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(procPath(pid, "stat"))
	if err != nil {
		return procStat{}, fmt.Errorf("read process %d: %w", pid, err)
	}
	return parseStat(pid, b)
}

// parseStat reads fields 3 (state), 5 (pgrp) and 22 (starttime) of
// proc_pid_stat(5). The command name (field 2) may hold spaces and
// parentheses, so the fields are counted from its last ')'.
func parseStat(pid int, b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	pgid, err1 := strconv.Atoi(f[2])
	sid, err3 := strconv.Atoi(f[3])
	start, err2 := strconv.ParseUint(f[19], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	if len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("parse /proc/%d/stat: state %q", pid, f[0])
	}
	return procStat{State: f[0][0], PGID: pgid, SID: sid, Start: start}, nil
}

func listPIDs() ([]int, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	names, err := d.Readdirnames(-1)
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	var pids []int
	for _, n := range names {
		if pid, err := strconv.Atoi(n); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// alive reports whether the process pid that started at start still runs.
// A zombie counts as gone: it has exited, and nobody may be left to reap it
// (an adopted process's parent is init, or whatever reaper the machine has).
func (e *osEnv) alive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := e.stat(pid)
	return err == nil && st.runs(start)
}

// nodeProc is a process that carries HANDOFF_NODE=<our node>: an instance's
// process, or one of its descendants (they inherit the environment).
type nodeProc struct {
	PID, PGID int
	Start     uint64
	Instance  string // its HANDOFF_INSTANCE
	App       string // its HANDOFF_APP
}

// leader reports whether p leads its process group, as every process the
// supervisor starts does (Setpgid); its descendants do not.
func (p nodeProc) leader() bool { return p.PID == p.PGID }

// scan finds the live processes that carry HANDOFF_NODE=node. It reads the
// environment each process was started with, which is how a restarted
// handoff finds a process whose PID it never wrote down. Processes it may
// not read (other users') are skipped: they cannot be ours.
func (e *osEnv) scan(node string) ([]nodeProc, error) {
	pids, err := e.pids()
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	want := []byte(envNode + "=" + node + "\x00")
	var found []nodeProc
	for _, pid := range pids {
		if pid == self {
			continue
		}
		env, err := e.environ(pid)
		if err != nil || !bytes.Contains(append([]byte{0}, env...), append([]byte{0}, want...)) {
			continue
		}
		id := lookupEnv(env, envInstance)
		st, err := e.stat(pid)
		if id == "" || err != nil || st.State == 'Z' || st.State == 'X' {
			continue
		}
		if st.SID == pid {
			// A descendant that began a session of its own (setsid: a
			// detached child, dumb-init): never an instance's process,
			// and the app's to end, not ours.
			continue
		}
		found = append(found, nodeProc{PID: pid, PGID: st.PGID, Start: st.Start, Instance: id, App: lookupEnv(env, envApp)})
	}
	return found, nil
}

// lookupEnv returns the value of key in a NUL-separated environment.
func lookupEnv(env []byte, key string) string {
	for kv := range bytes.SplitSeq(env, []byte{0}) {
		if k, v, ok := bytes.Cut(kv, []byte{'='}); ok && string(k) == key {
			return string(v)
		}
	}
	return ""
}

// signalGroup sends sig to the process group that pid leads, which is the
// instance: its process and whatever it started. A process that left its
// group (setsid) is signalled alone.
func (e *osEnv) signalGroup(pid int, sig syscall.Signal) error {
	err := e.kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		err = e.kill(pid, sig)
	}
	if err != nil {
		return fmt.Errorf("signal process %d: %w", pid, err)
	}
	return nil
}

// ProcessStart returns the start time of process pid, in clock ticks after
// boot: with the PID, it names the process for the life of the machine.
func ProcessStart(pid int) (uint64, error) {
	st, err := readStat(pid)
	return st.Start, err
}

// ProcessRuns reports whether the process pid that started at start still
// runs (a zombie has exited).
func ProcessRuns(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	st, err := readStat(pid)
	return err == nil && st.runs(start)
}

// bootID is the machine's boot ID (random, new at every boot).
var bootID = sync.OnceValue(func() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
})
