package supervisor

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/store"
)

func TestStartInstances(t *testing.T) {
	h := newHarness(t)
	sup := h.open(nil)
	ctx := context.Background()
	ports := map[int]bool{}
	var insts []Instance
	for i := range 3 {
		inst, err := sup.Start(ctx, h.spec("http", i, map[string]string{"APP_VAR": "x" + strconv.Itoa(i)}))
		if err != nil {
			t.Fatalf("start %d: %v", i, err)
		}
		if inst.State != StateRunning || inst.PID == 0 || inst.Port == 0 {
			t.Fatalf("start %d: got %+v, want running with a PID and a port", i, inst)
		}
		if ports[inst.Port] {
			t.Fatalf("start %d: port %d given twice", i, inst.Port)
		}
		ports[inst.Port] = true
		insts = append(insts, inst)
	}
	for i, inst := range insts {
		info := askUntil(t, inst.Port)
		want := map[string]string{
			envPort: strconv.Itoa(inst.Port), envNode: h.node, envInstance: "web-v1-" + strconv.Itoa(i),
			envApp: "web", envRelease: "v1", "APP_VAR": "x" + strconv.Itoa(i),
		}
		for k, v := range want {
			if info.Env[k] != v {
				t.Errorf("instance %d: %s=%q, want %q", i, k, info.Env[k], v)
			}
		}
		if info.PID != inst.PID || info.PGID != inst.PID {
			t.Errorf("instance %d: answered from pid %d in group %d, want %d leading its own group", i, info.PID, info.PGID, inst.PID)
		}
		if info.Cwd != h.dir {
			t.Errorf("instance %d: runs in %s, want the release dir %s", i, info.Cwd, h.dir)
		}
		if want := filepath.Join(h.logDir, "web", inst.ID+".log"); inst.Log != want {
			t.Errorf("instance %d: log %s, want %s", i, inst.Log, want)
		}
		log := readLog(t, inst.Log)
		for _, line := range []string{"child: listening pid=" + strconv.Itoa(inst.PID), "child: stderr pid=" + strconv.Itoa(inst.PID)} {
			if !strings.Contains(log, line) {
				t.Errorf("instance %d: log lacks %q:\n%s", i, line, log)
			}
		}
		rec, ok := h.record(inst.ID)
		if !ok || rec.PID != inst.PID || rec.StartTime == 0 || rec.State != StateRunning {
			t.Errorf("instance %d: record %+v (found %v), want running with pid %d and its start time", i, rec, ok, inst.PID)
		}
	}
	if got := sup.List("web"); len(got) != 3 {
		t.Errorf("List(web) = %d instances, want 3", len(got))
	}
	if !sup.InUse()[h.dir] {
		t.Errorf("InUse() = %v, want the release dir in use", sup.InUse())
	}
	logs, err := sup.Logs("web")
	if err != nil || len(logs) != 3 {
		t.Errorf("Logs(web) = %v, %v; want 3 files", logs, err)
	}
	if !h.hasEvent(EventInstance, "web-v1-2: started") {
		t.Errorf("no start event in %v", h.events())
	}
}

func TestStartIsIdempotent(t *testing.T) {
	h := newHarness(t)
	sup := h.open(nil)
	ctx := context.Background()
	spec := h.spec("http", 0, nil)
	first, err := sup.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	again, err := sup.Start(ctx, spec)
	if err != nil || again.PID != first.PID {
		t.Fatalf("second Start = pid %d, %v; want the same instance (pid %d)", again.PID, err, first.PID)
	}
	spec.Env = map[string]string{envChild: "http", "APP_VAR": "other"}
	if _, err := sup.Start(ctx, spec); !errors.Is(err, ErrExists) {
		t.Fatalf("Start of another spec with the same ID: %v, want ErrExists", err)
	}
	if n := len(h.leaders()); n != 1 {
		t.Fatalf("%d processes run, want 1", n)
	}
}

func TestStartFailureLeavesNothing(t *testing.T) {
	t.Run("no such command", func(t *testing.T) {
		h := newHarness(t)
		sup := h.open(nil)
		spec := h.spec("http", 0, nil)
		spec.Command = []string{filepath.Join(h.dir, "no-such-program")}
		if _, err := sup.Start(context.Background(), spec); err == nil {
			t.Fatal("Start of a missing program succeeded")
		}
		if _, ok := h.record(spec.ID()); ok {
			t.Error("a record is left behind")
		}
		if got := sup.List(""); len(got) != 0 {
			t.Errorf("List = %v, want nothing", got)
		}
	})
	t.Run("PID not written", func(t *testing.T) {
		h := newHarness(t)
		h.st = &failingStore{Store: h.st, failPut: 2} // the record writes, its PID does not
		sup := h.open(nil)
		spec := h.spec("http", 0, nil)
		if _, err := sup.Start(context.Background(), spec); err == nil {
			t.Fatal("Start succeeded without writing the PID")
		}
		if _, ok := h.record(spec.ID()); ok {
			t.Error("a record is left behind")
		}
		waitFor(t, "the unrecorded process to be killed", func() bool { return len(h.procs()) == 0 })
	})
}

