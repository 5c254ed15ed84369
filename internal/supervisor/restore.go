package supervisor

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// restore takes over what a previous handoff process of this node left: the
// records in the store and the processes in /proc. Processes to kill die
// before any instance is restarted, so that none holds a port or a job that
// its replacement needs.
func (s *Supervisor) restore(ctx context.Context) error {
	records, err := s.records(ctx)
	if err != nil {
		return err
	}
	procs, err := s.env.scan(s.opts.Node)
	if err != nil {
		return fmt.Errorf("find the node's processes: %w", err)
	}
	// Oldest first: if an instance has two processes, the one that has
	// served longer is kept.
	slices.SortFunc(procs, func(a, b nodeProc) int { return cmp.Compare(a.Start, b.Start) })
	byID := map[string][]nodeProc{}
	for _, p := range procs {
		byID[p.Instance] = append(byID[p.Instance], p)
	}
	type found struct {
		inst Instance
		live *nodeProc
	}
	var (
		plan   []found
		doomed []nodeProc
	)
	for _, inst := range records {
		live, strays := s.find(inst, byID[inst.ID])
		for _, p := range strays {
			s.event(inst, EventInstance, "killing stray process %d: %s", p.PID, strayWhy(live))
		}
		doomed = append(doomed, strays...)
		plan = append(plan, found{inst, live})
		delete(byID, inst.ID)
	}
	for id, ps := range byID {
		for _, p := range ps {
			s.event(Instance{ID: id, Spec: Spec{App: p.App}}, EventInstance, "killing orphan process %d: no record of its instance", p.PID)
			doomed = append(doomed, p)
		}
	}
	s.killAll(ctx, doomed)

	var firsts []chan struct{}
	for _, f := range plan {
		if done := s.resume(f.inst, f.live); done != nil {
			firsts = append(firsts, done)
		}
	}
	for _, done := range firsts {
		<-done
	}
	return nil
}

func strayWhy(live *nodeProc) string {
	if live == nil {
		return "its instance's process is gone"
	}
	return fmt.Sprintf("its instance runs as process %d", live.PID)
}

// records loads this node's instance records.
func (s *Supervisor) records(ctx context.Context) ([]Instance, error) {
	docs, err := s.store.List(ctx, KindInstance)
	if err != nil {
		return nil, fmt.Errorf("load instances: %w", err)
	}
	var out []Instance
	for _, d := range docs {
		if !strings.HasPrefix(d.Key, s.opts.Node+"/") {
			continue
		}
		var inst Instance
		if err := d.Decode(&inst); err != nil {
			return nil, fmt.Errorf("load instances: %w", err)
		}
		out = append(out, inst)
	}
	return out, nil
}

// find picks an instance's live process: the recorded PID with the
// recorded start time (whatever its environment now shows), else, among
// cands, the processes whose environment carries this node's ID and the
// instance's HANDOFF_INSTANCE, a process group leader (its PID was never
// written: handoff died between the start and the write). Another process
// without both names in its environment is never adopted nor killed: it
// is not this installation's.
// strays are the instance's other processes that must go: a second leader
// (an instance never runs twice), or what a dead leader left behind.
func (s *Supervisor) find(inst Instance, cands []nodeProc) (live *nodeProc, strays []nodeProc) {
	for i := range cands {
		if p := cands[i]; inst.PID != 0 && p.PID == inst.PID && p.Start == inst.StartTime {
			live = &nodeProc{PID: p.PID, PGID: p.PID, Start: p.Start, Instance: inst.ID, App: inst.App}
		}
	}
	if live == nil && inst.PID != 0 && inst.Boot != "" && inst.Boot == bootID() {
		// The recorded PID with its start time names the process even when
		// its environment no longer says whose it is: a server that sets
		// its process title (Puma, gunicorn with setproctitle, Perl's $0)
		// writes over the memory /proc/PID/environ reads. (Since the same
		// boot: after a reboot they may name somebody else's process.)
		if st, err := s.env.stat(inst.PID); err == nil && st.runs(inst.StartTime) && st.PGID == inst.PID {
			live = &nodeProc{PID: inst.PID, PGID: inst.PID, Start: st.Start, Instance: inst.ID, App: inst.App}
		}
	}
	for _, p := range cands {
		switch {
		case live != nil && p.PID == live.PID:
		case live == nil && p.leader():
			live = &p
		case p.leader(), live == nil:
			strays = append(strays, p)
		}
	}
	if live == nil {
		return nil, cands
	}
	// Non-leaders of a dead leader found before a live leader was.
	strays = slices.DeleteFunc(strays, func(p nodeProc) bool { return !p.leader() && p.PGID == live.PID })
	return live, strays
}

