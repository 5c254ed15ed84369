package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// testTimeout bounds every blocking step of a test, so that a bug fails a
// test instead of hanging it. It is long: the tests must pass on a loaded
// machine, and no correct run comes near it.
const testTimeout = 10 * time.Second

// logSink collects a server's log; it is shown only when the test fails.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

type testServer struct {
	*Server
	addr string
	log  *logSink
}

// startServer serves h on 127.0.0.1:0 until the test ends. Options may
// change the server before it starts.
func startServer(t *testing.T, h http.Handler, opts ...func(*Server)) *testServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	sink := &logSink{}
	s := &Server{
		Handler:           h,
		ReadHeaderTimeout: testTimeout,
		IdleTimeout:       testTimeout,
		ErrorLog:          slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for _, o := range opts {
		o(s)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
		if t.Failed() {
			t.Logf("server log:\n%s", sink)
		}
	})
	return &testServer{Server: s, addr: l.Addr().String(), log: sink}
}

func (ts *testServer) url(path string) string { return "http://" + ts.addr + path }

// client returns a net/http client with its own connection pool.
func (ts *testServer) client(t *testing.T) *http.Client {
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: testTimeout}
}

// rawConn is a client connection that writes bytes as given and reads
// responses with http.ReadResponse.
type rawConn struct {
	t *testing.T
	net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatalf("set deadline: %v", err)
	}
	return &rawConn{t: t, Conn: c, br: bufio.NewReader(c)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.Conn, s); err != nil {
		c.t.Fatalf("write request: %v", err)
	}
}

// response reads one response to a request with method and its body.
func (c *rawConn) response(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read response body: %v", err)
	}
	return resp, string(b)
}

// expectClosed checks that the server closes the connection with nothing
// more to read.
func (c *rawConn) expectClosed() {
	c.t.Helper()
	b, err := io.ReadAll(c.br)
	if err != nil && !isReset(err) {
		c.t.Fatalf("read until close: %v", err)
	}
	if len(b) > 0 {
		c.t.Fatalf("read %q before the close, want nothing", b)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// get sends a GET for path on the connection and reads the response.
func (c *rawConn) get(path string) (*http.Response, string) {
	c.t.Helper()
	c.send("GET " + path + " HTTP/1.1\r\nHost: test\r\n\r\n")
	return c.response("GET")
}

// echoHandler answers with the method, the path and the body it read.
var echoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	io.WriteString(w, r.Method+" "+r.URL.Path+" "+string(b))
})

// waitFor polls cond until it holds or testTimeout passes; for states the
// server reaches on its own goroutines (a listener closed, a count).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
