package supervisor

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/store"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// The test binary is also every process the tests supervise (after
// tableflip's tests): run with SUPERVISOR_TEST_CHILD set, it is a small app
// instead of the tests.
const envChild = "SUPERVISOR_TEST_CHILD"

func TestMain(m *testing.M) {
	mode := os.Getenv(envChild)
	if mode == "" {
		os.Exit(m.Run())
	}
	// A child outlives its test only if the test binary dies; cap the
	// damage.
	time.AfterFunc(3*time.Minute, func() { os.Exit(9) })
	switch mode {
	case "http":
		childHTTP()
	case "crash":
		fmt.Println("child: crashing")
		os.Exit(3)
	case "flaky":
		childFlaky()
	case "worker":
		childWorker()
	case "handoff":
		childHandoff()
	default:
		fmt.Fprintf(os.Stderr, "%s=%q: unknown mode\n", envChild, mode)
		os.Exit(2)
	}
}

// childInfo is what an http child answers: who and where it is.
type childInfo struct {
	PID  int               `json:"pid"`
	PGID int               `json:"pgid"`
	Cwd  string            `json:"cwd"`
	Env  map[string]string `json:"env"`
}

// childHTTP serves its childInfo on 127.0.0.1:$PORT. On SIGTERM it shuts
// down and exits 0, unless CHILD_IGNORE_TERM is set.
func childHTTP() {
	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv("PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: listen:", err)
		os.Exit(4)
	}
	cwd, _ := os.Getwd()
	info := childInfo{PID: os.Getpid(), PGID: syscall.Getpgrp(), Cwd: cwd, Env: map[string]string{}}
	for _, k := range []string{envPort, envNode, envInstance, envApp, envRelease, "APP_VAR"} {
		info.Env[k] = os.Getenv(k)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(info)
	})}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	fmt.Printf("child: listening pid=%d\n", os.Getpid())
	fmt.Fprintf(os.Stderr, "child: stderr pid=%d\n", os.Getpid())
	go func() {
		for range term {
			if os.Getenv("CHILD_IGNORE_TERM") != "" {
				fmt.Println("child: ignoring SIGTERM")
				continue
			}
			fmt.Println("child: got SIGTERM")
			srv.Shutdown(context.Background())
		}
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, "child: serve:", err)
		os.Exit(5)
	}
	os.Exit(0)
}

// childFlaky crashes the first CHILD_CRASHES times it starts (counted in
// the file CHILD_COUNT), then serves like childHTTP.
func childFlaky() {
	f, err := os.OpenFile(os.Getenv("CHILD_COUNT"), os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		os.Exit(6)
	}
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); {
		n++
	}
	fmt.Fprintln(f, "start")
	f.Close()
	if crashes, _ := strconv.Atoi(os.Getenv("CHILD_CRASHES")); n < crashes {
		fmt.Println("child: crashing, start", n+1)
		os.Exit(3)
	}
	childHTTP()
}

// childWorker runs one job that lasts until the file CHILD_GATE exists. On
// SIGTERM it stops taking work, finishes the job and exits 0; without a
// SIGTERM it idles after the job.
func childWorker() {
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	fmt.Println("child: job started")
	draining, done := false, false
	tick := time.NewTicker(10 * time.Millisecond)
	for {
		select {
		case <-term:
			fmt.Println("child: draining")
			draining = true
		case <-tick.C:
		}
		if !done {
			if _, err := os.Stat(os.Getenv("CHILD_GATE")); err == nil {
				fmt.Println("child: job done")
				done = true
			}
		}
		if draining && done {
			os.Exit(0)
		}
	}
}

