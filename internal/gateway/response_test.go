package gateway

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"unsafe"
)

func TestReadResponse(t *testing.T) {
	cases := []struct {
		name, raw, method string
		status            int
		body              string
		close             bool
		header            string // one header to check, "Key: value"
		trailer           string
		err               bool
	}{
		{name: "length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Release: v1\r\n\r\nhelloNEXT", status: 200, body: "hello", header: "X-Release: v1"},
		{name: "chunked with trailer", raw: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nX-Sum: 42\r\n\r\n", status: 200, body: "abcde", trailer: "X-Sum: 42"},
		{name: "until close", raw: "HTTP/1.1 200 OK\r\n\r\nall of it", status: 200, body: "all of it", close: true},
		{name: "1.0 closes", raw: "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", status: 200, body: "x", close: true},
		{name: "1.0 keep-alive", raw: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", status: 200, body: "x"},
		{name: "connection close", raw: "HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nContent-Length: 0\r\n\r\n", status: 200, close: true},
		{name: "interim 1xx skipped", raw: "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", status: 201, body: "ok"},
		{name: "HEAD has no body", raw: "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", method: "HEAD", status: 200, header: "Content-Length: 10", close: true}, // not reused: some servers send the body anyway
		{name: "204 has no body", raw: "HTTP/1.1 204 No Content\r\n\r\n", status: 204},
		{name: "lower-case names", raw: "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\nx-custom-thing: y\r\ncontent-length: 0\r\n\r\n", status: 200, header: "X-Custom-Thing: y"},
		{name: "two lengths", raw: "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", err: true},
		{name: "bad status", raw: "HTTP/1.1 2x0 OK\r\n\r\n", err: true},
		{name: "not http", raw: "SSH-2.0-OpenSSH\r\n\r\n", err: true},
		{name: "folded header", raw: "HTTP/1.1 200 OK\r\nX-A: 1\r\n  continued\r\n\r\n", err: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(c.raw))
			h := http.Header{}
			method := c.method
			if method == "" {
				method = "GET"
			}
			resp, err := readResponse(br, h, method, nil)
			if c.err {
				if err == nil {
					t.Fatalf("want an error, got %+v", resp)
				}
				if len(h) != 0 {
					t.Errorf("a refused response left headers behind: %v", h)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.status != c.status || string(body) != c.body || resp.close != c.close {
				t.Errorf("got status %d body %q close %v", resp.status, body, resp.close)
			}
			if c.header != "" {
				k, v, _ := strings.Cut(c.header, ": ")
				if h.Get(k) != v {
					t.Errorf("header %s = %q, want %q (%v)", k, h.Get(k), v, h)
				}
			}
			if c.trailer != "" {
				k, v, _ := strings.Cut(c.trailer, ": ")
				if resp.trailer.Get(k) != v {
					t.Errorf("trailer %s = %q", k, resp.trailer.Get(k))
				}
			}
			if h.Get("Link") != "" {
				t.Error("headers of a skipped 1xx leaked into the response")
			}
		})
	}
}

// TestTrimsMatchBytes checks the header line trims against the bytes
// package's, which they replace on the hot path.
func TestTrimsMatchBytes(t *testing.T) {
	for _, s := range []string{"", "\r", "\n", "\r\n", "a\r\n", "a\r\r\n", "a\n\r", " a \t\r\n", "\t", " \t a b \t ", "a", "\ra\r"} {
		if got, want := trimEOL([]byte(s)), bytes.TrimRight([]byte(s), "\r\n"); !bytes.Equal(got, want) {
			t.Errorf("trimEOL(%q) = %q, want %q", s, got, want)
		}
		if got, want := trimBlanks([]byte(s)), bytes.Trim([]byte(s), " \t"); !bytes.Equal(got, want) {
			t.Errorf("trimBlanks(%q) = %q, want %q", s, got, want)
		}
	}
}

// TestIsHop checks the switch against the list it stands for.
func TestIsHop(t *testing.T) {
	for _, k := range hopHeaders {
		if !isHop(k) {
			t.Errorf("isHop(%q) = false", k)
		}
	}
	for _, k := range []string{"", "Content-Length", "Content-Type", "Host", "Cookie", "connection", "X-Upgrade", "Tee"} {
		if isHop(k) {
			t.Errorf("isHop(%q) = true", k)
		}
	}
}

// TestValueMemo: heads read one after another with one connection's memo
// give exactly the headers they give without it — no value of an earlier
// head is left in a later one — and a value repeated in the same place is
// the earlier string, not a new copy.
func TestValueMemo(t *testing.T) {
	heads := []string{
		"HTTP/1.1 200 OK\r\nDate: Sat, 28 Nov 2026 05:00:00 GMT\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nDate: Sat, 28 Nov 2026 05:00:01 GMT\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nDate: Sat, 28 Nov 2026 05:00:01 GMT\r\nContent-Type: text/html\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nServer: x\r\nDate: Sat, 28 Nov 2026 05:00:01 GMT\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nSet-Cookie: a=1\r\nX-A: a=1\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: \r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 204 No Content\r\n\r\n",
	}
	read := func(raw string, memo *valueMemo) http.Header {
		h := http.Header{}
		if _, err := readResponse(bufio.NewReader(strings.NewReader(raw)), h, "GET", memo); err != nil {
			t.Fatalf("%q: %v", raw, err)
		}
		return h
	}
	memo := &valueMemo{}
	order := append(append([]int{}, 0, 1, 2, 3, 4, 5, 6, 7), 7, 6, 5, 4, 3, 2, 1, 0, 4, 4, 1, 1)
	for _, i := range order {
		got, want := read(heads[i], memo), read(heads[i], nil)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("head %d with the memo: %v, want %v", i, got, want)
		}
	}
	a, b := read(heads[1], memo), read(heads[1], memo)
	if unsafe.StringData(a["Content-Type"][0]) != unsafe.StringData(b["Content-Type"][0]) {
		t.Error("a value repeated in the same place was copied again")
	}
}
