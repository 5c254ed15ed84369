package gateway

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/h1"
)

// bigBody is the body /big answers: n bytes that differ along its length.
func bigBody(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>12)
	}
	return b
}

// spliceBackend answers /big?n=N with bigBody(N), and /cut with a head
// that announces 1 MiB, 300 KiB of it, and a closed connection.
func spliceBackend(t *testing.T) string {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			n, _ := strconv.Atoi(r.URL.Query().Get("n"))
			w.Header().Set("Content-Length", strconv.Itoa(n))
			w.Write(bigBody(n))
		case "/cut":
			c, brw, _ := http.NewResponseController(w).Hijack()
			brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n")
			brw.Write(bigBody(300 << 10))
			brw.Flush()
			c.Close()
		}
	}))
	t.Cleanup(s.Close)
	return addr(s)
}

// TestSplicedBody checks the path of a large body through the gateway in
// the kernel: the client gets every byte, in order, on a connection (and
// an instance connection) that serves the next request; a body the instance
// cuts short reaches the client as a cut connection, never as a whole body;
// and a client that leaves mid-body is logged as 499.
func TestSplicedBody(t *testing.T) {
	back := spliceBackend(t)
	var logged syncLog
	proxy, stop := serveProxyWith(t, back, Options{AccessLog: true, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	defer stop()
	h1.CountSocketCalls()
	c := &http.Client{Transport: &http.Transport{}, Timeout: 10 * time.Second}
	for _, n := range []int{100, spliceMin, 64 << 10, 3 << 20} {
		before := h1.SocketCallCounts().Splices
		resp, err := c.Get("http://" + proxy + "/big?n=" + strconv.Itoa(n))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || !bytes.Equal(got, bigBody(n)) {
			t.Fatalf("body of %d: got %d bytes (%v), or they differ", n, len(got), err)
		}
		spliced := h1.SocketCallCounts().Splices > before
		if want := n >= 64<<10; spliced != want {
			t.Errorf("body of %d: spliced %v, want %v", n, spliced, want)
		}
	}

	resp, err := c.Get("http://" + proxy + "/cut")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(resp.Body); err == nil {
		t.Errorf("a body cut at %d bytes of 1 MiB reached the client as whole", len(got))
	}
	resp.Body.Close()

	// The client leaves after 256 KiB of 64 MiB.
	conn, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("GET /big?n=67108864 HTTP/1.1\r\nHost: web\r\n\r\n"))
	io.CopyN(io.Discard, conn, 256<<10)
	conn.Close()
	waitFor(t, func() bool { return strings.Contains(logged.String(), "path=/big status=499") })

	// The gateway is whole: the next requests get their bodies.
	resp, err = c.Get("http://" + proxy + "/big?n=1000000")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(got, bigBody(1000000)) {
		t.Errorf("after the failures: %d bytes, or they differ", len(got))
	}
}

// TestIdleUpstreamHoldsNoBuffers checks that an upstream connection back
// in the pool holds no read buffer, and no write buffer unless it has
// carried a request body: buffers are taken per request (headBufs,
// readers), not kept per connection (2 × 16 KiB each before).
func TestIdleUpstreamHoldsNoBuffers(t *testing.T) {
	back := backend(t, "v1")
	g, url := newGateway(t, Pool{Release: "v1", Targets: []string{addr(back)}, Weight: 1})
	get(t, http.DefaultClient, url+"/")
	resp, err := http.Post(url+"/", "text/plain", strings.NewReader("a body"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	get(t, http.DefaultClient, url+"/")
	g.mu.Lock()
	tg := g.targets[addr(back)]
	g.mu.Unlock()
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if len(tg.idle) == 0 {
		t.Fatal("no idle connection to look at")
	}
	withWriter := 0
	for _, c := range tg.idle {
		if c.br != nil {
			t.Errorf("an idle connection holds a read buffer")
		}
		if c.bw != nil {
			withWriter++
		}
	}
	if withWriter > 1 {
		t.Errorf("%d idle connections hold a write buffer; only the one that carried a body may", withWriter)
	}
}
