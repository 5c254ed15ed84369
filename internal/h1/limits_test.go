package h1

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
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

// Past MaxConns a connection gets a 503 with Retry-After at once, and the
// connections already served go on.
func TestMaxConns(t *testing.T) {
	ts := startServer(t, echoHandler, func(s *Server) { s.MaxConns = 2 })
	a, b := dialRaw(t, ts.addr), dialRaw(t, ts.addr)
	a.get("/a")
	b.get("/b")
	c := dialRaw(t, ts.addr)
	resp, body := c.get("/c")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("over the cap: %d %v %q", resp.StatusCode, resp.Header, body)
	}
	if r, _ := a.get("/again"); r.StatusCode != http.StatusOK {
		t.Fatalf("a served connection was disturbed: %d", r.StatusCode)
	}
	if n := ts.ConnStats().TurnedAway; n != 1 {
		t.Fatalf("TurnedAway = %d, want 1", n)
	}
	a.Close()
	waitFor(t, "the closed connection to be forgotten", func() bool { return ts.ConnCount() < 2 })
	if r, _ := dialRaw(t, ts.addr).get("/d"); r.StatusCode != http.StatusOK {
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
