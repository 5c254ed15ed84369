package e2e

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/supervisor"
)

var (
	tcplineOnce sync.Once
	tcplineBin  string
	tcplineErr  error
)

// tcpline builds the tcp app target of testdata/tcpline once.
func tcpline(t *testing.T) string {
	t.Helper()
	tcplineOnce.Do(func() {
		tcplineBin = filepath.Join(filepath.Dir(bin), "tcpline")
		out, err := exec.Command("go", "build", "-o", tcplineBin, "./testdata/tcpline").CombinedOutput()
		if err != nil {
			tcplineErr = fmt.Errorf("build tcpline: %v\n%s", err, out)
		}
	})
	if tcplineErr != nil {
		t.Fatal(tcplineErr)
	}
	return tcplineBin
}

// lineTarget is one tcpline process: an external target of a tcp app.
type lineTarget struct {
	name, addr string
	cmd        *exec.Cmd
	exited     chan struct{}
}

func startLineTarget(t *testing.T, name string) *lineTarget {
	t.Helper()
	lt := &lineTarget{name: name, addr: freeAddr(t), exited: make(chan struct{})}
	lt.cmd = exec.Command(tcpline(t), "--name", name, "--listen", lt.addr)
	if err := lt.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { lt.cmd.Wait(); close(lt.exited) }()
	t.Cleanup(lt.kill9)
	waitUntil(t, 10*time.Second, "target "+name+" to listen", func() bool {
		c, err := net.Dial("tcp", lt.addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return lt
}

func (lt *lineTarget) kill9() {
	lt.cmd.Process.Kill()
	<-lt.exited
}

// tcpConn is what one client connection did.
type tcpConn struct {
	long       bool
	start, end time.Time
	target     string // the name in its greeting
	lines      int    // answered lines
	err        error  // nil: the whole exchange was done
}

// tcpExchange is one client connection through a tcp app, as a client that
// never retries makes it: greeting, n lines each answered by the same
// target, a half-close, the target's goodbye, then EOF. Any other answer,
// a reset or an early close is an error.
func tcpExchange(addr, id string, n int, gap time.Duration) tcpConn {
	rec := tcpConn{long: n > 1, start: time.Now()}
	fail := func(format string, args ...any) tcpConn {
		rec.err = fmt.Errorf(format, args...)
		rec.end = time.Now()
		return rec
	}
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return fail("dial: %w", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Duration(n)*gap + 30*time.Second))
	br := bufio.NewReader(c)
	read := func() (string, error) {
		s, err := br.ReadString('\n')
		return strings.TrimSuffix(s, "\n"), err
	}
	hello, err := read()
	name, ok := strings.CutPrefix(hello, "hello ")
	if err != nil || !ok {
		return fail("greeting: %q, %v", hello, err)
	}
	rec.target = name
	for i := range n {
		msg := fmt.Sprintf("%s-%d", id, i)
		if _, err := fmt.Fprintf(c, "%s\n", msg); err != nil {
			return fail("send line %d: %w", i, err)
		}
		if got, err := read(); err != nil || got != name+": "+msg {
			return fail("line %d: got %q (%v), want %q", i, got, err, name+": "+msg)
		}
		rec.lines++
		time.Sleep(gap)
	}
	c.(*net.TCPConn).CloseWrite()
	if got, err := read(); err != nil || got != "bye "+name {
		return fail("goodbye: got %q (%v)", got, err)
	}
	if rest, err := br.ReadString('\n'); !errors.Is(err, io.EOF) || rest != "" {
		return fail("after goodbye: %q, %v", rest, err)
	}
	rec.end = time.Now()
	return rec
}

// tcpLoad runs long-lived and short connections through a tcp app until
// stopped, each client starting its next connection when one ends.
type tcpLoad struct {
	stop  chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []tcpConn
}

func startTCPLoad(addr string, long, short int) *tcpLoad {
	l := &tcpLoad{stop: make(chan struct{})}
	client := func(id string, lines int, gap, pause time.Duration) {
		defer l.wg.Done()
		deadline := time.Now().Add(3 * time.Minute) // bounded whatever the test does
		for seq := 0; time.Now().Before(deadline); seq++ {
			select {
			case <-l.stop:
				return
			default:
			}
			rec := tcpExchange(addr, fmt.Sprintf("%s.%d", id, seq), lines, gap)
			l.mu.Lock()
			l.conns = append(l.conns, rec)
			l.mu.Unlock()
			time.Sleep(pause)
		}
	}
	for i := range long {
		l.wg.Add(1)
		// Staggered, so that connections start and end all the time.
		go func() {
			time.Sleep(time.Duration(i) * 3 * time.Second / time.Duration(long))
			client(fmt.Sprintf("long%d", i), 15, 200*time.Millisecond, 0)
		}()
	}
	for i := range short {
		l.wg.Add(1)
		go client(fmt.Sprintf("short%d", i), 1, 0, 20*time.Millisecond)
	}
	return l
}

func (l *tcpLoad) finish() []tcpConn {
	close(l.stop)
	l.wg.Wait()
	return l.conns
}

func (l *tcpLoad) snapshot() []tcpConn {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]tcpConn(nil), l.conns...)
}

