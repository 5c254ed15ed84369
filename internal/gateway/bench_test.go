package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/h1"
)

// BenchmarkProxy measures the gateway's own cost per proxied request: the
// front door (h1) and the gateway in this process, the instance (a net/http
// server answering as `handoff sampleapp` does: /fast is 100 B, /bytes
// 64 KiB) and the load (kept-alive connections, each a client that sends a
// request and reads its response) each in a process of their own, this
// test binary re-run. So the figures are the proxy's alone:
//
//	cpu-µs/req  this process's user+system CPU time per request, syscalls included
//	user-µs/req the user part of it: our code and the Go runtime
//	allocs/op   the proxy's allocations per request
//
// Run it as bench/gateway runs the proxy: the proxy and the instance on one
// CPU (GOMAXPROCS 1), the load on another (GATEWAY_BENCH_LOAD_CPU, by
// taskset):
//
//	GATEWAY_BENCH_LOAD_CPU=0 taskset -c 1 go test -run '^$' -bench Proxy -benchtime 50000x -cpu 1 ./internal/gateway/
func BenchmarkProxy(b *testing.B) {
	back := startBenchChild(b, "backend", nil)
	defer back.stop()
	for _, size := range []int{100, 64 << 10} {
		for _, conns := range []int{1, 32, 256} {
			b.Run(fmt.Sprintf("body=%s/conns=%d", sizeName(size), conns), func(b *testing.B) {
				benchProxy(b, back.addr, size, conns)
			})
		}
	}
}

func sizeName(n int) string {
	if n >= 1<<10 {
		return strconv.Itoa(n>>10) + "KiB"
	}
	return strconv.Itoa(n) + "B"
}

func benchProxy(b *testing.B, backend string, size, conns int) {
	runProxyLoad(b, backend, size, conns, b.N, func(run func()) {
		runtime.GC()
		b.ReportAllocs()
		b.ResetTimer()
		cpu0, user0 := processCPU(b)
		run()
		cpu1, user1 := processCPU(b)
		cpu, user := cpu1-cpu0, user1-user0
		b.StopTimer()
		b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(b.N), "cpu-µs/req")
		b.ReportMetric(float64(user.Nanoseconds())/1e3/float64(b.N), "user-µs/req")
	})
}

// runProxyLoad serves a gateway in front of backend, starts a load of n
// requests over conns connections, and calls measure with a function that
// runs the load to its end.
func runProxyLoad(tb testing.TB, backend string, size, conns, n int, measure func(run func())) {
	addr, stop := serveProxy(tb, backend, nil)
	defer stop()
	runLoad(tb, addr, size, conns, n, measure)
}

// serveProxy serves a gateway in front of backend with h1, as handoff
// serve does, and returns its address. accepted, when set, is called with
// each client connection.
func serveProxy(tb testing.TB, backend string, accepted func(*net.TCPConn)) (string, func()) {
	return serveGateway(tb, backend, Options{RetryBuffer: 64 << 10, ResponseTimeout: 2 * time.Minute}, accepted)
}

// serveProxyWith is serveProxy with the gateway's options.
func serveProxyWith(tb testing.TB, backend string, opts Options) (string, func()) {
	return serveGateway(tb, backend, opts, nil)
}

func serveGateway(tb testing.TB, backend string, opts Options, accepted func(*net.TCPConn)) (string, func()) {
	cfg, err := config.Parse("bench.yaml", []byte("apps:\n  web:\n    health: {path: /healthz, interval: 1s}\n"))
	if err != nil {
		tb.Fatal(err)
	}
	g := New(opts)
	if err := g.Configure(cfg.Apps); err != nil {
		tb.Fatal(err)
	}
	if _, err := g.SetRoute("web", Route{Pools: []Pool{{Release: "v1", Targets: []string{backend}, Weight: 1}}}); err != nil {
		tb.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	if accepted != nil {
		l = hookListener{l.(*net.TCPListener), accepted}
	}
	// The timeouts of handoff serve's defaults (config.go), so that their
	// cost is in the figures.
	s := &h1.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 75 * time.Second, BodyTimeout: time.Minute}
	go s.Serve(l)
	return l.Addr().String(), func() { s.Close(); g.Close() }
}

