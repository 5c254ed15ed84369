package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/loadgen"
)

// smallDisk mounts a tmpfs of size bytes at dir for the test, or skips
// (fails in CI) where mounting is not allowed.
func smallDisk(t *testing.T, dir string, size int) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d", size), "tmpfs", dir).CombinedOutput()
	if err != nil {
		msg := fmt.Sprintf("a full disk is made with a small tmpfs, which needs root: %v %s", err, out)
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
}

// fill writes a file until the disk at dir is full, and returns its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for i := 0; i < 10000; i++ {
		if _, err := f.Write(buf); err != nil {
			if !errorsIsNoSpace(err) {
				t.Fatal(err)
			}
			return path
		}
	}
	t.Fatal("the disk never filled")
	return ""
}

func errorsIsNoSpace(err error) bool { return strings.Contains(err.Error(), syscall.ENOSPC.Error()) }

// A full disk under the state store in the middle of a rolling deploy: the
// deploy stalls where it is, status says why, nothing fails for clients,
// and the same command finishes it once there is space again.
func TestFullDiskMidDeploy(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "state")
	smallDisk(t, disk, 8<<20)
	root := filepath.Join(t.TempDir(), "releases")
	makeRelease(t, root, "v1", "")
	makeRelease(t, root, "v2", "slow") // 2 s to listen: time to fill the disk
	n := newNode(t, fmt.Sprintf(`  web:
    command: [bin/app]
    releases: %s
    instances: 3
    health: { path: /healthz, interval: 200ms }
    drain_timeout: 1s
    start_timeout: 10s
`, root))
	// The node's store moves to the small disk.
	n.stop()
	moveState(t, n, filepath.Join(disk, "handoff.db"))
	n.start()
	n.must("deploy", "web", "--release", filepath.Join(root, "v1"))
	load, err := loadgen.Start(context.Background(), loadgen.Config{Addr: n.gateway, Fast: 16, Slow: 2, SlowDelay: 300 * time.Millisecond, Duration: 2 * time.Minute, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	deploying, out := deployInBackground(t, n, "web", filepath.Join(root, "v2"))
	waitForInstanceOf(t, n, "web", "v2")
	filler := fill(t, disk)
	err = deploying.Wait()
	if err == nil || !strings.Contains(out.String(), "stalled") {
		t.Fatalf("the deploy on a full disk: %v\n%s", err, out.String())
	}
	st := n.appStatus("web")
	if st.Deploy == nil || st.Deploy.State != deploy.Stalled || !strings.Contains(st.Deploy.Error, "deploy again") && !strings.Contains(st.Deploy.Error, "run the same deploy again") {
		t.Errorf("status should say the deploy stalled and how to go on: %+v", st.Deploy)
	}
	time.Sleep(time.Second) // clients go on meanwhile
	os.Remove(filler)
	n.must("deploy", "web", "--release", filepath.Join(root, "v2"))
	res := load.Stop()
	if err := res.Err(); err != nil {
		t.Errorf("failed requests around a full disk: %v\n%s", err, res)
	}
	st = n.appStatus("web")
	if st.Deploy == nil || (st.Deploy.State != deploy.Done && st.Deploy.State != deploy.Failed) {
		t.Fatalf("the deploy after the disk has space again: %+v", st.Deploy)
	}
	checkRelease(t, n, st.Current, 3)
}
