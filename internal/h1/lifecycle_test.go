package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// Connection lifecycle: timeouts, hijack, abort, drain, shutdown, HTTP/2.

func TestReadHeaderTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	ts := startServer(t, echoHandler, func(s *Server) { s.ReadHeaderTimeout = timeout })
	t.Run("new connection", func(t *testing.T) {
		start := time.Now()
		c := dialRaw(t, ts.addr)
		c.send("GET / HTTP/1.1\r\nHost: t\r\n") // never finished
		c.expectClosed()
		if d := time.Since(start); d < timeout {
			t.Fatalf("closed after %v, before the %v header timeout", d, timeout)
		}
	})
	t.Run("kept-alive connection", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.get("/first")
		start := time.Now()
		c.send("GET /second HTTP/1.1\r\n")
		c.expectClosed()
		if d := time.Since(start); d < timeout {
			t.Fatalf("closed after %v, before the %v header timeout", d, timeout)
		}
	})
}

func TestIdleTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	ts := startServer(t, echoHandler, func(s *Server) { s.IdleTimeout = timeout })
	c := dialRaw(t, ts.addr)
	start := time.Now() // before the request: the deadline is set after its response
	c.get("/")
	c.expectClosed()
	if d := time.Since(start); d < timeout {
		t.Fatalf("closed after %v, before the %v idle timeout", d, timeout)
	}
}

// TestHijack runs a tiny upgrade to an echo protocol. The client sends its
// first bytes with the request, so they are in the server's read buffer
// when the handler takes the connection over.
func TestHijack(t *testing.T) {
	hijacked := make(chan error, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "upgrade to echo", http.StatusUpgradeRequired)
			return
		}
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "echo")
		w.WriteHeader(http.StatusSwitchingProtocols)
		conn, brw, err := http.NewResponseController(w).Hijack()
		hijacked <- err
		if err != nil {
			return
		}
		defer conn.Close()
		for {
			line, err := brw.ReadString('\n')
			if err != nil {
				return
			}
			brw.WriteString("echo: " + line)
			if brw.Flush() != nil {
				return
			}
		}
	}))
	c := dialRaw(t, ts.addr)
	c.send("GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nhello\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Upgrade") != "echo" || resp.Header.Get("Connection") != "Upgrade" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	if err := <-hijacked; err != nil {
		t.Fatalf("hijack: %v", err)
	}
	if n := ts.ConnCount(); n != 0 {
		t.Fatalf("ConnCount %d with the only connection hijacked, want 0", n)
	}
	for _, msg := range []string{"hello\n", "world\n"} {
		if msg != "hello\n" {
			c.send(msg)
		}
		got, err := c.br.ReadString('\n')
		if err != nil || got != "echo: "+msg {
			t.Fatalf("got %q, %v; want the echo of %q", got, err, msg)
		}
	}
	// Shutdown does not wait for a hijacked connection.
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

// TestAbort checks that panic(http.ErrAbortHandler) leaves the client with
// a response it can tell is incomplete, whatever the framing, and is not
// logged; another panic is logged.
func TestAbort(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/length" {
			w.Header().Set("Content-Length", "100000")
		}
		io.WriteString(w, strings.Repeat("p", 2*bufferBeforeCommit)) // commits the head
		w.(http.Flusher).Flush()
		if r.URL.Path == "/boom" {
			panic("boom")
		}
		panic(http.ErrAbortHandler)
	}))
	for _, path := range []string{"/length", "/chunked", "/boom"} {
		resp, err := ts.client(t).Get(ts.url(path))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Fatalf("%s: the client read a complete body", path)
		}
	}
	t.Run("HTTP/1.0", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send("GET /close HTTP/1.0\r\n\r\n")
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(resp.Body); !isReset(err) {
			t.Fatalf("a close-delimited body ended with %v, want a reset", err)
		}
	})
	waitFor(t, "the connections to close", func() bool { return ts.ConnCount() == 0 })
	log := ts.log.String()
	if strings.Count(log, "panic serving") != 1 || !strings.Contains(log, "boom") {
		t.Fatalf("want exactly the one panic that is not ErrAbortHandler logged; log:\n%s", log)
	}
}

