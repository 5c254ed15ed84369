package h1

import (
	"bufio"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// TestWriteHeaderFields: a proxy's wire lines go out after the header
// map's fields, as they are; the server frames the body by the length
// they declared (a HEAD's answer too) and adds Date only when they have
// none.
func TestWriteHeaderFields(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Map", "m")
		fw := w.(FieldsWriter)
		switch r.URL.Path {
		case "/declared":
			fw.WriteHeaderFields(200, []byte("x-wire: 1\r\nDate: D\r\n"), 5, true)
			if r.Method != http.MethodHead {
				w.Write([]byte("hello"))
			}
		case "/undeclared":
			fw.WriteHeaderFields(201, []byte("X-Wire: 2\r\n"), -1, false)
			w.Write([]byte("abc"))
		}
	}))
	c := dialRaw(t, ts.addr)
	for _, tc := range []struct{ method, path, head, body string }{
		{"GET", "/declared", "HTTP/1.1 200 OK\r\nX-Map: m\r\nx-wire: 1\r\nDate: D\r\nContent-Length: 5\r\n\r\n", "hello"},
		{"HEAD", "/declared", "HTTP/1.1 200 OK\r\nX-Map: m\r\nx-wire: 1\r\nDate: D\r\nContent-Length: 5\r\n\r\n", ""},
		{"GET", "/undeclared", "HTTP/1.1 201 Created\r\nX-Map: m\r\nX-Wire: 2\r\nDate: ", "abc"},
	} {
		c.send(tc.method + " " + tc.path + " HTTP/1.1\r\nHost: x\r\n\r\n")
		head := readRawHead(t, c.br)
		if !strings.HasPrefix(head, tc.head) {
			t.Fatalf("%s %s: head %q, want it to begin %q", tc.method, tc.path, head, tc.head)
		}
		if tc.path == "/undeclared" && (strings.Count(head, "Date: ") != 1 || !strings.HasSuffix(head, "\r\nContent-Length: 3\r\n\r\n")) {
			t.Fatalf("head %q: want one Date, added by the server, and the length written", head)
		}
		body := make([]byte, len(tc.body))
		if _, err := io.ReadFull(c.br, body); err != nil || string(body) != tc.body {
			t.Fatalf("%s %s: body %q, %v", tc.method, tc.path, body, err)
		}
	}
}

// readRawHead reads a response head through its blank line.
func readRawHead(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	var b strings.Builder
	for !strings.HasSuffix(b.String(), "\r\n\r\n") {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read head %q: %v", b.String(), err)
		}
		b.WriteString(line)
	}
	return b.String()
}

// TestIdleConnectionMemory: a kept-alive connection waiting for its next
// request holds no buffer: neither a read nor a write buffer, nor the one
// that holds a body until its length is known. With the test's own client
// side (its connection and 4 KiB reader), the heap grows by ~9 KiB per
// idle connection; when each kept its body buffer, by ~13.
func TestIdleConnectionMemory(t *testing.T) {
	ts := startServer(t, benchHandle)
	var rc responseCounter
	heapPerConn(t, ts.addr, func(c *rawConn) {
		c.send(benchRequest)
		if err := rc.read(c.br); err != nil {
			t.Fatal(err)
		}
	})
}

// TestWaitingHandlerMemory: a handler that waits before it answers (a
// gateway's, for its instance) holds no buffer meanwhile when its request
// has no body: the read buffer goes back once the head is parsed, and the
// write buffer is taken at the response's first byte. ~9 KiB per
// connection as for an idle one, the client's side included; holding the
// two, ~17.
func TestWaitingHandlerMemory(t *testing.T) {
	var arrived sync.WaitGroup
	release := make(chan struct{})
	var released sync.Once
	answer := func() { released.Do(func() { close(release) }) }
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		<-release
		io.WriteString(w, "late")
	}))
	t.Cleanup(answer) // before the server's cleanup, which waits for the handlers
	conns := heapPerConn(t, ts.addr, func(c *rawConn) {
		arrived.Add(1)
		c.send(benchRequest)
		arrived.Wait()
	})
	answer()
	for _, c := range conns {
		if head := readRawHead(t, c.br); !strings.HasPrefix(head, "HTTP/1.1 200 ") {
			t.Fatalf("after the wait: head %q", head)
		}
	}
}

// heapPerConn opens connections, brings each to the state under test with
// setUp, and fails when the heap grew by more than 11 KiB per connection,
// the client's side included. It returns the connections, still open.
func heapPerConn(t *testing.T, addr string, setUp func(*rawConn)) []*rawConn {
	t.Helper()
	if testing.Short() {
		t.Skip("measures the heap")
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	const n = 200
	conns := make([]*rawConn, n)
	before := heap()
	for i := range conns {
		conns[i] = dialRaw(t, addr)
		setUp(conns[i])
	}
	per := float64(heap()-before) / n
	t.Logf("%.0f bytes of heap per connection (the client's side included)", per)
	if per > 11<<10 {
		t.Errorf("%.0f bytes of heap per connection, want under 11 KiB (~9)", per)
	}
	return conns
}
