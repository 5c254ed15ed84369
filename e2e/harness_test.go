package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
)

// node is one `handoff serve` process with its own directory.
type node struct {
	t       *testing.T
	exe     string // the handoff binary that serves
	dir     string
	config  string
	socket  string
	gateway string
	admin   string
	cmd     *exec.Cmd
	exited  chan struct{}
	cwd     string // where serve runs, when its config is relative to it
}

// newNode writes a config whose apps section is apps (YAML, indented under
// "apps:") and starts handoff serve on it.
func newNode(t *testing.T, apps string) *node {
	t.Helper()
	return newNodeWith(t, bin, apps)
}

// newNodeWith starts a node served by the handoff binary at exe.
func newNodeWith(t *testing.T, exe, apps string) *node {
	t.Helper()
	return newNodeTopWith(t, exe, "", apps)
}

// startNode starts handoff serve, the binary (or a wrapper of it) at exe,
// in a directory of its own, on the config that cfg writes for the node
// (its gateway and admin addresses chosen, its paths in that directory).
func startNode(t *testing.T, exe string, cfg func(n *node) string) *node {
	t.Helper()
	dir := t.TempDir()
	n := &node{t: t, exe: exe, dir: dir, config: filepath.Join(dir, "handoff.yaml"), socket: filepath.Join(dir, "handoff.sock"),
		gateway: freeAddr(t), admin: freeAddr(t)}
	// Written to dir whatever cfg makes of n.config: a node that serves on
	// a path relative to its cwd (newRelativeNode) sets both.
	if err := os.WriteFile(filepath.Join(dir, "handoff.yaml"), []byte(cfg(n)), 0o644); err != nil {
		t.Fatal(err)
	}
	n.start()
	t.Cleanup(n.stop)
	return n
}

// start runs handoff serve and waits until its control socket answers.
func (n *node) start() {
	n.t.Helper()
	// A file, not a pipe: after an upgrade the successor writes to it too,
	// and a pipe would keep Wait waiting for as long as the successor lives.
	out, err := os.OpenFile(filepath.Join(n.dir, "serve.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	defer out.Close()
	n.cmd = exec.Command(n.exe, "serve", "--config", n.config)
	n.cmd.Dir = n.cwd
	n.cmd.Stdout, n.cmd.Stderr = out, out
	if err := n.cmd.Start(); err != nil {
		n.t.Fatal(err)
	}
	n.exited = make(chan struct{})
	go func() { n.cmd.Wait(); close(n.exited) }()
	waitUntil(n.t, 30*time.Second, "handoff serve to answer on its socket", func() bool {
		select {
		case <-n.exited:
			n.t.Fatalf("handoff serve exited at start:\n%s", n.output())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := control.Dial(n.socket).Status(ctx, "")
		return err == nil
	})
}

// kill9 kills the server without letting it clean up.
func (n *node) kill9() {
	n.cmd.Process.Signal(syscall.SIGKILL)
	<-n.exited
}

// stop ends the server gracefully — the process now serving, which after an
// upgrade is not the one the test started — and logs the servers' output
// if the test failed.
func (n *node) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	st, err := control.Dial(n.socket).Status(ctx, "")
	cancel()
	if err == nil && st.PID > 0 {
		syscall.Kill(st.PID, syscall.SIGTERM)
		deadline := time.Now().Add(60 * time.Second)
		for syscall.Kill(st.PID, 0) == nil && !zombie(st.PID) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	select {
	case <-n.exited:
	default:
		n.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-n.exited:
		case <-time.After(60 * time.Second):
			n.cmd.Process.Kill()
			<-n.exited
		}
	}
	if n.t.Failed() {
		n.t.Logf("handoff serve output:\n%s", n.output())
	}
}

func (n *node) output() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, "serve.log"))
	return string(b)
}

// zombie reports whether pid has exited and waits to be reaped.
func zombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// result is what a CLI command did.
type result struct {
	stdout, stderr string
	code           int
}

// cli runs a handoff command against the node's socket.
func (n *node) cli(args ...string) result {
	n.t.Helper()
	cmd := exec.Command(bin, append(args, "--socket", n.socket)...)
	cmd.Dir = n.dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		r.code = ee.ExitCode()
	} else if err != nil {
		n.t.Fatalf("run handoff %v: %v", args, err)
	}
	return r
}

// must runs a CLI command that must succeed and returns its stdout.
func (n *node) must(args ...string) string {
	n.t.Helper()
	r := n.cli(args...)
	if r.code != 0 {
		n.t.Fatalf("handoff %s: exit %d\n%s%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r.stdout
}

// status returns the node's status as the CLI's --json prints it.
func (n *node) status() control.Status {
	n.t.Helper()
	var st control.Status
	if err := json.Unmarshal([]byte(n.must("status", "--json")), &st); err != nil {
		n.t.Fatalf("status --json: %v", err)
	}
	return st
}

// backend is one `handoff sampleapp` process.
type backend struct {
	addr   string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startBackend runs the sample app as release and waits until it is healthy.
func startBackend(t *testing.T, release string, flags ...string) *backend {
	t.Helper()
	b := &backend{addr: freeAddr(t), exited: make(chan struct{})}
	b.cmd = exec.Command(bin, append([]string{"sampleapp", "--release", release, "--listen", b.addr}, flags...)...)
	if err := b.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { b.cmd.Wait(); close(b.exited) }()
	t.Cleanup(func() { b.cmd.Process.Kill(); <-b.exited })
	waitUntil(t, 30*time.Second, "backend "+release+" to be healthy", func() bool {
		resp, err := http.Get("http://" + b.addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	return b
}

// freeAddr returns a 127.0.0.1 address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitUntil polls cond until it holds, failing the test after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a process's stdout and stderr.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
