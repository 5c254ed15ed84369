package h1

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
	"sync"
	"syscall"
	"testing"
	"time"
)

// benchRequest is a browser-like GET as the gateway sees it.
const benchRequest = "GET /api/items?id=42 HTTP/1.1\r\n" +
	"Host: example.com\r\n" +
	"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
	"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n" +
	"Accept-Encoding: gzip, deflate, br\r\n" +
	"Accept-Language: en-US,en;q=0.5\r\n" +
	"Cookie: session=0123456789abcdef; handoff_web=v42\r\n" +
	"Connection: keep-alive\r\n\r\n"

var (
	benchBody   = bytes.Repeat([]byte("x"), 100)
	benchType   = []string{"text/plain; charset=utf-8"}
	benchHandle = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = benchType // no allocation, no sniffing
		w.Write(benchBody)
	})
)

// TestAllocsPerRequest checks that a kept-alive GET with a small response
// costs the server almost no allocation: the head's one string.
func TestAllocsPerRequest(t *testing.T) {
	if testing.Short() {
		t.Skip("measures allocations")
	}
	ts := startServer(t, benchHandle)
	c := dialRaw(t, ts.addr)
	c.SetDeadline(time.Time{})
	req := []byte(benchRequest)
	var rc responseCounter
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		if err := rc.read(c.br); err != nil {
			t.Fatal(err)
		}
	}
	roundTrip()
	allocs := testing.AllocsPerRun(2000, roundTrip)
	t.Logf("%.2f allocations per request", allocs)
	// The race detector's sync.Pool drops a quarter of what is put back:
	// the buffers taken from pools for each request (the read buffer, by
	// the idle read that finds the request and often by one that found
	// nothing before it; the write buffer; the body's, held until its
	// length is known) are then made anew, two allocations each.
	limit := 1.2
	if raceEnabled {
		limit = 3.5
	}
	if allocs > limit {
		t.Fatalf("%.2f allocations per request, want 1 (at most %.1f)", allocs, limit)
	}
}

// responseCounter reads responses framed by Content-Length without
// allocating.
type responseCounter struct{ n int }

func (rc *responseCounter) read(br *bufio.Reader) error {
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
			length = 0
			for _, c := range bytes.TrimSpace(v) {
				length = length*10 + int(c-'0')
			}
		}
	}
	if length < 0 {
		return errors.New("response without Content-Length")
	}
	_, err := br.Discard(length)
	rc.n++
	return err
}

// BenchmarkServeGET compares this server with net/http's on kept-alive
// GETs over loopback, with the same trivial handler. The load comes from
// another process (this test binary, re-run as TestBenchClient), so the
// CPU time and allocations reported are the server's alone:
//
//	cpu-µs/req  the process's user+system CPU time per request
//	allocs/op   the server's allocations per request
//
// go test -run '^$' -bench ServeGET -benchtime 200000x ./internal/h1/
func BenchmarkServeGET(b *testing.B) {
	for _, conns := range []int{1, 32} {
		b.Run(fmt.Sprintf("h1/conns=%d", conns), func(b *testing.B) {
			benchServe(b, conns, func(l net.Listener) (func() error, func()) {
				s := &Server{Handler: benchHandle, ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute}
				return func() error { return s.Serve(l) }, func() { s.Close() }
			})
		})
		b.Run(fmt.Sprintf("net-http/conns=%d", conns), func(b *testing.B) {
			benchServe(b, conns, func(l net.Listener) (func() error, func()) {
				s := &http.Server{Handler: benchHandle, ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute}
				return func() error { return s.Serve(l) }, func() { s.Close() }
			})
		})
	}
}

func benchServe(b *testing.B, conns int, start func(net.Listener) (serve func() error, stop func())) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	serve, stop := start(l)
	go serve()
	defer stop()
	client := exec.Command(os.Args[0], "-test.run=^TestBenchClient$", "-test.count=1")
	client.Env = append(os.Environ(),
		"H1_BENCH_ADDR="+l.Addr().String(),
		"H1_BENCH_REQUESTS="+strconv.Itoa(b.N),
		"H1_BENCH_CONNS="+strconv.Itoa(conns))
	var out bytes.Buffer
	client.Stdout, client.Stderr = &out, &out
	stdin, err := client.StdinPipe() // the client starts its load when this closes
	if err != nil {
		b.Fatal(err)
	}
	if err := client.Start(); err != nil {
		b.Fatal(err)
	}
	runtime.GC()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime(b)
	stdin.Close()
	if err := client.Wait(); err != nil {
		b.Fatalf("load client: %v\n%s", err, out.Bytes())
	}
	cpu := cpuTime(b) - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/req")
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestBenchClient is BenchmarkServeGET's load: H1_BENCH_REQUESTS requests
// over H1_BENCH_CONNS kept-alive connections to H1_BENCH_ADDR, once its
// stdin closes (connections are dialed before). It does nothing when run
// as a test.
func TestBenchClient(t *testing.T) {
	addr := os.Getenv("H1_BENCH_ADDR")
	if addr == "" {
		t.Skip("BenchmarkServeGET's load client")
	}
	n, _ := strconv.Atoi(os.Getenv("H1_BENCH_REQUESTS"))
	conns, _ := strconv.Atoi(os.Getenv("H1_BENCH_CONNS"))
	ncs := make([]net.Conn, conns)
	for i := range ncs {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		ncs[i] = nc
	}
	io.Copy(io.Discard, os.Stdin)
	req := []byte(benchRequest)
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
			br := bufio.NewReader(nc)
			var rc responseCounter
			for range share {
				if _, err := nc.Write(req); err != nil {
					errs <- err
					return
				}
				if err := rc.read(br); err != nil {
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
}