// runLoad runs the load child against addr; see runProxyLoad.
func runLoad(tb testing.TB, addr string, size, conns, n int, measure func(run func())) {
	path := "/fast"
	if size != 100 {
		path = "/bytes?n=" + strconv.Itoa(size)
	}
	client := startBenchChild(tb, "client", []string{
		"GATEWAY_BENCH_ADDR=" + addr, "GATEWAY_BENCH_PATH=" + path,
		"GATEWAY_BENCH_SIZE=" + strconv.Itoa(size),
		"GATEWAY_BENCH_REQUESTS=" + strconv.Itoa(n), "GATEWAY_BENCH_CONNS=" + strconv.Itoa(conns),
	})
	defer client.stop()
	measure(func() {
		client.begin()
		if err := client.loaded(); err != nil {
			tb.Fatal(err)
		}
	})
	if err := client.wait(); err != nil {
		tb.Fatal(err)
	}
}

// TestProxySystemCalls counts the read and write system calls the proxy
// makes per request, one kept-alive connection at a time. The proxy, as
// the instance and the load, runs in a process of its own (with one P, as
// in bench/gateway), and reports the counts of its sockets' system calls
// (h1.CountSocketCalls; /proc/PID/io leaves out the socket calls, recvfrom
// and sendto, that h1.Socket makes). A GET's pooled upstream connection
// is not peeked first (see roundTrip): no peeks at all. A request costs one
// read of the client's request, one write of it to the instance, one read
// of the answer and one write of it to the client. The read of the
// instance's answer is not first tried right after the request went, when
// it would find nothing: the gateway waits for the answer to be readable
// (see writeAwait). A 64 KiB answer's head goes out with the part of its
// body that came in with it, in one write, and the rest is spliced from
// the instance's socket to the client's: one splice in, one out.
func TestProxySystemCalls(t *testing.T) {
	if h1.NewSocket(tcpConnForProbe(t)) == nil {
		t.Skip("h1.Socket is Linux's (amd64, arm64): elsewhere the proxy's calls are not counted")
	}
	back := startBenchChild(t, "backend", nil)
	defer back.stop()
	proxy := startBenchChild(t, "proxy", []string{"GATEWAY_BENCH_BACKEND=" + back.addr})
	defer proxy.stop()
	const n = 2000
	for _, tc := range []struct {
		size                int
		maxReads, maxWrites float64
		splices             float64 // about this many
	}{
		// Before: 4 reads, of which 2 found nothing. One is left, of the
		// client's next request: with one connection, it has not come yet.
		{100, 3.3, 2.2, 0},
		// The instance's answer comes in pieces, read as they come: only
		// the writes are counted here. Before: 3, then 2 (one writev of
		// the head and the body), then 2 and 2 splices.
		{64 << 10, 100, 2.2, 2},
	} {
		t.Run(sizeName(tc.size), func(t *testing.T) {
			var reads, writes, peeks, splices, allocs float64
			runLoad(t, proxy.addr, tc.size, 1, n, func(run func()) {
				before, mallocsBefore := proxy.socketCalls(t)
				run()
				after, mallocsAfter := proxy.socketCalls(t)
				reads = float64(after.Reads-before.Reads) / n
				writes = float64(after.Writes-before.Writes) / n
				peeks = float64(after.Peeks-before.Peeks) / n
				splices = float64(after.Splices-before.Splices) / n
				allocs = float64(mallocsAfter-mallocsBefore) / n
			})
			t.Logf("%s: %.2f reads, %.2f writes, %.2f peeks, %.2f splices and %.2f allocations per request", sizeName(tc.size), reads, writes, peeks, splices, allocs)
			if reads > tc.maxReads || writes > tc.maxWrites {
				t.Errorf("%.2f reads and %.2f writes per request, want at most %.1f and %.1f", reads, writes, tc.maxReads, tc.maxWrites)
			}
			if splices < tc.splices-0.1 || splices > tc.splices+0.5 {
				t.Errorf("%.2f splices per request, want about %.0f", splices, tc.splices)
			}
			if peeks > 0.01 {
				t.Errorf("%.2f peeks per request, want none for a GET", peeks)
			}
			// 1: the request's head as a string (h1). The exchange and the
			// answer are the upstream connection's, reused, and the answer's
			// fields stay bytes on their way to the client (as strings in a
			// header map, with the exchange and the answer allocated, a
			// request cost 4; without a memory of the last answer's values,
			// 9). The race detector's sync.Pool drops a quarter of what is
			// put back, which adds ~4.5: the buffers taken per request are
			// then made anew (h1's read buffer, taken and given back by
			// each idle read that finds nothing, and its write buffer; the
			// request head's buffer; the answer's read buffer and its
			// head's buffers).
			limit := 1.2
			if raceEnabled {
				limit = 6.5
			}
			if allocs > limit {
				t.Errorf("%.2f allocations per request, want 1 (at most %.1f)", allocs, limit)
			}
		})
	}
}

