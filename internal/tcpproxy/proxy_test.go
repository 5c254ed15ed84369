package tcpproxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/gateway"
)

// lineServer is a real TCP target: it greets each connection with its
// name, answers each line with "name: line", and after the client's EOF
// (a half-close) says "bye name" and closes.
type lineServer struct {
	name string
	l    net.Listener
	wg   sync.WaitGroup
}

func startLineServer(t *testing.T, name string) *lineServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &lineServer{name: name, l: l}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer c.Close()
				fmt.Fprintf(c, "hello %s\n", name)
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						fmt.Fprintf(c, "bye %s\n", name)
						return
					}
					fmt.Fprintf(c, "%s: %s", name, line)
				}
			}()
		}
	}()
	t.Cleanup(s.stop)
	return s
}

func (s *lineServer) addr() string { return s.l.Addr().String() }
func (s *lineServer) stop()        { s.l.Close() }

// newApp returns a proxy serving one tcp app on a fresh listener.
func newApp(t *testing.T, drain, holdMax time.Duration) (*Proxy, string) {
	t.Helper()
	return newAppChecked(t, drain, holdMax, 50*time.Millisecond)
}

func newAppChecked(t *testing.T, drain, holdMax, interval time.Duration) (*Proxy, string) {
	t.Helper()
	p := New(Options{Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	cfg := &config.App{Name: "ssh", Kind: config.KindTCP, DrainTimeout: config.Duration(drain), HoldMax: config.Duration(holdMax),
		Health: config.Health{Interval: config.Duration(interval), Timeout: config.Duration(time.Second)}}
	p.Configure(config.Apps{cfg})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); p.Serve("ssh", l) }()
	t.Cleanup(func() {
		l.Close()
		<-served
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		p.Shutdown(ctx)
	})
	return p, l.Addr().String()
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func route(release string, targets ...string) gateway.Route {
	return gateway.Route{Pools: []gateway.Pool{{Release: release, Targets: targets, Weight: 100}}}
}

// client is one connection through the proxy, reading line by line.
type client struct {
	t  *testing.T
	c  *net.TCPConn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &client{t: t, c: c.(*net.TCPConn), br: bufio.NewReader(c)}
}

func (c *client) line() string {
	c.t.Helper()
	s, err := c.br.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, s)
	}
	return strings.TrimSuffix(s, "\n")
}

func (c *client) say(s string) string {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.c, "%s\n", s); err != nil {
		c.t.Fatal(err)
	}
	return c.line()
}

// TestHalfClose: a client that shuts its sending side still gets the
// target's whole answer, and a large exchange passes whole both ways.
func TestHalfClose(t *testing.T) {
	a := startLineServer(t, "a")
	p, addr := newApp(t, time.Second, time.Second)
	if _, err := p.SetRoute("ssh", route("v1", a.addr())); err != nil {
		t.Fatal(err)
	}
	c := dial(t, addr)
	if got := c.line(); got != "hello a" {
		t.Fatalf("greeting: %q", got)
	}
	var sent bytes.Buffer
	for i := range 20000 {
		fmt.Fprintf(&sent, "line %d %s\n", i, strings.Repeat("x", i%200))
	}
	go func() {
		c.c.Write(sent.Bytes())
		c.c.CloseWrite()
	}()
	got, err := io.ReadAll(c.br)
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.ReplaceAll(sent.Bytes(), []byte("line "), []byte("a: line "))
	want = append(want, "bye a\n"...)
	if sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("answer after half-close: %d bytes, want %d; ends %q", len(got), len(want), got[max(0, len(got)-40):])
	}
	waitFor(t, "the connection to close", func() bool { return p.Open() == 0 })
	st := p.Status()[0].TCP
	if len(st.Targets) != 1 || st.Targets[0].Connections != 1 || st.Targets[0].BytesToTarget != int64(sent.Len()) ||
		st.Targets[0].BytesToClient != int64(len("hello a\n")+len(want)) {
		t.Errorf("counts: %+v (sent %d, answered %d)", st.Targets, sent.Len(), len("hello a\n")+len(want))
	}
}

