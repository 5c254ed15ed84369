package h1

import (
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// Tests on raw TCP connections, byte for byte.

func TestPipelining(t *testing.T) {
	ts := startServer(t, echoHandler)
	c := dialRaw(t, ts.addr)
	c.send("GET /1 HTTP/1.1\r\nHost: t\r\n\r\n" +
		"POST /2 HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n\r\nbody" +
		"POST /3 HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
		"GET /4 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
	for _, want := range []string{"GET /1 ", "POST /2 body", "POST /3 abc", "GET /4 "} {
		if _, body := c.response("GET"); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
	c.expectClosed()
}

func TestHTTP10(t *testing.T) {
	big := strings.Repeat("x", 3*bufferBeforeCommit)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			io.WriteString(w, big)
			return
		}
		io.WriteString(w, "small")
	}))
	t.Run("close", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		c.send("GET /small HTTP/1.0\r\n\r\n")
		resp, body := c.response("GET")
		if resp.Proto != "HTTP/1.0" || body != "small" || resp.Header.Get("Connection") != "" {
			t.Fatalf("%s %q Connection %q", resp.Proto, body, resp.Header.Get("Connection"))
		}
		c.expectClosed()
	})
	t.Run("keep-alive", func(t *testing.T) {
		c := dialRaw(t, ts.addr)
		for range 2 {
			c.send("GET /small HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
			resp, body := c.response("GET")
			if body != "small" || resp.Header.Get("Connection") != "keep-alive" || resp.ContentLength != 5 {
				t.Fatalf("%q Connection %q length %d", body, resp.Header.Get("Connection"), resp.ContentLength)
			}
		}
	})
	t.Run("close-delimited", func(t *testing.T) {
		// No length and too long to buffer: HTTP/1.0 has no chunks, so the
		// body ends with the connection, even if the client asked to keep it.
		c := dialRaw(t, ts.addr)
		c.send("GET /big HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		resp, body := c.response("GET")
		if body != big || resp.ContentLength != -1 || len(resp.TransferEncoding) > 0 {
			t.Fatalf("%d bytes, length %d, %v", len(body), resp.ContentLength, resp.TransferEncoding)
		}
	})
}

// TestRefusals sends malformed and smuggling requests, each followed by a
// request that must never be answered: the connection closes after the
// refusal.
func TestRefusals(t *testing.T) {
	ts := startServer(t, echoHandler)
	const smuggled = "GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n"
	cases := []struct {
		name, req string
		status    int
	}{
		{"length and chunked", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"chunked and length", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n", 400},
		{"differing lengths", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", 400},
		{"non-numeric length", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\nx", 400},
		{"negative length", "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n", 400},
		{"gzip", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
		{"chunked not last", "POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 501},
		{"chunked in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: t\r\nX-A: b\r\n c\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding : chunked\r\n\r\n", 400},
		{"bare CR", "GET / HTTP/1.1\r\nHost: t\r\nX-A: b\rX-B: c\r\n\r\n", 400},
		{"bad request line", "GET /\r\nHost: t\r\n\r\n", 400},
		{"HTTP/2 line", "GET / HTTP/2.0\r\nHost: t\r\n\r\n", 505},
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"expectation", "GET / HTTP/1.1\r\nHost: t\r\nExpect: x\r\n\r\n", 417},
		{"empty lines", strings.Repeat("\r\n", 100<<10), 400},
		{"not HTTP", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\r\n\r\n", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, ts.addr)
			c.send(tc.req + smuggled)
			resp, _ := c.response("GET")
			if resp.StatusCode != tc.status || !resp.Close {
				t.Fatalf("status %d close %v, want %d and close", resp.StatusCode, resp.Close, tc.status)
			}
			c.expectClosed()
		})
	}
}

func TestHeaderSize(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		for _, v := range r.Header["X-Big"] {
			n += len(v)
		}
		io.WriteString(w, strconv.Itoa(n))
	}), func(s *Server) { s.MaxHeaderBytes = 64 << 10 })
	// Over the read buffer but within the limits: the slow path. A head of
	// many lines fits MaxHeaderBytes; one line may be maxFieldLine long.
	longest := maxFieldLine - len("X-Big: ")
	c := dialRaw(t, ts.addr)
	for _, tc := range []struct{ n, perLine int }{{10 << 10, 4000}, {60 << 10, 4000}, {100, 100}, {longest, longest}} {
		var hdr strings.Builder
		for left := tc.n; left > 0; left -= tc.perLine {
			hdr.WriteString("X-Big: " + strings.Repeat("c", min(left, tc.perLine)) + "\r\n")
		}
		c.send("GET / HTTP/1.1\r\nHost: t\r\n" + hdr.String() + "\r\n")
		if resp, body := c.response("GET"); resp.StatusCode != 200 || body != strconv.Itoa(tc.n) {
			t.Fatalf("%d bytes of X-Big: %d %q", tc.n, resp.StatusCode, body)
		}
	}
	// Over a limit: the whole head's, in one header or in many, or one
	// line's.
	for _, hdr := range []string{
		"Cookie: " + strings.Repeat("c", 70<<10) + "\r\n",
		strings.Repeat("X-Many: "+strings.Repeat("m", 100)+"\r\n", 700),
		"Cookie: " + strings.Repeat("c", maxFieldLine-len("Cookie: ")+1) + "\r\n",
	} {
		c := dialRaw(t, ts.addr)
		c.send("GET / HTTP/1.1\r\nHost: t\r\n" + hdr + "\r\n")
		resp, _ := c.response("GET")
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !resp.Close {
			t.Fatalf("status %d close %v, want 431 and close", resp.StatusCode, resp.Close)
		}
		c.expectClosed()
	}
}

// TestUnreadBody checks that a body the handler leaves is read away when it
// is short, keeping the connection, and that a long one closes it.
func TestUnreadBody(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ignored")
	}))
	for _, tc := range []struct {
		name    string
		body    string
		chunked bool
		reuse   bool
	}{
		{"short", strings.Repeat("b", 100<<10), false, true},
		{"short chunked", strings.Repeat("b", 100<<10), true, true},
		{"long", strings.Repeat("b", 1<<20), false, false},
		{"long chunked", strings.Repeat("b", 1<<20), true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, ts.addr)
			framing := "Content-Length: " + strconv.Itoa(len(tc.body)) + "\r\n\r\n" + tc.body
			if tc.chunked {
				framing = "Transfer-Encoding: chunked\r\n\r\n" + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(tc.body), tc.body)
			}
			go c.send("POST / HTTP/1.1\r\nHost: t\r\n" + framing)
			resp, _ := c.response("POST")
			if resp.Close == tc.reuse {
				t.Fatalf("Connection: close is %v, want %v", resp.Close, !tc.reuse)
			}
			if !tc.reuse {
				return
			}
			if resp, body := c.get("/next"); resp.StatusCode != 200 || body != "ignored" {
				t.Fatalf("next request: %d %q", resp.StatusCode, body)
			}
		})
	}
}