// childHandoff is a handoff process that dies by SIGKILL at a step of
// Start, Stop or Drain: a real kill -9, for Open to recover from.
func childHandoff() {
	ctx := context.Background()
	fail := func(what string, err error) {
		fmt.Fprintf(os.Stderr, "handoff child: %s: %v\n", what, err)
		os.Exit(3)
	}
	var spec Spec
	if err := json.Unmarshal([]byte(os.Getenv("TEST_SPEC")), &spec); err != nil {
		fail("spec", err)
	}
	st, err := store.Open(ctx, os.Getenv("TEST_STATE"))
	if err != nil {
		fail("open store", err)
	}
	env := stdEnv()
	crashAt := os.Getenv("TEST_CRASH_AT")
	env.step = func(name string) {
		if name == crashAt {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	sup, err := open(ctx, st, Options{LogDir: os.Getenv("TEST_LOGDIR"), Node: os.Getenv("TEST_NODE"), Logger: log}, env)
	if err != nil {
		fail("open supervisor", err)
	}
	inst, err := sup.Start(ctx, spec)
	if err != nil {
		fail("start", err)
	}
	// A signal that comes before the child handles it would kill it at once.
	for !readyIn(inst.Log) {
		time.Sleep(10 * time.Millisecond)
	}
	switch os.Getenv("TEST_ACTION") {
	case "stop":
		_, err = sup.Stop(ctx, inst.ID)
	case "drain":
		_, err = sup.Drain(ctx, inst.ID)
	}
	fail("the crash step "+crashAt+" was never reached", err)
}

// readyIn reports whether a child has said, in its log, that it handles
// SIGTERM.
func readyIn(log string) bool {
	b, _ := os.ReadFile(log)
	return strings.Contains(string(b), "child: listening") || strings.Contains(string(b), "child: job started")
}

// harness is one test's node: a state file, a log directory, a release
// directory and a node name no other test shares.
type harness struct {
	t      *testing.T
	path   string
	st     store.Store
	node   string
	logDir string
	dir    string
	opts   Options
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	path := testdb.SQLite(t)
	st, err := store.Open(context.Background(), path)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	b := make([]byte, 6)
	rand.Read(b)
	h := &harness{t: t, path: path, st: st, node: "test-" + hex.EncodeToString(b), logDir: t.TempDir(), dir: t.TempDir()}
	h.opts = Options{
		LogDir: h.logDir, Node: h.node, Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, StableAfter: 10 * time.Second,
		CrashLoop: 5, CrashLoopWindow: time.Minute, OrphanGrace: 2 * time.Second,
	}
	t.Cleanup(func() {
		// Leave nothing running, whatever the test did.
		procs, _ := stdEnv().scan(h.node)
		for _, p := range procs {
			syscall.Kill(p.PID, syscall.SIGKILL)
		}
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return h
}

// testWriter sends the supervisor's log to t.Log: shown only on failure.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// open opens a Supervisor of the harness's node, detached when the test ends.
func (h *harness) open(env *osEnv) *Supervisor {
	h.t.Helper()
	if env == nil {
		env = stdEnv()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sup, err := open(ctx, h.st, h.opts, env)
	if err != nil {
		h.t.Fatalf("open supervisor: %v", err)
	}
	h.t.Cleanup(func() {
		if err := sup.Detach(context.Background()); err != nil {
			h.t.Errorf("detach: %v", err)
		}
	})
	return sup
}

// spec is an instance of the test binary in the given child mode.
func (h *harness) spec(mode string, index int, env map[string]string) Spec {
	exe, err := os.Executable()
	if err != nil {
		h.t.Fatal(err)
	}
	// Under -race a child would sleep a second at exit (atexit_sleep_ms).
	e := map[string]string{envChild: mode, "GORACE": "atexit_sleep_ms=0"}
	for k, v := range env {
		e[k] = v
	}
	kind := config.KindHTTP
	if mode == "worker" {
		kind = config.KindWorker
	}
	return Spec{
		App: "web", Release: "v1", Dir: h.dir, Command: []string{exe, "-test.run=^$"}, Env: e,
		Kind: kind, Index: index, Stop: config.Signal{Signal: "SIGTERM", Timeout: config.Duration(10 * time.Second)},
	}
}

// procs lists the live processes of the harness's node, by instance.
func (h *harness) procs() map[string][]nodeProc {
	h.t.Helper()
	ps, err := stdEnv().scan(h.node)
	if err != nil {
		h.t.Fatalf("scan: %v", err)
	}
	out := map[string][]nodeProc{}
	for _, p := range ps {
		out[p.Instance] = append(out[p.Instance], p)
	}
	return out
}

// leaders lists the PIDs of the node's process group leaders: one per
// running instance.
func (h *harness) leaders() map[int]string {
	out := map[int]string{}
	for id, ps := range h.procs() {
		for _, p := range ps {
			if p.leader() {
				out[p.PID] = id
			}
		}
	}
	return out
}

func (h *harness) events() []store.Event {
	h.t.Helper()
	evs, err := h.st.Events(context.Background(), 0, 1000)
	if err != nil {
		h.t.Fatalf("events: %v", err)
	}
	return evs
}

func (h *harness) hasEvent(kind, text string) bool {
	for _, e := range h.events() {
		if e.Kind == kind && strings.Contains(e.Message, text) {
			return true
		}
	}
	return false
}

func (h *harness) record(id string) (Instance, bool) {
	h.t.Helper()
	var inst Instance
	ok, err := h.st.Get(context.Background(), KindInstance, h.node+"/"+id, &inst)
	if err != nil {
		h.t.Fatalf("get record: %v", err)
	}
	return inst, ok
}

// waitFor polls cond until it holds, failing the test after a deadline
// generous enough for a loaded machine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var httpClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// ask asks an http child on port who it is.
func ask(port int) (childInfo, error) {
	var info childInfo
	resp, err := httpClient.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/")
	if err != nil {
		return info, err
	}
	defer resp.Body.Close()
	err = json.NewDecoder(resp.Body).Decode(&info)
	return info, err
}

// askUntil waits until the child on port answers, and returns its answer.
func askUntil(t *testing.T, port int) childInfo {
	t.Helper()
	var info childInfo
	waitFor(t, fmt.Sprintf("an answer on port %d", port), func() bool {
		var err error
		info, err = ask(port)
		return err == nil
	})
	return info
}

func readLog(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read log: %v", err)
	}
	return string(b)
}

// rawProc is a process the test started behind the supervisor's back.
type rawProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited and been reaped
}

// startRaw starts the test binary as handoff would have, but behind the
// supervisor's back: in its own process group, with env added to ours.
func startRaw(t *testing.T, env []string) *rawProc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), "GORACE=atexit_sleep_ms=0"), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	p := &rawProc{cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
	})
	return p
}

func writeFile(path string) error { return os.WriteFile(path, []byte("x"), 0o600) }