// TestRouteChangeDrains: new connections go to the new route at once; an
// open connection stays on its old target and finishes its exchange there;
// the drain ends when it closes, with nothing cut.
func TestRouteChangeDrains(t *testing.T) {
	a, b := startLineServer(t, "a"), startLineServer(t, "b")
	p, addr := newApp(t, 10*time.Second, time.Second)
	p.SetRoute("ssh", route("v1", a.addr()))
	old := dial(t, addr)
	if got := old.line(); got != "hello a" {
		t.Fatal(got)
	}
	drain, err := p.SetRoute("ssh", route("v2", b.addr()))
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		c := dial(t, addr)
		if got := c.line(); got != "hello b" {
			t.Fatalf("a new connection after the switch: %q", got)
		}
		c.c.Close()
	}
	for i := range 5 {
		if got := old.say(fmt.Sprint("x", i)); got != fmt.Sprintf("a: x%d", i) {
			t.Fatalf("the old connection after the switch: %q", got)
		}
	}
	st := p.Status()[0]
	if len(st.Draining) != 1 || st.Draining[0].Addr != a.addr() || st.Draining[0].Inflight != 1 {
		t.Errorf("status while draining: %+v", st.Draining)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	if _, err := drain.Wait(ctx); err == nil {
		t.Fatal("the drain ended while a connection was open on the old target")
	}
	cancel()
	old.c.CloseWrite()
	if got := old.line(); got != "bye a" {
		t.Fatalf("old connection's end: %q", got)
	}
	rep, err := drain.Wait(context.Background())
	if err != nil || rep.Cut != 0 || len(rep.Targets) != 1 {
		t.Fatalf("drain: %+v %v", rep, err)
	}
}

// TestDrainTimeoutCuts: a connection still open at drain_timeout is
// closed, and counted.
func TestDrainTimeoutCuts(t *testing.T) {
	a, b := startLineServer(t, "a"), startLineServer(t, "b")
	p, addr := newApp(t, 300*time.Millisecond, time.Second)
	p.SetRoute("ssh", route("v1", a.addr()))
	old := dial(t, addr)
	old.line()
	start := time.Now()
	drain, _ := p.SetRoute("ssh", route("v2", b.addr()))
	rep, err := drain.Wait(context.Background())
	if err != nil || rep.Cut != 1 {
		t.Fatalf("drain: %+v %v", rep, err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Errorf("drain took %s, want about drain_timeout (300ms)", d)
	}
	if _, err := old.br.ReadString('\n'); err == nil {
		t.Error("the cut connection still reads")
	}
	if st := p.Status()[0]; st.TCP.Cut != 1 || len(st.Draining) != 0 {
		t.Errorf("status after the cut: cut %d, draining %v", st.TCP.Cut, st.Draining)
	}
}

// TestDeadTargetRetried: connections whose target refuses go to another
// target; the client never sees the dead one, which leaves rotation.
func TestDeadTargetRetried(t *testing.T) {
	a, dead := startLineServer(t, "a"), startLineServer(t, "dead")
	deadAddr := dead.addr()
	// Checked once at the start (both pass), then not for the test's
	// length: only the dials can find the dead one.
	p, addr := newAppChecked(t, time.Second, time.Second, time.Hour)
	p.SetRoute("ssh", route("v1", deadAddr, a.addr()))
	waitFor(t, "the first checks", func() bool {
		st := p.Status()[0].Pools[0].Targets
		return !st[0].CheckedAt.IsZero() && !st[1].CheckedAt.IsZero()
	})
	dead.stop()
	for range 20 {
		c := dial(t, addr)
		if got := c.line(); got != "hello a" {
			t.Fatalf("got %q", got)
		}
		c.c.Close()
	}
	st := p.Status()[0]
	var failures int64
	for _, ts := range st.TCP.Targets {
		if ts.Addr == deadAddr {
			failures = ts.DialFailures
		}
	}
	if failures < 1 || st.Pools[0].Targets[0].Healthy {
		t.Errorf("the dead target: %d dial failures, status %+v", failures, st.Pools[0].Targets[0])
	}
}

// TestNoTargetWaitsHoldMax: a connection that finds no target accepting
// waits, up to hold_max, for one to come up rather than being closed.
func TestNoTargetWaitsHoldMax(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	later := l.Addr().String()
	l.Close()
	p, addr := newApp(t, time.Second, 3*time.Second)
	p.SetRoute("ssh", route("v1", later))
	go func() {
		time.Sleep(300 * time.Millisecond)
		l2, err := net.Listen("tcp", later)
		if err != nil {
			t.Error(err)
			return
		}
		t.Cleanup(func() { l2.Close() })
		for { // the health checks connect too
			c, err := l2.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "up\n")
			c.Close()
		}
	}()
	c := dial(t, addr)
	if got := c.line(); got != "up" {
		t.Fatalf("got %q", got)
	}

	// With nothing coming up, the client's connection closes at hold_max.
	l3, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	never := l3.Addr().String()
	l3.Close()
	p2, addr2 := newApp(t, time.Second, 200*time.Millisecond)
	p2.SetRoute("ssh", route("v1", never))
	start := time.Now()
	c2 := dial(t, addr2)
	if _, err := c2.br.ReadString('\n'); err == nil {
		t.Fatal("read from a connection no target took")
	}
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("closed after %s, before hold_max", d)
	}
	if st := p2.Status()[0].TCP; st.Refused != 1 {
		t.Errorf("refused: %d", st.Refused)
	}
}