// tcpApp returns the status of the named app.
func tcpApp(t *testing.T, st control.Status, name string) control.AppStatus {
	t.Helper()
	for _, a := range st.Apps {
		if a.App == name {
			if a.TCP == nil {
				t.Fatalf("status of %s has no tcp part: %+v", name, a)
			}
			return a
		}
	}
	t.Fatalf("status has no app %s", name)
	return control.AppStatus{}
}

// TestTCPAppUnderLoad: a tcp app under 32 long-lived connections (15
// request/response lines over 3 s each, then a half-close) and 4 clients of
// short ones, none of which retries, while it is (1) deployed to a new
// target, (2) one of its targets is killed with -9, and (3) handoff itself
// is replaced by `handoff upgrade`. No connection fails but those the
// killed target itself held; every connection completes its whole exchange
// on the target that greeted it; new connections go to the new target as
// soon as the deploy switched; the old handoff process finishes its own
// connections before it exits.
func TestTCPAppUnderLoad(t *testing.T) {
	a, b, c := startLineTarget(t, "A"), startLineTarget(t, "B"), startLineTarget(t, "C")
	listen := freeAddr(t)
	// A long health interval: after the kill, only the dials can find the
	// dead target, so the retry on another target is what is tested.
	n := newNode(t, fmt.Sprintf(`  codehost:
    kind: tcp
    listen: [%q]
    targets: [%q]
    health: { interval: 10s, timeout: 1s }
    drain_timeout: 20s
    hold_max: 5s
`, listen, a.addr))
	load := startTCPLoad(listen, 32, 4)
	time.Sleep(3 * time.Second)

	// (1) A deploy to a new target.
	deployStart := time.Now()
	out := n.must("deploy", "codehost", "--target", b.addr)
	deployDone := time.Now()
	t.Logf("deploy to B took %s:\n%s", deployDone.Sub(deployStart).Round(time.Millisecond), out)
	time.Sleep(1500 * time.Millisecond)

	// (2) A second target, killed under load.
	n.must("deploy", "codehost", "--target", b.addr, "--target", c.addr)
	time.Sleep(1500 * time.Millisecond)
	killAt := time.Now()
	c.kill9()
	time.Sleep(1500 * time.Millisecond)
	st := n.status()
	app := tcpApp(t, st, "codehost")
	var dialFailures int64
	for _, ts := range app.TCP.Targets {
		if ts.Addr == c.addr {
			dialFailures = ts.DialFailures
		}
	}
	if dialFailures == 0 {
		t.Errorf("no connection was dialled to the killed target C and sent elsewhere: %+v", app.TCP.Targets)
	}
	metrics := adminGet(t, n, "/metrics")
	for _, want := range []string{`handoff_tcp_connections_open{app="codehost",release=`, `handoff_tcp_dial_failures_total{app="codehost",target="` + c.addr + `"}`,
		`handoff_tcp_bytes_total{app="codehost",direction="to_client",target="` + b.addr + `"}`, `handoff_tcp_connections_total{app="codehost",target="` + a.addr + `"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, grepLines(metrics, "handoff_tcp"))
		}
	}

	// (3) handoff upgrade, with connections open in the old process.
	upAt := time.Now()
	var up control.Upgrade
	if err := json.Unmarshal([]byte(n.must("upgrade", "--json")), &up); err != nil {
		t.Fatal(err)
	}
	upDone := time.Now()
	waitUntil(t, 30*time.Second, "the old handoff to finish its connections and exit", func() bool { return !processAlive(up.OldPID) })
	oldExit := time.Now()
	time.Sleep(1500 * time.Millisecond)
	conns := load.finish()
	after := n.status()
	if after.PID != up.NewPID {
		t.Errorf("status answered by pid %d, want the new process %d", after.PID, up.NewPID)
	}

	var long, short, failed, lostWithC, onA, spanDeploy, spanUpgrade int
	for _, rec := range conns {
		if rec.long {
			long++
		} else {
			short++
		}
		if rec.err != nil {
			// A connection the killed target held dies with it: that is
			// the target's doing, not handoff's.
			if rec.target == "C" && rec.start.Before(killAt) && !rec.end.Before(killAt) {
				lostWithC++
				continue
			}
			failed++
			if failed <= 10 {
				t.Errorf("connection to %q failed after %d lines, %s after it started: %v (it started %s after the deploy began, %s after the kill, %s after the upgrade began)",
					rec.target, rec.lines, rec.end.Sub(rec.start).Round(time.Millisecond), rec.err, rec.start.Sub(deployStart).Round(time.Millisecond),
					rec.start.Sub(killAt).Round(time.Millisecond), rec.start.Sub(upAt).Round(time.Millisecond))
			}
			continue
		}
		if rec.target == "A" {
			onA++
			if rec.start.After(deployDone) {
				t.Errorf("a connection started %s after the deploy returned went to the old target A", rec.start.Sub(deployDone))
			}
		}
		if rec.target == "A" && rec.long && rec.start.Before(deployStart) && rec.end.After(deployStart) {
			spanDeploy++
		}
		if rec.long && rec.start.Before(upAt) && rec.end.After(upDone) {
			spanUpgrade++
		}
		if rec.start.After(killAt.Add(100*time.Millisecond)) && rec.target == "C" {
			t.Errorf("a connection started after C was killed was greeted by C")
		}
	}
	t.Logf("%d long-lived and %d short connections; %d failed; %d died with the killed target; %d long ones on A spanned the deploy, %d spanned the upgrade; the old handoff exited %s after the upgrade returned",
		long, short, failed, lostWithC, spanDeploy, spanUpgrade, oldExit.Sub(upDone).Round(time.Millisecond))
	if failed > 0 {
		t.Errorf("%d connections failed", failed)
	}
	if spanDeploy == 0 || spanUpgrade == 0 || onA == 0 || long < 64 || short < 200 {
		t.Errorf("the load did not cover the faults: %d long ones spanned the deploy, %d the upgrade; %d on A; %d long, %d short", spanDeploy, spanUpgrade, onA, long, short)
	}
	if oldExit.Before(upDone.Add(500 * time.Millisecond)) {
		t.Errorf("the old handoff exited %s after the upgrade, before its long-lived connections could finish", oldExit.Sub(upDone))
	}
	if strings.Contains(n.output(), "closed tcp connections still open") {
		t.Errorf("a handoff process cut tcp connections:\n%s", grepLines(n.output(), "tcp"))
	}
}

// processAlive reports whether pid runs (a zombie does not).
func processAlive(pid int) bool {
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		return false
	}
	return !zombie(pid)
}

// lineConn is one connection the test holds open itself.
type lineConn struct {
	t      *testing.T
	c      *net.TCPConn
	br     *bufio.Reader
	target string
}

func dialLine(t *testing.T, addr string) *lineConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(time.Minute))
	lc := &lineConn{t: t, c: c.(*net.TCPConn), br: bufio.NewReader(c)}
	hello := lc.read()
	name, ok := strings.CutPrefix(hello, "hello ")
	if !ok {
		t.Fatalf("greeting: %q", hello)
	}
	lc.target = name
	return lc
}

func (lc *lineConn) read() string {
	lc.t.Helper()
	s, err := lc.br.ReadString('\n')
	if err != nil {
		lc.t.Fatalf("read from %s: %v (got %q)", lc.target, err, s)
	}
	return strings.TrimSuffix(s, "\n")
}

// talk sends a line and checks that the connection's own target answers.
func (lc *lineConn) talk(msg string) {
	lc.t.Helper()
	fmt.Fprintf(lc.c, "%s\n", msg)
	if got := lc.read(); got != lc.target+": "+msg {
		lc.t.Fatalf("answer on the connection to %s: %q", lc.target, got)
	}
}

// end half-closes and reads the target's goodbye.
func (lc *lineConn) end() {
	lc.t.Helper()
	lc.c.CloseWrite()
	if got := lc.read(); got != "bye "+lc.target {
		lc.t.Fatalf("goodbye: %q", got)
	}
}

// greeter returns the target name a new connection is greeted with.
func greeter(t *testing.T, addr string) string {
	t.Helper()
	lc := dialLine(t, addr)
	defer lc.c.Close()
	return lc.target
}

// makeTCPRelease writes a release whose instance is tcpline on $PORT,
// named by $HANDOFF_RELEASE.
func makeTCPRelease(t *testing.T, root, label string) string {
	t.Helper()
	dir := filepath.Join(root, label)
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\nexec %s \"$@\"\n", tcpline(t))
	if err := os.WriteFile(filepath.Join(dir, "bin", "app"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestTCPSupervisedDeployAndRollback: a tcp app whose instances handoff
// runs. A deploy sends new connections to the new release at once while an
// open connection goes on with its old instance, which is stopped only
// once that connection has closed; a rollback does the same the other way;
// a connection still open at drain_timeout is closed, and that is said and
// counted.
func TestTCPSupervisedDeployAndRollback(t *testing.T) {
	root := filepath.Join(t.TempDir(), "releases")
	for _, v := range []string{"v1", "v2", "v3"} {
		makeTCPRelease(t, root, v)
	}
	listen := freeAddr(t)
	n := newNode(t, fmt.Sprintf(`  codehost:
    kind: tcp
    listen: [%q]
    command: [bin/app]
    releases: %s
    health: { interval: 200ms, timeout: 1s }
    drain_timeout: 30s
`, listen, root))
	n.must("deploy", "codehost", "--release", filepath.Join(root, "v1"))
	if got := greeter(t, listen); got != "v1" {
		t.Fatalf("after the first deploy: greeted by %q", got)
	}
	if r := n.cli("readonly", "on", "--app", "codehost"); r.code != 2 || !strings.Contains(r.stderr, "app codehost is a tcp app: readonly is a mode of the HTTP gateway") {
		t.Errorf("readonly on a tcp app: exit %d, %s", r.code, r.stderr)
	}
	n.must("pause") // every app: the HTTP apps' pause leaves tcp apps alone
	if got := greeter(t, listen); got != "v1" {
		t.Errorf("under a global pause: greeted by %q", got)
	}
	n.must("resume")

	for _, step := range []struct{ from, to string }{{"v1", "v2"}, {"v2", "v1"}} {
		old := dialLine(t, listen)
		if old.target != step.from {
			t.Fatalf("greeted by %s, want %s", old.target, step.from)
		}
		done := make(chan result, 1)
		go func() {
			if step.to == "v2" {
				done <- n.cli("deploy", "codehost", "--release", filepath.Join(root, "v2"))
			} else {
				done <- n.cli("rollback", "codehost")
			}
		}()
		waitUntil(t, 30*time.Second, "new connections to go to "+step.to, func() bool { return greeter(t, listen) == step.to })
		for i := range 10 {
			old.talk(fmt.Sprintf("still here %d", i))
			time.Sleep(100 * time.Millisecond)
		}
		select {
		case r := <-done:
			t.Fatalf("the %s→%s deploy ended while a connection to %s was open: %+v", step.from, step.to, step.from, r)
		default:
		}
		if !releaseRuns(t, n, step.from) {
			t.Fatalf("the instance of %s was stopped under its open connection", step.from)
		}
		old.end()
		if r := <-done; r.code != 0 {
			t.Fatalf("%s→%s: exit %d\n%s%s", step.from, step.to, r.code, r.stdout, r.stderr)
		}
		if releaseRuns(t, n, step.from) {
			t.Errorf("the instance of %s still runs after its connections closed and the deploy finished", step.from)
		}
	}

	// A connection that outlives drain_timeout: cut, said and counted.
	cfg := readFile(n.config)
	os.WriteFile(n.config, []byte(strings.Replace(cfg, "drain_timeout: 30s", "drain_timeout: 1s", 1)), 0o644)
	n.must("upgrade") // the new process reads the shorter drain_timeout
	stuck := dialLine(t, listen)
	out := n.must("deploy", "codehost", "--release", filepath.Join(root, "v3"))
	if !strings.Contains(out, "1 connections still busy at drain_timeout were closed") {
		t.Errorf("the deploy did not say it cut a connection:\n%s", out)
	}
	if _, err := stuck.br.ReadString('\n'); err == nil {
		t.Error("the connection open past drain_timeout was not closed")
	}
	if app := tcpApp(t, n.status(), "codehost"); app.TCP.Cut != 1 || app.Current != "v3" {
		t.Errorf("after the cut: cut %d, current %s", app.TCP.Cut, app.Current)
	}
	if !strings.Contains(adminGet(t, n, "/metrics"), `handoff_tcp_cut_total{app="codehost"} 1`) {
		t.Error("/metrics does not count the cut connection")
	}
}

// releaseRuns reports whether an instance of the release is running.
func releaseRuns(t *testing.T, n *node, release string) bool {
	for _, inst := range n.instances("codehost") {
		if inst.Release == release && inst.PID > 0 && processAlive(inst.PID) {
			return true
		}
	}
	return false
}

// TestTCPConfigErrors: mistakes in a tcp app are refused at start, naming
// the file, the line and the key, and nothing starts.
func TestTCPConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(cfg, []byte(`listen: ["127.0.0.1:18080"]
apps:
  ssh:
    kind: tcp
    listen: ["0.0.0.0:18080"]
    hosts: [example.com]
    health: { path: /healthz }
  git:
    kind: tcp
    targets: ["127.0.0.1:9418"]
`), 0o644)
	cmd := exec.Command(bin, "serve", "--config", cfg)
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); err == nil || code != 1 {
		t.Fatalf("bad config: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		`bad.yaml:5: apps.ssh.listen[0]: 0.0.0.0:18080 clashes with listen[0] (127.0.0.1:18080)`,
		`bad.yaml:6: apps.ssh.hosts: a tcp app has no hosts`,
		`bad.yaml:7: apps.ssh.health.path: a tcp app has no health.path`,
		`bad.yaml:8: apps.git.listen: a tcp app needs at least one address of its own`,
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the error should say %q; it said:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "handoff.db")); err == nil {
		t.Error("a refused config still created the state store")
	}
}

// TestTCPHungInstanceIsRestarted: a supervised tcp instance whose process
// lives but says nothing (SIGSTOP: the kernel still accepts its
// connections, so only health.expect can tell) is restarted after
// health.restart_after, and greets new connections again.
func TestTCPHungInstanceIsRestarted(t *testing.T) {
	root := filepath.Join(t.TempDir(), "releases")
	makeTCPRelease(t, root, "v1")
	listen := freeAddr(t)
	n := newNode(t, fmt.Sprintf(`  codehost:
    kind: tcp
    listen: [%q]
    command: [bin/app]
    releases: %s
    health: { expect: "hello", interval: 200ms, timeout: 300ms, restart_after: 2s }
    stop: { timeout: 1s }
`, listen, root))
	n.must("deploy", "codehost", "--release", filepath.Join(root, "v1"))
	before := n.instances("codehost")
	if len(before) != 1 || greeter(t, listen) != "v1" {
		t.Fatalf("instances: %+v", before)
	}
	if err := syscall.Kill(before[0].PID, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	var after []supervisor.Instance
	waitUntil(t, 30*time.Second, "the hung instance to be restarted", func() bool {
		after = n.instances("codehost")
		return len(after) == 1 && after[0].PID != before[0].PID && after[0].PID != 0 && after[0].State == supervisor.StateRunning
	})
	if took := time.Since(stopped); took < 2*time.Second {
		t.Errorf("restarted %s after SIGSTOP, before health.restart_after (2s)", took)
	}
	if after[0].Port != before[0].Port {
		t.Errorf("restarted on port %d, was %d", after[0].Port, before[0].Port)
	}
	waitUntil(t, 10*time.Second, "new connections to be greeted again", func() bool { return greeter(t, listen) == "v1" })
	if !strings.Contains(n.output(), "failing its health check") {
		t.Errorf("the restart's reason is not in the log:\n%s", grepLines(n.output(), "restart"))
	}
}