// failingStore fails its failPut-th Put.
type failingStore struct {
	store.Store
	failPut int
	puts    int
}

func (f *failingStore) Put(ctx context.Context, kind, key string, v any) error {
	f.puts++
	if f.puts == f.failPut {
		return errors.New("disk full")
	}
	return f.Store.Put(ctx, kind, key, v)
}

func TestCrashRestartsOnSamePortWithBackoff(t *testing.T) {
	h := newHarness(t)
	h.opts.BackoffMin, h.opts.BackoffMax = 300*time.Millisecond, 5*time.Second
	sup := h.open(nil)
	inst, err := sup.Start(context.Background(), h.spec("http", 0, nil))
	if err != nil {
		t.Fatal(err)
	}
	askUntil(t, inst.Port)
	for n, delay := range []time.Duration{300 * time.Millisecond, 600 * time.Millisecond} {
		old := inst.PID
		killed := time.Now()
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a restart", func() bool {
			inst, _ = sup.Get(inst.ID)
			return inst.PID != 0 && inst.PID != old
		})
		if inst.Restarts != n+1 || inst.LastExit != "signal: killed" || inst.State != StateRunning {
			t.Errorf("after crash %d: restarts %d, last exit %q, state %s", n+1, inst.Restarts, inst.LastExit, inst.State)
		}
		if waited := inst.Started.Sub(killed); waited < delay {
			t.Errorf("crash %d: restarted after %s, want a backoff of at least %s", n+1, waited, delay)
		}
		if info := askUntil(t, inst.Port); info.PID != inst.PID {
			t.Errorf("crash %d: port %d answered by pid %d, want the new process %d", n+1, inst.Port, info.PID, inst.PID)
		}
	}
	if rec, _ := h.record(inst.ID); rec.PID != inst.PID || rec.Restarts != 2 {
		t.Errorf("record: pid %d, restarts %d; want %d, 2", rec.PID, rec.Restarts, inst.PID)
	}
	if !h.hasEvent(EventInstance, "exited unexpectedly (signal: killed)") {
		t.Errorf("no crash event in %v", h.events())
	}
}

func TestCrashLoop(t *testing.T) {
	h := newHarness(t)
	h.opts.CrashLoop, h.opts.BackoffMin, h.opts.BackoffMax = 3, 10*time.Millisecond, 50*time.Millisecond
	sup := h.open(nil)
	inst, err := sup.Start(context.Background(), h.spec("crash", 0, nil))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a crash loop", func() bool {
		inst, _ = sup.Get(inst.ID)
		return inst.State == StateCrashLoop
	})
	if inst.Restarts < 2 || inst.LastExit != "exit status 3" {
		t.Errorf("in crash loop: restarts %d, last exit %q", inst.Restarts, inst.LastExit)
	}
	waitFor(t, "a crash loop event", func() bool { return h.hasEvent(EventCrashLoop, "crash loop: 3 crashes") })
	// It is still restarted, and still reported, while it keeps crashing.
	restarts := inst.Restarts
	waitFor(t, "more restarts", func() bool {
		inst, _ = sup.Get(inst.ID)
		return inst.Restarts > restarts+2
	})
	if inst.State != StateCrashLoop {
		t.Errorf("state %s while still crashing, want crashloop", inst.State)
	}
	if rec, _ := h.record(inst.ID); rec.State != StateCrashLoop {
		t.Errorf("record state %s, want crashloop", rec.State)
	}
	if _, err := sup.Stop(context.Background(), inst.ID); err != nil {
		t.Fatalf("stop: %v", err)
	}
	waitFor(t, "no process", func() bool { return len(h.procs()) == 0 })
}

func TestCrashLoopRecovers(t *testing.T) {
	h := newHarness(t)
	h.opts.CrashLoop, h.opts.StableAfter = 3, 500*time.Millisecond
	sup := h.open(nil)
	spec := h.spec("flaky", 0, map[string]string{"CHILD_CRASHES": "3", "CHILD_COUNT": filepath.Join(t.TempDir(), "count")})
	inst, err := sup.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a crash loop", func() bool {
		inst, _ = sup.Get(inst.ID)
		return inst.State == StateCrashLoop
	})
	askUntil(t, inst.Port)
	waitFor(t, "recovery", func() bool {
		inst, _ = sup.Get(inst.ID)
		return inst.State == StateRunning
	})
	if time.Since(inst.Started) < h.opts.StableAfter {
		t.Errorf("left the crash loop %s after its start, want at least %s", time.Since(inst.Started), h.opts.StableAfter)
	}
	if inst.Restarts != 3 {
		t.Errorf("restarts %d, want 3", inst.Restarts)
	}
	waitFor(t, "a recovery event", func() bool { return h.hasEvent(EventCrashLoop, "recovered") })
}

