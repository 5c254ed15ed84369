package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
)

// A new Supervisor adopts what a detached one started — the same
// processes, no new ones — notices when an adopted process dies and
// restarts it, finds a process whose PID was never written by its
// environment, and kills a process of the node that no record knows. Run
// once watching through pidfds and once through the /proc fallback.
func TestAdoption(t *testing.T) {
	for _, watch := range []string{"pidfd", "proc"} {
		t.Run(watch, func(t *testing.T) {
			h := newHarness(t)
			ctx := context.Background()
			sup1 := h.open(nil)
			a, err := sup1.Start(ctx, h.spec("http", 0, nil))
			if err != nil {
				t.Fatal(err)
			}
			b, err := sup1.Start(ctx, h.spec("http", 1, nil))
			if err != nil {
				t.Fatal(err)
			}
			gate := filepath.Join(t.TempDir(), "gate")
			ws := h.spec("worker", 0, map[string]string{"CHILD_GATE": gate})
			ws.App = "mailin"
			w, err := sup1.Start(ctx, ws)
			if err != nil {
				t.Fatal(err)
			}
			// handoff goes away without touching its processes.
			if err := sup1.Detach(ctx); err != nil {
				t.Fatal(err)
			}

			// A process of the node that no record knows.
			orphan := startRaw(t, []string{envNode + "=" + h.node, envInstance + "=web-v0-9", envApp + "=web", envChild + "=http", "PORT=0"})
			// A record whose PID was never written, and its process.
			ghost := Instance{Spec: h.spec("http", 2, nil).withDefaults(), Node: h.node, State: StateStarting, Port: freePortForTest(t)}
			ghost.ID = ghost.Spec.ID()
			ghost.Log = filepath.Join(h.logDir, "web", ghost.ID+".log")
			if err := h.st.Put(ctx, KindInstance, h.node+"/"+ghost.ID, ghost); err != nil {
				t.Fatal(err)
			}
			ghostProc := startRaw(t, ghost.environ(nil))
			waitFor(t, "the ghost to carry its environment", func() bool { return len(h.procs()[ghost.ID]) == 1 })

			env := stdEnv()
			var watched atomic.Int32
			if watch == "proc" {
				env.pidfdOpen = func(int) (int, error) { watched.Add(1); return -1, syscall.ENOSYS }
				env.pollEvery = 20 * time.Millisecond
			} else {
				env.pidfdOpen = func(pid int) (int, error) {
					fd, err := pidfdOpen(pid)
					if err == nil {
						watched.Add(1)
					}
					return fd, err
				}
			}
			sup2 := h.open(env)

			select {
			case <-orphan.done:
			case <-time.After(10 * time.Second):
				t.Error("the orphan still runs")
			}
			want := map[int]string{a.PID: a.ID, b.PID: b.ID, w.PID: w.ID, ghostProc.cmd.Process.Pid: ghost.ID}
			if got := h.leaders(); !equalMaps(got, want) {
				t.Errorf("running after adoption: %v, want exactly %v", got, want)
			}
			for _, old := range []Instance{a, b, w} {
				now, err := sup2.Get(old.ID)
				if err != nil || now.PID != old.PID || now.Port != old.Port || now.State != StateRunning {
					t.Errorf("%s after adoption: %+v, %v; want pid %d, port %d, running", old.ID, now, err, old.PID, old.Port)
				}
			}
			g, err := sup2.Get(ghost.ID)
			if err != nil || g.PID != ghostProc.cmd.Process.Pid || g.State != StateRunning || g.StartTime == 0 {
				t.Errorf("ghost after adoption: %+v, %v; want pid %d, running", g, err, ghostProc.cmd.Process.Pid)
			}
			if rec, _ := h.record(ghost.ID); rec.PID != g.PID {
				t.Errorf("the ghost's record has pid %d, want %d", rec.PID, g.PID)
			}
			if !h.hasEvent(EventInstance, "killing orphan process "+strconv.Itoa(orphan.cmd.Process.Pid)) {
				t.Errorf("no orphan event in %v", h.events())
			}
			if watched.Load() == 0 {
				t.Errorf("pidfd_open was never called")
			}

			// An adopted process dies: it is noticed and restarted, on its port.
			if err := syscall.Kill(a.PID, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			var now Instance
			waitFor(t, "the adopted instance to be restarted", func() bool {
				now, _ = sup2.Get(a.ID)
				return now.PID != 0 && now.PID != a.PID
			})
			if now.Port != a.Port || now.Restarts != 1 || now.LastExit != unknownExit {
				t.Errorf("restarted: port %d, restarts %d, last exit %q; want port %d, 1 restart, %q", now.Port, now.Restarts, now.LastExit, a.Port, unknownExit)
			}
			if info := askUntil(t, now.Port); info.PID != now.PID {
				t.Errorf("port %d answered by %d, want %d", now.Port, info.PID, now.PID)
			}

			// An adopted instance stops, and an adopted worker drains.
			final, err := sup2.Stop(ctx, b.ID)
			if err != nil || final.LastExit != unknownExit {
				t.Errorf("stop adopted: %+v, %v", final, err)
			}
			if _, err := sup2.Drain(ctx, w.ID); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the adopted worker to drain", func() bool { return strings.Contains(readLog(t, w.Log), "child: draining") })
			if err := writeFile(gate); err != nil {
				t.Fatal(err)
			}
			if _, err := sup2.Wait(ctx, w.ID); err != nil && !errors.Is(err, ErrNotFound) {
				t.Fatal(err)
			}
			waitFor(t, "only the restarted instance and the ghost", func() bool { return len(h.leaders()) == 2 })
		})
	}
}

func equalMaps[K, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func freePortForTest(t *testing.T) int {
	t.Helper()
	s := &Supervisor{env: stdEnv(), ports: map[int]string{}}
	port, err := s.freePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Instances that died while no handoff watched are restarted, on their
// port; a stop that was under way when both died is finished.
func TestRestoreRestartsTheDead(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	sup1 := h.open(nil)
	a, err := sup1.Start(ctx, h.spec("http", 0, nil))
	if err != nil {
		t.Fatal(err)
	}
	b, err := sup1.Start(ctx, h.spec("http", 1, nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := sup1.Detach(ctx); err != nil {
		t.Fatal(err)
	}
	// b was being stopped when handoff died; both die while it is away.
	rec, _ := h.record(b.ID)
	rec.State, rec.Signalled = StateStopping, time.Now()
	if err := h.st.Put(ctx, KindInstance, h.node+"/"+b.ID, rec); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{a.PID, b.PID} {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	waitFor(t, "both to die", func() bool { return len(h.leaders()) == 0 })

	sup2 := h.open(nil)
	now, err := sup2.Get(a.ID)
	if err != nil || now.PID == 0 || now.PID == a.PID || now.Port != a.Port || now.Restarts != 1 {
		t.Fatalf("after restore: %+v, %v; want a new process on port %d, 1 restart", now, err, a.Port)
	}
	if info := askUntil(t, now.Port); info.PID != now.PID {
		t.Errorf("port %d answered by %d, want %d", now.Port, info.PID, now.PID)
	}
	if _, err := sup2.Get(b.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("the stopped instance: %v, want ErrNotFound", err)
	}
	if _, ok := h.record(b.ID); ok {
		t.Error("the stopped instance's record is left")
	}
	if got := h.leaders(); len(got) != 1 {
		t.Errorf("running: %v, want only %d", got, now.PID)
	}
}

// handoff is killed -9 at each step of Start, Stop and Drain; a new
// Supervisor on the same state neither loses the instance nor runs it
// twice, and finishes what was under way.
func TestKillNine(t *testing.T) {
	for _, step := range []string{stepStartPersisted, stepStartSpawned, stepStartRecorded, stepRestartSpawned} {
		t.Run(step, func(t *testing.T) {
			h := newHarness(t)
			spec := h.spec("http", 0, nil)
			if step == stepRestartSpawned { // crash once, so that it is restarted
				spec = h.spec("flaky", 0, map[string]string{"CHILD_CRASHES": "1", "CHILD_COUNT": filepath.Join(t.TempDir(), "count")})
			}
			runHandoff(t, h, step, "start", spec)
			rec, ok := h.record(spec.ID())
			if !ok {
				t.Fatal("no record after the crash")
			}
			before := h.leaders()
			switch step {
			case stepStartPersisted:
				if len(before) != 0 || rec.PID != 0 || rec.State != StateStarting {
					t.Fatalf("before restore: processes %v, record %+v", before, rec)
				}
			case stepStartSpawned, stepRestartSpawned:
				if len(before) != 1 || rec.PID != 0 {
					t.Fatalf("before restore: processes %v, record %+v", before, rec)
				}
			case stepStartRecorded:
				if len(before) != 1 || before[rec.PID] != rec.ID {
					t.Fatalf("before restore: processes %v, record %+v", before, rec)
				}
			}
			sup := h.open(nil)
			inst, err := sup.Get(spec.ID())
			if err != nil || inst.State != StateRunning || inst.Restarts != 0 || inst.StartTime == 0 {
				t.Fatalf("after restore: %+v, %v", inst, err)
			}
			after := h.leaders()
			if len(after) != 1 || after[inst.PID] != inst.ID {
				t.Fatalf("after restore: processes %v, want only %s as %d", after, inst.ID, inst.PID)
			}
			for pid := range before {
				if pid != inst.PID {
					t.Errorf("process %d was replaced by %d", pid, inst.PID)
				}
			}
			if rec, _ := h.record(inst.ID); rec.PID != inst.PID {
				t.Errorf("record pid %d, want %d", rec.PID, inst.PID)
			}
			if info := askUntil(t, inst.Port); info.PID != inst.PID {
				t.Errorf("port %d answered by %d, want %d", inst.Port, info.PID, inst.PID)
			}
		})
	}
	for _, step := range []string{stepStopPersisted, stepStopSignalled} {
		t.Run(step, func(t *testing.T) {
			h := newHarness(t)
			spec := h.spec("http", 0, nil)
			spec.Stop.Timeout = config.Duration(time.Hour) // only the stop signal ends it in time
			runHandoff(t, h, step, "stop", spec)
			rec, _ := h.record(spec.ID())
			if rec.State != StateStopping || rec.Signalled.IsZero() != (step == stepStopPersisted) {
				t.Fatalf("before restore: record %+v", rec)
			}
			h.open(nil)
			waitFor(t, "the stop to finish", func() bool {
				_, ok := h.record(spec.ID())
				return !ok && len(h.procs()) == 0
			})
			if n := strings.Count(readLog(t, rec.Log), "child: got SIGTERM"); n != 1 {
				t.Errorf("the instance got SIGTERM %d times, want once", n)
			}
		})
	}
	for _, step := range []string{stepDrainPersisted, stepDrainSignalled} {
		t.Run(step, func(t *testing.T) {
			h := newHarness(t)
			gate := filepath.Join(t.TempDir(), "gate")
			spec := h.spec("worker", 0, map[string]string{"CHILD_GATE": gate})
			runHandoff(t, h, step, "drain", spec)
			sup := h.open(nil)
			inst, err := sup.Get(spec.ID())
			if err != nil || inst.State != StateDraining || inst.Signalled.IsZero() || inst.DrainingSince.IsZero() {
				t.Fatalf("after restore: %+v, %v; want draining, signalled", inst, err)
			}
			waitFor(t, "the drain signal", func() bool { return strings.Contains(readLog(t, inst.Log), "child: draining") })
			if err := writeFile(gate); err != nil {
				t.Fatal(err)
			}
			final, err := sup.Wait(context.Background(), inst.ID)
			if err != nil || final.Restarts != 0 {
				t.Fatalf("wait: %+v, %v", final, err)
			}
			if n := strings.Count(readLog(t, inst.Log), "child: draining"); n != 1 {
				t.Errorf("the worker got its drain signal %d times, want once", n)
			}
			if len(h.procs()) != 0 {
				t.Error("a process is left")
			}
		})
	}
}

// runHandoff runs a handoff process that starts spec, then stops or drains
// it if action says so, and dies by SIGKILL at step.
func runHandoff(t *testing.T, h *harness, step, action string, spec Spec) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envChild+"=handoff", "GORACE=atexit_sleep_ms=0", "TEST_STATE="+h.path, "TEST_NODE="+h.node,
		"TEST_LOGDIR="+h.logDir, "TEST_CRASH_AT="+step, "TEST_ACTION="+action, "TEST_SPEC="+string(js))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	t.Logf("handoff process:\n%s", out.String())
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("handoff process ended with %v, want death by SIGKILL at %s", err, step)
	}
}