// bigSendBuffer gives a client connection a send buffer that takes a
// 64 KiB answer whole, so that the count of writes is the gateway's, not
// the kernel's (a fresh connection's buffer starts smaller).
func bigSendBuffer(c *net.TCPConn) { c.SetWriteBuffer(1 << 20) }

// hookListener calls accepted with each connection it accepts.
type hookListener struct {
	*net.TCPListener
	accepted func(*net.TCPConn)
}

func (l hookListener) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	l.accepted(c)
	return c, nil
}

// tcpConnForProbe returns a TCP connection, to ask whether h1.Socket
// serves this platform.
func tcpConnForProbe(t *testing.T) net.Conn {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// socketCalls asks a proxy child for its sockets' system call counts and
// the number of heap allocations it has made.
func (c *benchChild) socketCalls(t testing.TB) (h1.SocketCalls, uint64) {
	if _, err := io.WriteString(c.stdin, "COUNT\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case line := <-c.counts:
		var sc h1.SocketCalls
		var mallocs uint64
		if _, err := fmt.Sscanf(line, "COUNTS %d %d %d %d %d", &sc.Reads, &sc.Writes, &sc.Peeks, &sc.Splices, &mallocs); err != nil {
			t.Fatalf("bench %s: %q: %v", c.role, line, err)
		}
		return sc, mallocs
	case <-c.exited:
		t.Fatalf("bench %s exited: %v\n%s", c.role, c.err, c.out.Bytes())
	}
	return h1.SocketCalls{}, 0
}

// processCPU is this process's CPU time so far: all of it (user and
// system), and its user part alone — the proxy's own code and the Go
// runtime, without the kernel's work on its sockets, which is most of the
// whole and moves with the machine's load more than our code does.
func processCPU(b testing.TB) (all, user time.Duration) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), time.Duration(ru.Utime.Nano())
}

// benchChild is this test binary re-run as BenchmarkProxy's backend or
// load: it prints its address (or "ready") on its first line; a load
// starts when its stdin closes and prints DONE when it has ended well.
type benchChild struct {
	role     string
	cmd      *exec.Cmd
	addr     string
	stdin    io.WriteCloser
	out      *bytes.Buffer
	finished chan struct{} // DONE was printed
	counts   chan string   // COUNTS lines (a proxy's answers to COUNT)
	exited   chan struct{} // err is set
	err      error
}