// TestDrain checks that a drained server answers each request with
// Connection: close, and leaves idle connections alone until their idle
// timeout.
func TestDrain(t *testing.T) {
	const idle = 300 * time.Millisecond
	ts := startServer(t, echoHandler, func(s *Server) { s.IdleTimeout = idle })
	busy, quiet := dialRaw(t, ts.addr), dialRaw(t, ts.addr)
	if resp, _ := busy.get("/before"); resp.Close {
		t.Fatal("Connection: close before the drain")
	}
	quietStart := time.Now()
	quiet.get("/before")
	ts.Drain()

	resp, body := busy.get("/after")
	if !resp.Close || body != "GET /after " {
		t.Fatalf("after the drain: close %v, body %q", resp.Close, body)
	}
	busy.expectClosed()

	quiet.expectClosed()
	if d := time.Since(quietStart); d < idle {
		t.Fatalf("an idle connection closed %v after its request, before its %v idle timeout", d, idle)
	}
	// A new connection is still served, and told to leave.
	if resp, _ := dialRaw(t, ts.addr).get("/new"); !resp.Close {
		t.Fatal("a connection accepted after the drain was not told to close")
	}
}

// TestShutdownWaits checks that Shutdown returns only after the request in
// flight is answered and its connection gone.
func TestShutdownWaits(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var events []string
	note := func(e string) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	}
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		io.WriteString(w, "finished")
	}), func(s *Server) {
		s.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateClosed {
				note("closed")
			}
		}
	})
	c := dialRaw(t, ts.addr)
	c.send("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n")
	<-entered
	shut := make(chan error, 1)
	go func() {
		err := ts.Shutdown(context.Background())
		note("shutdown returned")
		shut <- err
	}()
	waitFor(t, "the listener to close", func() bool {
		nc, err := net.Dial("tcp", ts.addr)
		if err == nil {
			nc.Close()
		}
		return err != nil
	})
	// A Shutdown that did not wait would return right after closing the
	// listener; give it that chance.
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) with a request in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	resp, body := c.response("GET")
	if body != "finished" || !resp.Close {
		t.Fatalf("in-flight request: body %q, close %v", body, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(events) != "[closed shutdown returned]" {
		t.Fatalf("events %v: Shutdown must return after the connection closed", events)
	}
}

func TestShutdownDeadline(t *testing.T) {
	ts := startServer(t, echoHandler) // idle connections outlive the context
	c := dialRaw(t, ts.addr)
	c.get("/")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("shutdown: %v, want context.DeadlineExceeded", err)
	}
	c.expectClosed() // closed by the Close that followed
}

func TestCloseCancelsRequests(t *testing.T) {
	entered := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done()
	}))
	c := dialRaw(t, ts.addr)
	c.send("GET / HTTP/1.1\r\nHost: t\r\n\r\n")
	<-entered
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	c.expectClosed()
}

// TestContextEndsWithConnection: the context is the connection's, so a
// request's context ends when its connection does.
func TestContextEndsWithConnection(t *testing.T) {
	ctxs := make(chan context.Context, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctxs <- r.Context()
		if _, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); !ok {
			t.Error("no http.LocalAddrContextKey in the context")
		}
	}))
	c := dialRaw(t, ts.addr)
	c.get("/")
	ctx := <-ctxs
	if ctx.Err() != nil {
		t.Fatal("context ended while the connection is open")
	}
	c.Close()
	select {
	case <-ctx.Done():
	case <-time.After(testTimeout):
		t.Fatal("context still open after the client closed the connection")
	}
}

