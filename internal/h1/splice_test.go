package h1

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"syscall"
	"testing"
)

// spliceSource is a socket a handler splices a body from, fed by the test.
type spliceSource struct {
	feed *net.TCPConn // the test writes the body here
	src  *net.TCPConn // the handler splices from here
	raw  syscall.RawConn
}

func newSpliceSource(t *testing.T) *spliceSource {
	a, b := tcpPair(t)
	raw, err := b.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return &spliceSource{feed: a, src: b, raw: raw}
}

// spliceHandler answers with prefix, then n bytes spliced from s's source,
// and sends SpliceBody's result on errs.
func spliceHandler(s *spliceSource, prefix []byte, n int64, errs chan<- error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.FormatInt(int64(len(prefix))+n, 10))
		w.Write(prefix)
		sent, err := w.(BodySplicer).SpliceBody(s.raw, n)
		if err == nil && sent != n {
			err = errors.New("sent " + strconv.FormatInt(sent, 10) + " of " + strconv.FormatInt(n, 10) + " with no error")
		}
		errs <- err
	}
}

// TestSpliceBody checks that a body spliced from another socket reaches the
// client whole, in several turns of the pipe, on a connection that serves
// the next request after it.
func TestSpliceBody(t *testing.T) {
	needRawSockets(t)
	CountSocketCalls()
	s := newSpliceSource(t)
	const n = 5*(64<<10)/2 + 123 // three turns of a 64 KiB pipe, the last one short
	errs := make(chan error, 1)
	ts := startServer(t, spliceHandler(s, []byte("head:"), n, errs))
	c := dialRaw(t, ts.addr)
	for i := range 3 {
		body := make([]byte, n)
		for j := range body {
			body[j] = byte(rand.IntN(256))
		}
		go s.feed.Write(body)
		before := SocketCallCounts().Splices
		c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, got := c.response(http.MethodGet)
		if err := <-errs; err != nil {
			t.Fatalf("request %d: SpliceBody: %v", i, err)
		}
		if resp.StatusCode != 200 || got != "head:"+string(body) {
			t.Fatalf("request %d: status %d, body of %d bytes, want %d that match", i, resp.StatusCode, len(got), n+5)
		}
		if calls := SocketCallCounts().Splices - before; calls < 6 {
			t.Fatalf("request %d: %d splice calls for three turns of the pipe, want at least 6", i, calls)
		}
	}
}

// TestSpliceBodyCases checks what SpliceBody refuses, leaving the source
// unread, and how a failure of each side is told apart.
func TestSpliceBodyCases(t *testing.T) {
	needRawSockets(t)
	t.Run("refused", func(t *testing.T) {
		s := newSpliceSource(t)
		cases := map[string]http.HandlerFunc{
			"no length": func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(200)
			},
			"longer than the length": func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "10")
				w.Write([]byte("ab")) // and the rest after the refusal
			},
			"no body allowed": func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusNoContent)
			},
		}
		for name, setup := range cases {
			errs := make(chan error, 1)
			ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				setup(w, r)
				_, err := w.(BodySplicer).SpliceBody(s.raw, 9)
				errs <- err
				if w.Header().Get("Content-Length") == "10" {
					w.Write([]byte("cdefghij"))
				}
			}))
			c := dialRaw(t, ts.addr)
			c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			c.response(http.MethodGet)
			if err := <-errs; err != ErrNoSplice {
				t.Errorf("%s: SpliceBody returned %v, want ErrNoSplice", name, err)
			}
		}
		// HEAD has no body to splice either.
		errs := make(chan error, 1)
		ts := startServer(t, spliceHandler(s, nil, 9, errs))
		c := dialRaw(t, ts.addr)
		c.send("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n")
		c.response(http.MethodHead)
		if err := <-errs; err != ErrNoSplice {
			t.Errorf("HEAD: SpliceBody returned %v, want ErrNoSplice", err)
		}
		// Nothing of the source was taken.
		s.feed.Write([]byte("untouched"))
		got := make([]byte, 9)
		if _, err := io.ReadFull(s.src, got); err != nil || string(got) != "untouched" {
			t.Errorf("source after refusals: %q, %v", got, err)
		}
	})

	t.Run("source ends early", func(t *testing.T) {
		s := newSpliceSource(t)
		errs := make(chan error, 1)
		ts := startServer(t, spliceHandler(s, nil, 200<<10, errs))
		go func() {
			s.feed.Write(bytes.Repeat([]byte("x"), 100<<10))
			s.feed.Close()
		}()
		c := dialRaw(t, ts.addr)
		c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if b, err := io.ReadAll(resp.Body); err == nil {
			t.Errorf("the client got %d bytes of %d as a whole body", len(b), 200<<10)
		}
		var se *SourceError
		if err := <-errs; !errors.As(err, &se) || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("SpliceBody returned %v, want a SourceError of io.ErrUnexpectedEOF", err)
		}
	})

	t.Run("client leaves", func(t *testing.T) {
		s := newSpliceSource(t)
		errs := make(chan error, 1)
		ts := startServer(t, spliceHandler(s, nil, 64<<20, errs))
		go s.feed.Write(make([]byte, 64<<20)) // ends with an error when the test closes the source
		c := dialRaw(t, ts.addr)
		c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.CopyN(io.Discard, resp.Body, 256<<10)
		c.Close()
		var se *SourceError
		if err := <-errs; err == nil || errors.As(err, &se) {
			t.Errorf("SpliceBody returned %v, want the client's error", err)
		}
	})
}