func startBenchChild(b testing.TB, role string, env []string) *benchChild {
	argv := []string{os.Args[0], "-test.run=^TestProxyBenchChild$", "-test.count=1", "-test.v"}
	if cpu := os.Getenv("GATEWAY_BENCH_LOAD_CPU"); cpu != "" && role == "client" {
		argv = append([]string{"taskset", "-c", cpu}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(append(os.Environ(), "GATEWAY_BENCH_ROLE="+role, "GOMAXPROCS=1"), env...)
	c := &benchChild{role: role, cmd: cmd, out: &bytes.Buffer{}, finished: make(chan struct{}), counts: make(chan string, 1), exited: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	cmd.Stderr = c.out
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	br := bufio.NewReader(stdout)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			b.Fatalf("bench %s: %v\n%s", role, err, c.out.Bytes())
		}
		if v, ok := strings.CutPrefix(line, "ADDR "); ok {
			c.addr = strings.TrimSpace(v)
			break
		}
	}
	go func() {
		var rest bytes.Buffer
		for {
			line, err := br.ReadString('\n')
			if line == "DONE\n" {
				close(c.finished)
			} else if strings.HasPrefix(line, "COUNTS ") {
				c.counts <- line
			} else {
				rest.WriteString(line)
			}
			if err != nil {
				break
			}
		}
		c.err = cmd.Wait()
		c.out.Write(rest.Bytes()) // the exec package's copy of stderr has ended with Wait
		close(c.exited)
	}()
	return c
}

// begin lets the load begin.
func (c *benchChild) begin() { c.stdin.Close() }

// loaded waits until the load has ended well, without reaping the process
// (a reaped child's system call counts are added to this process's).
func (c *benchChild) loaded() error {
	select {
	case <-c.finished:
		return nil
	case <-c.exited:
		return fmt.Errorf("bench %s: exited before its load ended: %v\n%s", c.role, c.err, c.out.Bytes())
	}
}

func (c *benchChild) wait() error {
	<-c.exited
	if c.err != nil {
		return fmt.Errorf("bench %s: %w\n%s", c.role, c.err, c.out.Bytes())
	}
	return nil
}

func (c *benchChild) stop() {
	c.stdin.Close()
	c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.exited:
	case <-time.After(5 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
}

// TestProxyBenchChild is BenchmarkProxy's backend or load, by
// GATEWAY_BENCH_ROLE; run as a test, it does nothing.
func TestProxyBenchChild(t *testing.T) {
	switch os.Getenv("GATEWAY_BENCH_ROLE") {
	case "backend":
		benchBackend(t)
	case "client":
		benchClient(t)
	case "proxy":
		h1.CountSocketCalls()
		addr, stop := serveProxy(t, os.Getenv("GATEWAY_BENCH_BACKEND"), bigSendBuffer)
		fmt.Printf("ADDR %s\n", addr)
		// Each COUNT line asks for the sockets' system call counts; the
		// end of stdin stops the proxy.
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if sc.Text() == "COUNT" {
				n := h1.SocketCallCounts()
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				fmt.Printf("COUNTS %d %d %d %d %d\n", n.Reads, n.Writes, n.Peeks, n.Splices, m.Mallocs)
			}
		}
		stop()
	default:
		t.Skip("BenchmarkProxy's backend and load")
	}
}

// benchBackend answers as `handoff sampleapp` does on its benchmark paths,
// until its stdin closes.
func benchBackend(t *testing.T) {
	fast := bytes.Repeat([]byte("f"), 100)
	pattern := make([]byte, 64<<10)
	for i := range pattern {
		pattern[i] = 'a' + byte(i%26)
	}
	release, textPlain, fastLen := []string{"v1"}, []string{"text/plain; charset=utf-8"}, []string{"100"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /fast", func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["Content-Type"], h["Content-Length"] = textPlain, fastLen
		w.Write(fast)
	})
	mux.HandleFunc("GET /bytes", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		n = min(max(n, 0), len(pattern))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(n))
		w.Write(pattern[:n])
	})
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h["X-Release"] = release
		h["X-Instance"] = []string{r.Context().Value(http.LocalAddrContextKey).(net.Addr).String()}
		mux.ServeHTTP(w, r)
	})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: handler}
	go srv.Serve(l)
	fmt.Printf("ADDR %s\n", l.Addr())
	io.Copy(io.Discard, os.Stdin)
	srv.Close()
}

// benchClient sends GATEWAY_BENCH_REQUESTS requests over
// GATEWAY_BENCH_CONNS kept-alive connections once its stdin closes (the
// connections are dialed before), and fails on any answer but a 200 with
// the expected body length.
func benchClient(t *testing.T) {
	addr, path := os.Getenv("GATEWAY_BENCH_ADDR"), os.Getenv("GATEWAY_BENCH_PATH")
	n, _ := strconv.Atoi(os.Getenv("GATEWAY_BENCH_REQUESTS"))
	conns, _ := strconv.Atoi(os.Getenv("GATEWAY_BENCH_CONNS"))
	size, _ := strconv.Atoi(os.Getenv("GATEWAY_BENCH_SIZE"))
	ncs := make([]net.Conn, conns)
	for i := range ncs {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		ncs[i] = nc
	}
	fmt.Printf("ADDR ready\n")
	io.Copy(io.Discard, os.Stdin)
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: web\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i, nc := range ncs {
		share := n / conns
		if i < n%conns {
			share++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc.SetDeadline(time.Now().Add(5 * time.Minute)) // bounded, whatever happens
			br := bufio.NewReaderSize(nc, 64<<10)
			for range share {
				if _, err := nc.Write(req); err != nil {
					errs <- err
					return
				}
				if err := readBenchResponse(br, size); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	fmt.Printf("DONE\n")
}

// readBenchResponse reads one response framed by Content-Length and
// checks its status and length.
func readBenchResponse(br *bufio.Reader, size int) error {
	length := -1
	for first := true; ; first = false {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return fmt.Errorf("read response head: %w", err)
		}
		if first && !bytes.HasPrefix(line, []byte("HTTP/1.1 200 ")) {
			return fmt.Errorf("response %q", line)
		}
		if len(line) <= 2 {
			break
		}
		if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
			length, _ = strconv.Atoi(string(bytes.TrimSpace(v)))
		}
	}
	if length != size {
		return errors.New("response of length " + strconv.Itoa(length) + ", want " + strconv.Itoa(size))
	}
	_, err := br.Discard(length)
	return err
}
