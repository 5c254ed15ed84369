package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
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
		{name: "signed length", raw: "HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\na", err: true},
		{name: "bad status", raw: "HTTP/1.1 2x0 OK\r\n\r\n", err: true},
		{name: "not http", raw: "SSH-2.0-OpenSSH\r\n\r\n", err: true},
		{name: "folded header", raw: "HTTP/1.1 200 OK\r\nX-A: 1\r\n  continued\r\n\r\n", err: true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(c.raw))
			method := c.method
			if method == "" {
				method = "GET"
			}
			resp, err := readResponse(br, &response{}, method)
			if c.err {
				if err == nil {
					t.Fatalf("want an error, got %+v", resp)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			h := http.Header{}
			resp.head.header(h, resp.declared, false)
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

// TestWireHead: the lines a response passes on are the instance's, in its
// order and its case, less the framing, the hop-by-hop fields (those a
// Connection header names too) and a 304's Content-Type; the map made
// from them for other writers says the same.
func TestWireHead(t *testing.T) {
	cases := []struct {
		name, raw, lines string
		declared         int64
		date, stream     bool
	}{
		{name: "plain", raw: "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nDate: Sat, 28 Nov 2026 07:00:00 GMT\r\nContent-Length: 2\r\n\r\nok",
			lines: "content-type: text/plain\r\nDate: Sat, 28 Nov 2026 07:00:00 GMT\r\n", declared: 2, date: true},
		{name: "hop-by-hop", raw: "HTTP/1.1 200 OK\r\nX-A:  1 \r\nConnection: x-b, close\r\nKeep-Alive: timeout=5\r\nX-B: 2\r\nUpgrade: h2c\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nContent-Length: 0\r\n\r\n",
			lines: "X-A: 1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n", declared: 0},
		{name: "chunked overrides length", raw: "HTTP/1.1 200 OK\r\nContent-Length: 9\r\nTransfer-Encoding: chunked\r\nContent-Type: text/event-stream\r\n\r\n0\r\n\r\n",
			lines: "Content-Type: text/event-stream\r\n", declared: -1, stream: true},
		{name: "304 without its type", raw: "HTTP/1.1 304 Not Modified\r\nContent-Type: text/html\r\nEtag: \"x\"\r\n\r\n",
			lines: "Etag: \"x\"\r\n", declared: -1},
		{name: "none", raw: "HTTP/1.1 204 No Content\r\n\r\n", lines: "", declared: -1},
	}
	kept := &response{} // one for all, as a connection keeps one
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := readResponse(bufio.NewReader(strings.NewReader(c.raw)), kept, "GET")
			if err != nil {
				t.Fatal(err)
			}
			if got := string(resp.head.lines()); got != c.lines {
				t.Errorf("lines %q, want %q", got, c.lines)
			}
			if resp.declared != c.declared || resp.date != c.date || resp.stream != c.stream {
				t.Errorf("declared %d date %v stream %v, want %d %v %v", resp.declared, resp.date, resp.stream, c.declared, c.date, c.stream)
			}
			h := http.Header{}
			resp.head.header(h, resp.declared, false)
			want := http.Header{}
			for _, line := range strings.Split(strings.TrimSuffix(c.lines, "\r\n"), "\r\n") {
				if k, v, ok := strings.Cut(line, ": "); ok {
					want.Add(k, v)
				}
			}
			if c.declared >= 0 {
				want.Set("Content-Length", strconv.FormatInt(c.declared, 10))
			}
			if !reflect.DeepEqual(h, want) {
				t.Errorf("header %v, want %v", h, want)
			}
		})
	}
}

// TestWireHeadRelease: a response gives its head's buffers back once it
// is through, and those of a very large head are not kept for the next;
// the next response takes a head again.
func TestWireHeadRelease(t *testing.T) {
	big := "HTTP/1.1 204 No Content\r\nX-Big: " + strings.Repeat("a", 12<<10) + "\r\n\r\n"
	small := "HTTP/1.1 204 No Content\r\nX-Small: a\r\n\r\n"
	var resp response
	for _, c := range []struct {
		raw  string
		kept bool
	}{{big, false}, {small, true}} {
		if _, err := readResponse(bufio.NewReaderSize(strings.NewReader(c.raw), 16<<10), &resp, "GET"); err != nil {
			t.Fatal(err)
		}
		if kept := resp.head.reusable(); kept != c.kept {
			t.Errorf("head of %d bytes: buffers kept %v, want %v", len(c.raw), kept, c.kept)
		}
		resp.putHead()
		if resp.head != nil {
			t.Fatal("putHead left the response its head")
		}
	}
}

// TestKindOf checks the classification of an answer's field names against
// hopHeaders, in any case.
func TestKindOf(t *testing.T) {
	for _, k := range hopHeaders {
		for _, name := range []string{k, strings.ToLower(k), strings.ToUpper(k)} {
			if kind := kindOf([]byte(name)); kind != fieldHop && kind != fieldConnection && kind != fieldTransferEncoding {
				t.Errorf("kindOf(%q) = %d, want hop-by-hop", name, kind)
			}
		}
	}
	for name, want := range map[string]fieldKind{
		"Content-Length": fieldContentLength, "content-length": fieldContentLength, "Content-Type": fieldContentType,
		"DATE": fieldDate, "X-Upgrade": fieldOther, "Tee": fieldOther, "Content-Lengths": fieldOther, "Datf": fieldOther,
		"Set-Cookie": fieldOther, "Connectioo": fieldOther, "Keep-Alivf": fieldOther,
	} {
		if got := kindOf([]byte(name)); got != want {
			t.Errorf("kindOf(%q) = %d, want %d", name, got, want)
		}
	}
}