func TestStop(t *testing.T) {
	h := newHarness(t)
	sup := h.open(nil)
	ctx := context.Background()
	inst, err := sup.Start(ctx, h.spec("http", 0, nil))
	if err != nil {
		t.Fatal(err)
	}
	askUntil(t, inst.Port)
	final, err := sup.Stop(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if final.State != StateExited || final.LastExit != "exit status 0" {
		t.Errorf("stopped: state %s, last exit %q; want exited with status 0", final.State, final.LastExit)
	}
	if log := readLog(t, inst.Log); !strings.Contains(log, "child: got SIGTERM") {
		t.Errorf("the child never saw SIGTERM:\n%s", log)
	}
	if _, ok := h.record(inst.ID); ok {
		t.Error("the record of a stopped instance is left")
	}
	if _, err := sup.Get(inst.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after stop: %v, want ErrNotFound", err)
	}
	if sup.InUse()[h.dir] {
		t.Error("the release dir is still in use")
	}
	if c, err := net.Dial("tcp", inst.Addr()); err == nil {
		c.Close()
		t.Error("something still listens on the stopped instance's port")
	}
	if !h.hasEvent(EventInstance, "stopped: exit status 0") {
		t.Errorf("no stop event in %v", h.events())
	}
}

func TestStopKillsAfterTimeout(t *testing.T) {
	h := newHarness(t)
	sup := h.open(nil)
	ctx := context.Background()
	spec := h.spec("http", 0, map[string]string{"CHILD_IGNORE_TERM": "1"})
	spec.Stop.Timeout = config.Duration(500 * time.Millisecond)
	inst, err := sup.Start(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	askUntil(t, inst.Port)
	begun := time.Now()
	final, err := sup.Stop(ctx, inst.ID)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begun); took < 500*time.Millisecond {
		t.Errorf("stopped after %s, before the stop timeout", took)
	}
	if final.LastExit != "signal: killed" {
		t.Errorf("last exit %q, want signal: killed", final.LastExit)
	}
	if log := readLog(t, inst.Log); !strings.Contains(log, "child: ignoring SIGTERM") {
		t.Errorf("the child never saw SIGTERM:\n%s", log)
	}
	if !h.hasEvent(EventInstance, "killed (SIGKILL): still running 500ms after SIGTERM") {
		t.Errorf("no kill event in %v", h.events())
	}
	if len(h.procs()) != 0 {
		t.Error("a process is left")
	}
}

func TestStopDuringBackoff(t *testing.T) {
	h := newHarness(t)
	h.opts.BackoffMin = time.Hour
	sup := h.open(nil)
	inst, err := sup.Start(context.Background(), h.spec("crash", 0, nil))
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "backoff", func() bool {
		inst, _ = sup.Get(inst.ID)
		return inst.State == StateBackoff
	})
	final, err := sup.Stop(context.Background(), inst.ID)
	if err != nil || final.State != StateExited {
		t.Fatalf("stop: %+v, %v", final, err)
	}
	if _, ok := h.record(inst.ID); ok {
		t.Error("the record is left")
	}
}

func TestSecondSupervisorWaitsForLock(t *testing.T) {
	h := newHarness(t)
	sup := h.open(nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := open(ctx, h.st, h.opts, stdEnv()); err == nil {
		t.Fatal("a second Supervisor of the node opened while the first supervises")
	}
	if err := sup.Detach(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.open(nil)
}

func TestParseStat(t *testing.T) {
	// A command name may hold spaces and parentheses.
	line := "4242 (we (ird) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10 18446744073709551615"
	st, err := parseStat(4242, []byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if st.State != 'S' || st.PGID != 4242 || st.Start != 987654 {
		t.Errorf("parse = %+v, want state S, pgid 4242, start 987654", st)
	}
	if _, err := parseStat(1, []byte("1 (x) S 1")); err == nil {
		t.Error("a short line parsed")
	}
}

// A command such as bin/server is found in the release directory, not in
// handoff's working directory.
func TestCommandRelativeToRelease(t *testing.T) {
	h := newHarness(t)
	sup := h.open(nil)
	spec := h.spec("http", 0, nil)
	if err := os.Mkdir(filepath.Join(h.dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(spec.Command[0], filepath.Join(h.dir, "bin", "server")); err != nil {
		t.Fatal(err)
	}
	spec.Command[0] = "bin/server"
	inst, err := sup.Start(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if info := askUntil(t, inst.Port); info.PID != inst.PID {
		t.Errorf("answered by %d, want %d", info.PID, inst.PID)
	}
}