func TestConnStates(t *testing.T) {
	var mu sync.Mutex
	var states []http.ConnState
	ts := startServer(t, echoHandler, func(s *Server) {
		s.ConnState = func(_ net.Conn, st http.ConnState) {
			mu.Lock()
			states = append(states, st)
			mu.Unlock()
		}
	})
	c := dialRaw(t, ts.addr)
	c.get("/1")
	c.get("/2")
	// The server marks the connection idle just after the response is out.
	waitFor(t, "one idle connection", func() bool { return ts.ConnStats() == ConnStats{Idle: 1} })
	c.Close()
	waitFor(t, "the connection to close", func() bool { return ts.ConnCount() == 0 })
	mu.Lock()
	defer mu.Unlock()
	if got := fmt.Sprint(states); got != "[new active idle active idle closed]" {
		t.Fatalf("states %s", got)
	}
}

func TestH2C(t *testing.T) {
	ts := startServer(t, echoHandler)
	tr := &http.Transport{Protocols: new(http.Protocols)}
	tr.Protocols.SetUnencryptedHTTP2(true)
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr, Timeout: testTimeout}
	for i := range 5 {
		resp, err := c.Post(ts.url(fmt.Sprintf("/h2/%d", i)), "text/plain", strings.NewReader("over h2"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.ProtoMajor != 2 || string(b) != fmt.Sprintf("POST /h2/%d over h2", i) {
			t.Fatalf("%s %q %v", resp.Proto, b, err)
		}
	}
	if st := ts.ConnStats(); st.HTTP2 != 1 || st.Total() != 1 {
		t.Fatalf("stats %+v, want one HTTP/2 connection", st)
	}
	// HTTP/1 clients are still served on the same listener.
	h1c := dialRaw(t, ts.addr)
	if resp, body := h1c.get("/h1"); resp.ProtoMajor != 1 || body != "GET /h1 " {
		t.Fatalf("HTTP/1 next to HTTP/2: %s %q", resp.Proto, body)
	}
	h1c.Close() // else Shutdown waits for its idle timeout
	// Shutdown tells the HTTP/2 connection to go away, and waits for it.
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := ts.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	if n := ts.ConnCount(); n != 0 {
		t.Fatalf("%d connections after Shutdown", n)
	}
}

// TestH2CPrefaceSplit sends the preface a few bytes at a time: the server
// must wait for all of it before it decides.
func TestH2CPrefaceSplit(t *testing.T) {
	ts := startServer(t, echoHandler)
	c := dialRaw(t, ts.addr)
	for _, part := range []string{"PRI * HTTP/2.0\r\n", "\r\nSM", "\r\n\r\n"} {
		c.send(part)
	}
	// An HTTP/2 server answers the preface with a SETTINGS frame: type 4.
	hdr := make([]byte, 9)
	if _, err := io.ReadFull(bufio.NewReader(c), hdr); err != nil {
		t.Fatal(err)
	}
	if hdr[3] != 4 {
		t.Fatalf("first frame has type %d, want SETTINGS (4)", hdr[3])
	}
}

// TestIdleTimeoutBusyConnection checks the idle timeout on a connection
// that carried many requests in quick succession, whose idle deadline is
// kept from one request to the next rather than set anew each time
// (setIdleDeadline): the connection still closes when idle, and not
// sooner than the timeout less DeadlineSlack after its last response.
func TestIdleTimeoutBusyConnection(t *testing.T) {
	const timeout = 200 * time.Millisecond
	ts := startServer(t, echoHandler, func(s *Server) { s.IdleTimeout = timeout })
	c := dialRaw(t, ts.addr)
	var last time.Time
	for range 50 {
		last = time.Now() // before the request: the deadline is set after its response
		c.get("/")
	}
	c.expectClosed()
	if d, min := time.Since(last), timeout-DeadlineSlack(timeout); d < min {
		t.Fatalf("closed %v after the last request, before %v", d, min)
	}
}
