package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
)

// monitor is the goroutine that owns one instance: its record, its process,
// and its timers. Only it writes the record, starts the process or signals
// it, so no two of those can race.
type monitor struct {
	s    *Supervisor
	sl   *slot
	inst Instance
	proc *proc // nil while no process runs

	restart *time.Timer // armed in backoff
	kill    *time.Timer // armed while stopping or draining: SIGKILL when it fires
	stable  *time.Timer // armed while a process runs: backoff starts over when it fires

	backoff time.Duration // the next restart's delay
	crashes []time.Time   // within the crash loop window
}

// proc is one process of an instance.
type proc struct {
	pid   int
	start uint64
	// exited receives, once, how the process ended.
	exited chan string
}

// unknownExit is how an adopted process ended: only its parent could know.
const unknownExit = "exited (status unknown: not handoff's child)"

func (s *Supervisor) newMonitor(sl *slot, inst Instance) *monitor {
	return &monitor{s: s, sl: sl, inst: inst, backoff: s.opts.BackoffMin}
}

// run is the monitor's loop. first runs before it and says whether the
// instance exists (a failed Start ends the monitor at once). The loop ends
// when the instance is gone or the Supervisor is detached.
func (m *monitor) run(ctx context.Context, first func() bool) {
	defer m.s.wg.Done()
	defer m.stopTimers()
	if !first() {
		return
	}
	for {
		var exited chan string
		if m.proc != nil {
			exited = m.proc.exited
		}
		select {
		case <-ctx.Done():
			return // processes stay; see Detach
		case how := <-exited:
			if m.exited(how) {
				return
			}
		case <-timerC(m.restart):
			m.restart = nil
			m.respawn("restarted after a crash")
		case <-timerC(m.kill):
			m.kill = nil
			m.killAfterTimeout()
		case <-timerC(m.stable):
			m.stable = nil
			m.steady()
		case c := <-m.sl.cmds:
			err := m.command(c.op)
			c.reply <- err
			if m.inst.State == StateExited {
				return
			}
		}
	}
}

func timerC(t *time.Timer) <-chan time.Time {
	if t == nil {
		return nil
	}
	return t.C
}

func (m *monitor) stopTimers() {
	for _, t := range []**time.Timer{&m.restart, &m.kill, &m.stable} {
		if *t != nil {
			(*t).Stop()
			*t = nil
		}
	}
}

// save publishes the instance to the Supervisor's readers and writes its
// record. In memory the new state holds even if the write fails: the
// process is what it is, and a restarted handoff finds it by its
// environment whatever the record says.
func (m *monitor) save() error {
	m.publish()
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := m.s.store.Put(ctx, KindInstance, m.s.key(m.inst.ID), m.inst); err != nil {
		return fmt.Errorf("save instance %s: %w", m.inst.ID, err)
	}
	return nil
}

// saveOrLog saves where a failed write changes nothing that should be done.
func (m *monitor) saveOrLog() {
	if err := m.save(); err != nil {
		m.s.log.Error("save instance", "instance", m.inst.ID, "error", err)
	}
}

func (m *monitor) publish() {
	m.s.mu.Lock()
	m.sl.view = m.inst
	m.s.mu.Unlock()
}

// start is Start's sequence: record, process, PID — each step after the
// one before it is durable, so a death of handoff between two steps leaves
// what Restore can resolve (see the step* constants).
func (m *monitor) start(ctx context.Context) error {
	if err := m.save(); err != nil {
		m.forget(ctx)
		return fmt.Errorf("start %s: %w", m.inst.ID, err)
	}
	m.s.env.step(stepStartPersisted)
	p, err := m.spawn()
	if err != nil {
		m.forget(ctx)
		return fmt.Errorf("start %s: %w", m.inst.ID, err)
	}
	m.s.env.step(stepStartSpawned)
	m.running(p, StateRunning)
	if err := m.save(); err != nil {
		// Start promises all or nothing, so the process goes too.
		m.s.env.signalGroup(p.pid, syscall.SIGKILL)
		<-p.exited
		m.forget(ctx)
		return fmt.Errorf("start %s: %w", m.inst.ID, err)
	}
	m.s.env.step(stepStartRecorded)
	m.s.event(m.inst, EventInstance, "started (pid %d%s, release %s)", p.pid, portText(m.inst.Port), m.inst.Release)
	return nil
}

func portText(port int) string {
	if port == 0 {
		return ""
	}
	return fmt.Sprintf(", port %d", port)
}