// TestCheck: a connect, and send/expect.
func TestCheck(t *testing.T) {
	a := startLineServer(t, "a")
	h := config.Health{Timeout: config.Duration(time.Second)}
	ctx := context.Background()
	if err := Check(ctx, a.addr(), h); err != nil {
		t.Fatal(err)
	}
	h.Expect = "hello a"
	if err := Check(ctx, a.addr(), h); err != nil {
		t.Fatal(err)
	}
	h.Send, h.Expect = "ping\n", "hello a\na: ping"
	if err := Check(ctx, a.addr(), h); err != nil {
		t.Fatal(err)
	}
	h.Send, h.Expect = "", "SSH-"
	if err := Check(ctx, a.addr(), h); err == nil || !strings.Contains(err.Error(), `want an answer beginning "SSH-", got "hell"`) {
		t.Fatalf("a wrong banner: %v", err)
	}
	a.stop()
	if err := Check(ctx, a.addr(), config.Health{Timeout: config.Duration(time.Second)}); err == nil {
		t.Fatal("a closed port passed")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestResetBeforeAWordGoesElsewhere: a target that resets a connection it
// had queued but never took (a process dying with connections in its
// accept queue) has been sent nothing; the client goes to another target
// and never sees the reset.
func TestResetBeforeAWordGoesElsewhere(t *testing.T) {
	a := startLineServer(t, "a")
	queue, err := net.Listen("tcp", "127.0.0.1:0") // connects, never accepts
	if err != nil {
		t.Fatal(err)
	}
	p, addr := newAppChecked(t, time.Second, time.Second, time.Hour)
	p.SetRoute("ssh", gateway.Route{Pools: []gateway.Pool{
		{Release: "v1", Targets: []string{queue.Addr().String()}, Weight: 100},
		{Release: "v0", Targets: []string{a.addr()}, Weight: 0}, // only when v1 fails
	}})
	waitFor(t, "the first checks", func() bool {
		for _, ps := range p.Status()[0].Pools {
			if ps.Targets[0].CheckedAt.IsZero() {
				return false
			}
		}
		return true
	})
	go func() {
		time.Sleep(100 * time.Millisecond)
		queue.Close() // the queued connection is reset
	}()
	c := dial(t, addr)
	if got := c.line(); got != "hello a" {
		t.Fatalf("greeted by %q", got)
	}
	for _, ts := range p.Status()[0].TCP.Targets {
		if ts.Addr == queue.Addr().String() && ts.DialFailures != 1 {
			t.Errorf("the resetting target: %+v", ts)
		}
	}
}
