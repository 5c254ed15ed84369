package h1

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/conncap"
)

// A body that stops coming fails the handler's read once BodyTimeout has
// passed with nothing new, instead of holding the request for ever.
func TestBodyTimeout(t *testing.T) {
	got := make(chan error, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		got <- err
		if errors.Is(err, os.ErrDeadlineExceeded) {
			w.WriteHeader(http.StatusRequestTimeout)
		}
	}), func(s *Server) { s.BodyTimeout = 200 * time.Millisecond })
	for _, tc := range []struct{ name, req string }{
		{"length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc"},
		{"chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, ts.addr)
			start := time.Now()
			c.send(tc.req)
			select {
			case err := <-got:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("read error %v, want a deadline", err)
				}
			case <-time.After(testTimeout):
				t.Fatal("the stalled body was never timed out")
			}
			resp, _ := c.response("POST")
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("status %d, want 408", resp.StatusCode)
			}
			if d := time.Since(start); d < 150*time.Millisecond {
				t.Fatalf("timed out after %v, before the body timeout", d)
			}
			c.expectClosed()
		})
	}
	// A slow body that keeps coming is not cut: the timeout is per read.
	t.Run("slow but steady", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\n\r\n")
		for range 6 {
			time.Sleep(100 * time.Millisecond)
			c.send("x")
		}
		if err := <-got; err != nil {
			t.Fatalf("a steady body failed: %v", err)
		}
		resp, _ := c.response("POST")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
	})
}

// Past the cap a connection gets a 503 with Retry-After at once, and the
// connections already served go on. The cap is one for every server that
// shares it (handoff serve's listeners): a connection to either counts.
// An HTTP/2 connection counts until it closes, and a closed one of either
// kind gives its place back.
func TestConnCap(t *testing.T) {
	conns := conncap.New(2)
	withCap := func(s *Server) { s.Conns = conns }
	one, two := startServer(t, echoHandler, withCap), startServer(t, echoHandler, withCap)
	a, b := dialRaw(t, one.addr), dialRaw(t, two.addr)
	a.get("/a")
	b.get("/b")
	for _, ts := range []*testServer{one, two} {
		resp, body := dialRaw(t, ts.addr).get("/c")
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
			t.Fatalf("over the cap: %d %v %q", resp.StatusCode, resp.Header, body)
		}
	}
	if r, _ := a.get("/again"); r.StatusCode != http.StatusOK {
		t.Fatalf("a served connection was disturbed: %d", r.StatusCode)
	}
	if n := one.ConnStats().TurnedAway + two.ConnStats().TurnedAway; n != 2 {
		t.Fatalf("TurnedAway = %d, want 2", n)
	}
	a.Close()
	waitFor(t, "the closed connection's place", func() bool { return conns.Held() == 1 })

	// An HTTP/2 connection takes the place, and gives it back at its close.
	h2 := dialRaw(t, one.addr)
	h2.send(string(h2Preface))
	waitFor(t, "the HTTP/2 connection to count", func() bool { return one.ConnStats().HTTP2 == 1 })
	if conns.Held() != 2 {
		t.Fatalf("%d connections held with an HTTP/2 one, want 2", conns.Held())
	}
	h2.Close()
	waitFor(t, "the HTTP/2 connection's place", func() bool { return conns.Held() == 1 })
	if r, _ := dialRaw(t, one.addr).get("/d"); r.StatusCode != http.StatusOK {
		t.Fatalf("under the cap again: %d", r.StatusCode)
	}
}

// A handler that aborts before anything of its response reached the
// client (a gateway whose instance broke mid-head or mid-body) leaves the
// client a 502, not a truncated message; once bytes went out, the rest is
// cut as before.
func TestAbortBeforeAnythingSent(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Header().Set("X-Big", strings.Repeat("h", 3000))
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "part of the body")
		if r.URL.Path == "/flushed" {
			w.(http.Flusher).Flush()
		}
		panic(http.ErrAbortHandler)
	}))
	c := dialRaw(t, ts.addr)
	resp, _ := c.get("/held")
	if resp.StatusCode != http.StatusBadGateway || !resp.Close {
		t.Fatalf("status %d close %v, want 502 and close", resp.StatusCode, resp.Close)
	}
	c.expectClosed()

	c = dialRaw(t, ts.addr)
	c.send("GET /flushed HTTP/1.1\r\nHost: a\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("flushed response: %v %v", resp, err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("a response cut after it began read as complete")
	}
}

// A hijacked connection (a WebSocket, through the gateway) keeps its place
// in the cap until its handler closes it: it holds a descriptor as a
// served one does, and a cap blind to it could be walked past by
// upgrading every connection.
func TestHijackedConnHoldsItsPlace(t *testing.T) {
	conns := conncap.New(1)
	hijacked := make(chan net.Conn, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/hijack" {
			io.WriteString(w, "served")
			return
		}
		nc, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		buf.Flush()
		hijacked <- nc
	}), func(s *Server) { s.Conns = conns })
	c := dialRaw(t, ts.addr)
	c.send("GET /hijack HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	nc := <-hijacked
	if resp, err := http.ReadResponse(c.br, nil); err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	if ts.ConnStats().Total() != 0 || conns.Held() != 1 {
		t.Fatalf("hijacked: %d served, %d held; want 0 and 1", ts.ConnStats().Total(), conns.Held())
	}
	if resp, body := dialRaw(t, ts.addr).get("/"); resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("over the cap with a hijacked connection: %d %q", resp.StatusCode, body)
	}
	nc.Close()
	nc.Close() // a second close gives nothing back twice
	if conns.Held() != 0 {
		t.Fatalf("%d held after the hijacked connection closed, want 0", conns.Held())
	}
	if resp, body := dialRaw(t, ts.addr).get("/"); resp.StatusCode != http.StatusOK {
		t.Fatalf("under the cap again: %d %q", resp.StatusCode, body)
	}
}
