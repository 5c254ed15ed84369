package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
)

// An instance whose process sets its title (Puma, gunicorn with
// setproctitle, Perl's $0) writes over what /proc/PID/environ reads: its
// HANDOFF_* variables are gone. A new supervisor (an upgrade, a restart
// with the instances kept) adopts it by its recorded PID and start time
// all the same, and stops it when asked (it started a second copy beside
// it, and left the first one running unsupervised).
func TestAdoptsAProcessThatSetItsTitle(t *testing.T) {
	h := newHarness(t)
	ctx := context.Background()
	sup1 := h.open(nil)
	inst, err := sup1.Start(ctx, Spec{
		App: "jobs", Release: "v1", Dir: h.dir, Kind: config.KindWorker,
		Command: []string{"perl", "-e", `$0 = "jobs: working"; sleep 600`},
		Stop:    config.Signal{Signal: "SIGTERM", Timeout: config.Duration(2 * time.Second)},
		Drain:   config.Signal{Signal: "SIGTERM", Timeout: config.Duration(2 * time.Second)},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-inst.PID, syscall.SIGKILL) })
	waitFor(t, "the title to be set", func() bool {
		env, _ := os.ReadFile("/proc/" + strconv.Itoa(inst.PID) + "/environ")
		return !strings.Contains(string(env), "HANDOFF_INSTANCE=")
	})
	if err := sup1.Detach(ctx); err != nil {
		t.Fatal(err)
	}
	sup2 := h.open(nil)
	got, _ := sup2.Get(inst.ID)
	if got.PID != inst.PID || got.State != StateRunning {
		t.Fatalf("the process %d is adopted; the supervisor runs %d (%s)", inst.PID, got.PID, got.State)
	}
	if _, err := sup2.Stop(ctx, inst.ID); err != nil {
		t.Fatal(err)
	}
	if stdEnv().alive(inst.PID, inst.StartTime) {
		t.Fatalf("process %d still runs after its instance was stopped", inst.PID)
	}
}

// A process the app starts in a session of its own (setsid: Node's
// detached spawn, dumb-init, a daemon) carries the instance's variables
// but is never its process: the supervisor starts each instance with
// Setpgid, in handoff's session. It is neither killed as a second process
// of a live instance nor adopted as the instance when the real one died
// while no handoff watched.
func TestASessionOfItsOwnIsTheApps(t *testing.T) {
	for _, died := range []bool{false, true} {
		h := newHarness(t)
		ctx := context.Background()
		pidfile := filepath.Join(t.TempDir(), "helper.pid")
		sup1 := h.open(nil)
		inst, err := sup1.Start(ctx, Spec{
			App: "jobs", Release: "v1", Dir: h.dir, Kind: config.KindWorker,
			Command: []string{"sh", "-c", "setsid sleep 600 & echo $! > " + pidfile + "; exec sleep 600"},
			Stop:    config.Signal{Signal: "SIGTERM", Timeout: config.Duration(2 * time.Second)},
			Drain:   config.Signal{Signal: "SIGTERM", Timeout: config.Duration(2 * time.Second)},
		})
		if err != nil {
			t.Fatal(err)
		}
		var helper int
		waitFor(t, "the helper's pid", func() bool {
			b, _ := os.ReadFile(pidfile)
			helper, _ = strconv.Atoi(strings.TrimSpace(string(b)))
			return helper > 0
		})
		var st procStat
		waitFor(t, "the helper to lead a session of its own", func() bool {
			st, err = readStat(helper)
			return err == nil && st.SID == helper
		})
		t.Cleanup(func() { syscall.Kill(helper, syscall.SIGKILL); syscall.Kill(-inst.PID, syscall.SIGKILL) })
		if err := sup1.Detach(ctx); err != nil {
			t.Fatal(err)
		}
		if died {
			syscall.Kill(-inst.PID, syscall.SIGKILL)
			waitFor(t, "the instance's process to exit", func() bool { return !stdEnv().alive(inst.PID, inst.StartTime) })
		}
		sup2 := h.open(nil)
		got, _ := sup2.Get(inst.ID)
		if got.PID == helper {
			t.Fatalf("died=%v: the app's helper %d was adopted as the instance", died, helper)
		}
		if !died && got.PID != inst.PID {
			t.Fatalf("the live instance %d is adopted, not %d", inst.PID, got.PID)
		}
		time.Sleep(100 * time.Millisecond)
		if !stdEnv().alive(helper, st.Start) {
			t.Fatalf("died=%v: the app's helper %d was killed", died, helper)
		}
		sup2.Stop(ctx, inst.ID)
	}
}

// A Detach whose caller stops waiting (an upgrade's client gone, its
// bound passed) while a monitor is busy still lets go of the node once the
// monitor is done: the instances can be taken back (the upgrade given up)
// or by another process. It kept the lock for the life of the process.
func TestDetachGivenUpLetsGoOnceMonitorsEnd(t *testing.T) {
	h := newHarness(t)
	env := stdEnv()
	env.step = func(name string) {
		if name == stepStartPersisted {
			time.Sleep(time.Second) // a monitor busy for a moment (a slow store write)
		}
	}
	sup1 := h.open(env)
	go sup1.Start(context.Background(), h.spec("http", 0, nil))
	time.Sleep(100 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := sup1.Detach(ctx); err == nil {
		t.Fatal("Detach returned before its busy monitor ended")
	}
	octx, ocancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer ocancel()
	sup2, err := open(octx, h.st, h.opts, stdEnv())
	if err != nil {
		t.Fatalf("the node is let go of once the monitor ends: %v", err)
	}
	for _, inst := range sup2.List("") {
		sup2.Stop(context.Background(), inst.ID)
	}
	sup2.Detach(context.Background()) // its monitors end with the test
}
