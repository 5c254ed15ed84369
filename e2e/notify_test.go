package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSystemdNotifyIsHandoffsAlone: under systemd (Type=notify, a
// NOTIFY_SOCKET), handoff tells its readiness and, after an upgrade, its
// new MAINPID; no child of it gets the socket (an app server that speaks
// sd_notify, as Puma does, would tell systemd STOPPING=1 as its instance
// stops in a deploy, and systemd would stop handoff), nor an upgrade's
// readiness pipe or variables — an instance respawned while the new
// process takes over included.
func TestSystemdNotifyIsHandoffsAlone(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	messages := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			messages <- string(buf[:n])
		}
	}()
	expect := func(want string) {
		t.Helper()
		select {
		case m := <-messages:
			if m != want {
				t.Fatalf("systemd was told %q, want %q", m, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("systemd was not told %q", want)
		}
	}
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "30000000")

	exe := ownBinary(t)
	root := filepath.Join(t.TempDir(), "releases")
	envOut := filepath.Join(t.TempDir(), "release-command.env")
	dir := makeRelease(t, root, "v1", "")
	if err := os.WriteFile(filepath.Join(dir, "bin", "migrate"), []byte("#!/bin/sh\nenv > "+envOut+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	n := newNodeWith(t, exe, fmt.Sprintf("  web:\n    command: [bin/app]\n    release_command: [bin/migrate]\n    releases: %s\n    instances: 2\n    health: { path: /healthz, interval: 200ms }\n", root))
	expect(fmt.Sprintf("MAINPID=%d\nREADY=1", n.cmd.Process.Pid))
	n.must("deploy", "web", "--release", dir)

	leaked := func(env string) []string {
		var out []string
		for _, k := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "HANDOFF_READY_FD", "HANDOFF_UPGRADE_FROM", "LISTEN_FDS"} {
			if strings.Contains("\x00"+env+"\x00", "\x00"+k+"=") || strings.Contains("\n"+env, "\n"+k+"=") {
				out = append(out, k)
			}
		}
		return out
	}
	b, err := os.ReadFile(envOut)
	if err != nil {
		t.Fatal(err)
	}
	if l := leaked(string(b)); len(l) > 0 {
		t.Fatalf("the release command got %v", l)
	}
	// Descriptors this test inherited unmarked (a CI runner's) pass down
	// to every process; only others count.
	ours := map[string]bool{}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		for _, fd := range fds {
			target, _ := os.Readlink("/proc/self/fd/" + fd.Name())
			ours[target] = true
		}
	}
	checkInstances := func() {
		t.Helper()
		for _, inst := range n.instances("web") {
			env, err := os.ReadFile("/proc/" + strconv.Itoa(inst.PID) + "/environ")
			if err != nil {
				t.Fatal(err)
			}
			if l := leaked(string(env)); len(l) > 0 {
				t.Fatalf("instance %s (pid %d) got %v", inst.ID, inst.PID, l)
			}
			fds, _ := os.ReadDir("/proc/" + strconv.Itoa(inst.PID) + "/fd")
			for _, fd := range fds {
				if target, _ := os.Readlink("/proc/" + strconv.Itoa(inst.PID) + "/fd/" + fd.Name()); strings.HasPrefix(target, "pipe:") && !ours[target] && fd.Name() != "0" && fd.Name() != "1" && fd.Name() != "2" {
					t.Fatalf("instance %s holds a pipe on fd %s (%s)", inst.ID, fd.Name(), target)
				}
			}
		}
	}
	checkInstances()

	// An instance dies just before the upgrade: whichever process starts
	// it again, it gets none of the upgrade's descriptors or variables.
	victim := n.instances("web")[0]
	syscall.Kill(victim.PID, syscall.SIGKILL)
	n.must("upgrade")
	st := n.status()
	expect(fmt.Sprintf("MAINPID=%d\nREADY=1", st.PID))
	waitUntil(t, 30*time.Second, victim.ID+" to run again", func() bool {
		for _, i := range n.instances("web") {
			if i.ID == victim.ID && i.PID != 0 && i.PID != victim.PID && i.State == "running" {
				return true
			}
		}
		return false
	})
	checkInstances()
}