func TestFraming(t *testing.T) {
	long := strings.Repeat("l", 2*bufferBeforeCommit)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/small":
			io.WriteString(w, "small")
		case "/long":
			io.WriteString(w, long)
		case "/204":
			w.Header().Set("Content-Length", "5")
			w.WriteHeader(204)
			if _, err := io.WriteString(w, "x"); err != http.ErrBodyNotAllowed {
				t.Errorf("Write after 204: %v, want ErrBodyNotAllowed", err)
			}
		case "/304":
			w.Header().Set("Content-Type", "text/plain")
			w.Header().Set("Etag", `"e"`)
			w.WriteHeader(304)
		case "/te":
			w.Header().Set("Transfer-Encoding", "identity")
			io.WriteString(w, "mine")
		case "/split":
			w.Header().Set("X-Bad", "a\r\nInjected: yes")
			io.WriteString(w, "ok")
		case "/date":
			w.Header().Set("Date", "yesterday")
		}
	}))
	c := dialRaw(t, ts.addr)
	check := func(path string, want func(*http.Response, string) bool) {
		t.Helper()
		resp, body := c.get(path)
		if !want(resp, body) {
			t.Fatalf("%s: %d %v %v %q", path, resp.StatusCode, resp.Header, resp.TransferEncoding, body)
		}
	}
	check("/small", func(r *http.Response, b string) bool { return r.ContentLength == 5 && b == "small" })
	check("/long", func(r *http.Response, b string) bool {
		return r.ContentLength == -1 && len(r.TransferEncoding) == 1 && b == long
	})
	check("/204", func(r *http.Response, b string) bool {
		return r.StatusCode == 204 && r.Header.Get("Content-Length") == "" && len(r.TransferEncoding) == 0
	})
	check("/304", func(r *http.Response, b string) bool {
		return r.StatusCode == 304 && r.Header.Get("Content-Type") == "" && r.Header.Get("Etag") == `"e"`
	})
	check("/te", func(r *http.Response, b string) bool { return r.ContentLength == 4 && b == "mine" })
	check("/split", func(r *http.Response, b string) bool {
		return r.Header.Get("Injected") == "" && r.Header.Get("X-Bad") == "a Injected: yes"
	})
	check("/date", func(r *http.Response, b string) bool { return r.Header.Get("Date") == "yesterday" })
}

// TestContentLengthMismatch: a handler that writes less than it declared
// leaves the client with a truncated body, and the connection closes.
func TestContentLengthMismatch(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "short")
		if r.URL.Path == "/over" {
			if _, err := io.WriteString(w, "toolongnow"); err != http.ErrContentLength {
				t.Errorf("write past the length: %v, want ErrContentLength", err)
			}
		}
	}))
	for _, path := range []string{"/under", "/over"} {
		resp, err := ts.client(t).Get(ts.url(path))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != io.ErrUnexpectedEOF || string(b) != "short" {
			t.Fatalf("%s: read %q, %v; want the 5 bytes and io.ErrUnexpectedEOF", path, b, err)
		}
	}
}