// killAll ends processes that no instance may keep: SIGTERM, then SIGKILL
// after OrphanGrace. A group leader is signalled with its group; any other
// process alone, since its group may belong to a live instance.
func (s *Supervisor) killAll(ctx context.Context, doomed []nodeProc) {
	var wg sync.WaitGroup
	for _, p := range doomed {
		wg.Go(func() {
			signal := func(sig syscall.Signal) {
				var err error
				if p.leader() {
					err = s.env.signalGroup(p.PID, sig)
				} else {
					err = s.env.kill(p.PID, sig)
				}
				if err != nil {
					s.log.Debug("signal process", "pid", p.PID, "error", err)
				}
			}
			signal(syscall.SIGTERM)
			if s.waitGone(ctx, p, s.opts.OrphanGrace) {
				return
			}
			signal(syscall.SIGKILL)
			if !s.waitGone(ctx, p, killWait) {
				s.log.Error("process survives SIGKILL", "pid", p.PID, "instance", p.Instance)
			}
		})
	}
	wg.Wait()
}

// waitGone checks every 20ms, for up to d, whether p has exited.
func (s *Supervisor) waitGone(ctx context.Context, p nodeProc, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for s.env.alive(p.PID, p.Start) {
		select {
		case <-ctx.Done():
			return false
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
	return true
}

// resume puts one recorded instance back under supervision: it adopts its
// live process (finishing a stop or drain under way), restarts it if it
// should run and does not, and deletes the record of one that was ending
// and is gone. It returns a channel closed when the instance is settled,
// or nil if there is no instance left.
func (s *Supervisor) resume(inst Instance, live *nodeProc) chan struct{} {
	if live == nil && inst.State.ending() && !inst.Suspending {
		ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
		defer cancel()
		if err := s.store.Delete(ctx, KindInstance, s.key(inst.ID)); err != nil {
			s.log.Error("delete instance record", "instance", inst.ID, "error", err)
		}
		s.event(inst, EventInstance, "%s: exited while handoff was away", inst.State)
		return nil
	}
	s.mu.Lock()
	sl := s.addSlot(inst)
	s.wg.Add(1)
	s.mu.Unlock()
	m := s.newMonitor(sl, inst)
	done := make(chan struct{})
	go m.run(s.ctx, func() bool {
		defer close(done)
		if live != nil {
			m.adoptLive(live)
		} else {
			m.respawnDead()
		}
		return true
	})
	return done
}

// adoptLive watches a live process found at restore, and carries on with
// the stop or drain it was in.
func (m *monitor) adoptLive(live *nodeProc) {
	found := m.inst.PID != live.PID || m.inst.StartTime != live.Start
	m.inst.PID, m.inst.StartTime, m.inst.Boot = live.PID, live.Start, bootID()
	m.proc = m.adopt(live.PID, live.Start)
	if m.inst.Suspending {
		// The handoff that suspended it died before the process exited:
		// it is to run, so it runs on. (If the signal went out, its exit
		// is a crash, and it is restarted.)
		m.inst.Suspending, m.inst.Signalled, m.inst.DrainingSince = false, time.Time{}, time.Time{}
		m.inst.State = StateStarting
	}
	switch m.inst.State {
	case StateStarting, StateBackoff, StateSuspended:
		m.inst.State, m.inst.Since = StateRunning, time.Now().UTC()
		found = true
	}
	how := "recorded"
	if found {
		how = "found by its environment"
		m.saveOrLog()
	} else {
		m.publish()
	}
	m.s.event(m.inst, EventInstance, "adopted process %d (%s), %s", live.PID, how, m.inst.State)
	if !m.inst.State.ending() {
		m.stable = time.NewTimer(m.s.opts.StableAfter)
		return
	}
	sig := m.inst.Stop
	if m.inst.State == StateDraining {
		sig = m.inst.Drain
	}
	if m.inst.Signalled.IsZero() {
		m.signal(sig) // the last handoff died before it could send it
		return
	}
	m.kill = time.NewTimer(max(0, time.Until(m.deadline(sig))))
}

// respawnDead starts the process of an instance that should run and does
// not: it died while no handoff watched it, or was never started.
func (m *monitor) respawnDead() {
	if m.inst.State == StateSuspended || m.inst.Suspending {
		m.inst.State, m.inst.Suspending, m.inst.Signalled, m.inst.DrainingSince = StateStarting, false, time.Time{}, time.Time{}
		m.inst.PID, m.inst.StartTime = 0, 0
		m.respawnAs("started again: it was suspended with handoff", false)
		return
	}
	if m.inst.PID == 0 && m.inst.State == StateStarting {
		m.respawnAs("started: handoff died before it could", false)
		return
	}
	if m.inst.PID != 0 {
		m.inst.LastExit = "exited while handoff was away"
	}
	m.inst.PID, m.inst.StartTime = 0, 0
	m.respawn("restarted: not running when handoff started")
}