// forget drops an instance whose Start failed.
func (m *monitor) forget(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := m.s.store.Delete(ctx, KindInstance, m.s.key(m.inst.ID)); err != nil {
		m.s.log.Error("delete instance record", "instance", m.inst.ID, "error", err)
	}
	m.inst.State = StateExited
	m.s.removeSlot(m.sl, m.inst)
}

// running makes p the instance's process, in state.
func (m *monitor) running(p *proc, state State) {
	now := time.Now().UTC()
	m.proc = p
	m.inst.PID, m.inst.StartTime, m.inst.Started, m.inst.Boot = p.pid, p.start, now, bootID()
	if m.inst.State != state {
		m.inst.State, m.inst.Since = state, now
	}
	m.stable = time.NewTimer(m.s.opts.StableAfter)
}

// spawn starts the instance's process in its own process group, with its
// output appended to its log file, and a goroutine that waits for it.
func (m *monitor) spawn() (*proc, error) {
	inst := m.inst
	if err := os.MkdirAll(filepath.Dir(inst.Log), 0o750); err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	// The child gets the file itself, not a pipe from handoff, so that its
	// output is kept when handoff dies or is upgraded.
	logf, err := os.OpenFile(inst.Log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	// A line of our own marks where each process's output begins.
	if _, err := fmt.Fprintf(logf, "--- handoff: %s starting %s (release %s%s) in %s\n",
		time.Now().UTC().Format(time.RFC3339), inst.ID, inst.Release, portText(inst.Port), inst.Dir); err != nil {
		m.s.log.Warn("write log file", "instance", inst.ID, "error", err)
	}
	cmd := exec.Command(inst.Command[0], inst.Command[1:]...)
	cmd.Dir = inst.Dir
	cmd.Env = inst.environ(m.s.env.selfEnv())
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group: a signal to handoff's group (Ctrl-C) does not
	// reach it, and one kill(-pgid) reaches it and all it started.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = m.s.env.start(cmd)
	if cerr := logf.Close(); cerr != nil {
		m.s.log.Warn("close log file", "instance", inst.ID, "error", cerr)
	}
	if err != nil {
		return nil, fmt.Errorf("run %s: %w", strings.Join(inst.Command, " "), err)
	}
	p := &proc{pid: cmd.Process.Pid, exited: make(chan string, 1)}
	// The child is not reaped before Wait, so its stat is there to read.
	if st, err := m.s.env.stat(p.pid); err == nil {
		p.start = st.Start
	} else {
		m.s.log.Warn("read start time; a restarted handoff will find the process by its environment", "instance", inst.ID, "error", err)
	}
	go func() {
		err := cmd.Wait()
		var exit *exec.ExitError
		switch {
		case err == nil, errors.As(err, &exit):
			p.exited <- cmd.ProcessState.String()
		default:
			p.exited <- "wait: " + err.Error()
		}
	}()
	return p, nil
}

// adopt watches a process a previous handoff process started.
func (m *monitor) adopt(pid int, start uint64) *proc {
	p := &proc{pid: pid, start: start, exited: make(chan string, 1)}
	m.s.wg.Add(1)
	go func() {
		defer m.s.wg.Done()
		if m.s.waitExit(m.s.ctx, pid, start) {
			p.exited <- unknownExit
		}
	}()
	return p
}

// exited handles the end of the instance's process and reports whether the
// instance is gone (it was being stopped or drained).
func (m *monitor) exited(how string) (gone bool) {
	pid := m.proc.pid
	m.proc = nil
	// The instance is its process group: what the process left behind in
	// it goes too, so that nothing holds the port or the release. (The
	// leader may be reaped by now; its PID could only name a stranger's
	// group if PIDs wrapped around within these microseconds.)
	if err := m.s.env.kill(-pid, syscall.SIGKILL); err == nil {
		m.s.log.Debug("killed what the instance's process left in its group", "instance", m.inst.ID, "pgid", pid)
	}
	m.stopTimers()
	m.logLine("process %d ended: %s", pid, how)
	m.inst.PID, m.inst.StartTime, m.inst.LastExit = 0, 0, how
	if m.inst.State.ending() {
		if m.inst.State == StateDraining {
			m.finish("drained: %s after %s", how, since(m.inst.DrainingSince))
		} else {
			m.finish("stopped: %s", how)
		}
		return true
	}
	m.crashed(how)
	return false
}

// finish deletes the record of an instance that was stopped or drained and
// has exited, and says so in the event log.
func (m *monitor) finish(format string, args ...any) {
	if m.inst.Suspending {
		m.suspended(format, args...)
		return
	}
	m.inst.State, m.inst.Since = StateExited, time.Now().UTC()
	m.publish()
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := m.s.store.Delete(ctx, KindInstance, m.s.key(m.inst.ID)); err != nil {
		// A restarted handoff deletes it: a stopping record without a process.
		m.s.log.Error("delete instance record", "instance", m.inst.ID, "error", err)
	}
	// The event first: when Stop or Wait returns, the log says so.
	m.s.event(m.inst, EventInstance, format, args...)
	m.s.removeSlot(m.sl, m.inst)
}

func since(t time.Time) time.Duration { return time.Since(t).Round(time.Millisecond) }

// crashed schedules the restart of an instance whose process ended
// unexpectedly, after a delay that doubles with each crash, and reports a
// crash loop.
func (m *monitor) crashed(how string) {
	now := time.Now().UTC()
	recent := m.crashes[:0]
	for _, t := range m.crashes {
		if now.Sub(t) < m.s.opts.CrashLoopWindow {
			recent = append(recent, t)
		}
	}
	m.crashes = append(recent, now)
	delay := m.backoff
	m.backoff = min(2*m.backoff, m.s.opts.BackoffMax)
	looping := m.inst.State == StateCrashLoop
	switch {
	case looping:
	case len(m.crashes) >= m.s.opts.CrashLoop:
		m.inst.State, m.inst.Since = StateCrashLoop, now
	default:
		m.inst.State, m.inst.Since = StateBackoff, now
	}
	m.saveOrLog()
	m.restart = time.NewTimer(delay)
	m.s.event(m.inst, EventInstance, "exited unexpectedly (%s); restarting in %s", how, delay)
	if !looping && m.inst.State == StateCrashLoop {
		m.s.event(m.inst, EventCrashLoop, "crash loop: %d crashes within %s, the last %s; restarting at most every %s",
			len(m.crashes), m.s.opts.CrashLoopWindow, how, m.s.opts.BackoffMax)
	}
}

// respawn starts a new process in the instance's slot, on its port. A
// failure to start counts as a crash.
func (m *monitor) respawn(why string) {
	m.respawnAs(why, true)
}

// respawnAs is respawn; a process that never ran (a Start that handoff
// died in before the spawn) is not counted as a restart.
func (m *monitor) respawnAs(why string, restart bool) {
	p, err := m.spawn()
	if err != nil {
		m.inst.LastExit = err.Error()
		m.crashed(err.Error())
		return
	}
	m.s.env.step(stepRestartSpawned)
	if restart {
		m.inst.Restarts++
	}
	state := StateRunning
	if m.inst.State == StateCrashLoop {
		state = StateCrashLoop // until it has stayed up: see steady
	}
	m.running(p, state)
	m.saveOrLog()
	m.s.event(m.inst, EventInstance, "%s (pid %d%s, restart %d)", why, p.pid, portText(m.inst.Port), m.inst.Restarts)
}

// steady is called when a process has stayed up for StableAfter: its
// crashes are forgiven.
func (m *monitor) steady() {
	m.backoff, m.crashes = m.s.opts.BackoffMin, nil
	if m.inst.State == StateCrashLoop && m.proc != nil {
		m.inst.State, m.inst.Since = StateRunning, time.Now().UTC()
		m.saveOrLog()
		m.s.event(m.inst, EventCrashLoop, "recovered from its crash loop: up for %s", m.s.opts.StableAfter)
	}
}

// op is what a caller asks of a monitor.
type op string

const (
	opStop  op = "stop"
	opDrain op = "drain"
	opKill  op = "kill"
	// opSuspend stops (a worker: drains) the instance but keeps its record
	// to start it again with the next handoff serve.
	opSuspend op = "suspend"
)

type command struct {
	op    op
	reply chan error // buffered: the monitor never waits on a caller
}

// command starts a stop, a drain or a kill. The new state is written before
// the signal is sent: a handoff that dies between the two leaves a record
// that says what was meant, and Signalled zero says the signal may be
// missing, so a restarted handoff sends it.
func (m *monitor) command(o op) error {
	if o == opSuspend {
		m.inst.Suspending = true
		if o = opStop; m.inst.Kind == config.KindWorker {
			o = opDrain
		}
	}
	if m.proc == nil { // in backoff: there is nothing to signal
		m.stopTimers()
		m.finish("%s while %s: no process was running", o, m.inst.State)
		return nil
	}
	switch {
	case o == opKill:
		return m.killNow()
	case m.inst.State == StateStopping, o == opDrain && m.inst.State == StateDraining:
		return nil // under way; a drain does not soften a stop
	}
	prev := m.inst
	state, sig, steps := StateStopping, m.inst.Stop, [2]string{stepStopPersisted, stepStopSignalled}
	if o == opDrain {
		state, sig, steps = StateDraining, m.inst.Drain, [2]string{stepDrainPersisted, stepDrainSignalled}
		m.inst.DrainingSince = time.Now().UTC()
	}
	m.inst.State, m.inst.Since, m.inst.Signalled = state, time.Now().UTC(), time.Time{}
	if err := m.save(); err != nil {
		m.inst = prev
		m.publish()
		return fmt.Errorf("%s %s: %w", o, m.inst.ID, err)
	}
	m.stopTimers()
	m.s.env.step(steps[0])
	m.signal(sig)
	m.s.env.step(steps[1])
	return nil
}

// signal sends sig to the instance, records when, and arms the SIGKILL
// that follows after sig's timeout (counted from Signalled, so that a
// restarted handoff keeps the same deadline).
func (m *monitor) signal(sig config.Signal) {
	if err := m.s.env.signalGroup(m.proc.pid, config.Signals[sig.Signal]); err != nil {
		m.s.log.Warn("signal instance", "instance", m.inst.ID, "signal", sig.Signal, "error", err)
	}
	if m.inst.Signalled.IsZero() {
		m.inst.Signalled = time.Now().UTC()
		m.saveOrLog()
	}
	m.s.event(m.inst, EventInstance, "%s: sent %s; SIGKILL in %s", m.inst.State, sig.Signal, time.Until(m.deadline(sig)).Round(time.Millisecond))
	m.kill = time.NewTimer(max(0, time.Until(m.deadline(sig))))
}

func (m *monitor) deadline(sig config.Signal) time.Time {
	return m.inst.Signalled.Add(sig.Timeout.D())
}

// killNow sends SIGKILL at once; the exit is then a stop, not a crash.
func (m *monitor) killNow() error {
	if !m.inst.State.ending() {
		prev := m.inst
		m.inst.State, m.inst.Since = StateStopping, time.Now().UTC()
		if err := m.save(); err != nil {
			m.inst = prev
			m.publish()
			return fmt.Errorf("kill %s: %w", m.inst.ID, err)
		}
	}
	m.stopTimers()
	if err := m.s.env.signalGroup(m.proc.pid, syscall.SIGKILL); err != nil {
		m.s.log.Warn("kill instance", "instance", m.inst.ID, "error", err)
	}
	m.s.event(m.inst, EventInstance, "killed (SIGKILL)")
	return nil
}

func (m *monitor) killAfterTimeout() {
	sig := m.inst.Stop
	if m.inst.State == StateDraining {
		sig = m.inst.Drain
	}
	if err := m.s.env.signalGroup(m.proc.pid, syscall.SIGKILL); err != nil {
		m.s.log.Warn("kill instance", "instance", m.inst.ID, "error", err)
	}
	m.s.event(m.inst, EventInstance, "killed (SIGKILL): still running %s after %s", sig.Timeout, sig.Signal)
}

// suspended keeps the record of an instance that Suspend stopped, as
// StateSuspended, for the next handoff serve to start again.
func (m *monitor) suspended(format string, args ...any) {
	m.inst.State, m.inst.Since, m.inst.Signalled = StateSuspended, time.Now().UTC(), time.Time{}
	if err := m.save(); err != nil {
		// A restarted handoff finds a suspending record without a process,
		// and starts it again all the same (see resume).
		m.s.log.Error("save suspended instance", "instance", m.inst.ID, "error", err)
	}
	m.s.event(m.inst, EventInstance, "suspended with handoff ("+format+"); it starts again with the next handoff serve", args...)
	final := m.inst
	final.State = StateExited // to Stop and Wait, the process is gone
	m.s.removeSlot(m.sl, final)
}

// logLine writes a line of handoff's own to the instance's log, beside
// its output: how each process started and ended, in one place.
func (m *monitor) logLine(format string, args ...any) {
	f, err := os.OpenFile(m.inst.Log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return // no log (yet): the event log says it all the same
	}
	defer f.Close()
	fmt.Fprintf(f, "--- handoff: %s %s\n", time.Now().UTC().Format(time.RFC3339), fmt.Sprintf(format, args...))
}
