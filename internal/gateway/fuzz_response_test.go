package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/handoff-dev/handoff/internal/h1"
)

// upstreamResponses seed FuzzReadResponse: responses as instances write
// them, and the malformed ones an instance (or whatever answers on its
// port) might send.
var upstreamResponses = []string{
	"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Sum: 1\r\n\r\n",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
	"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc",
	"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\n\r\nuntil the close",
	"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-A: b\rc\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-A: b\x00c\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX-A: b\r\n c\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\nX-A: b\nContent-Length: 1\n\nx",
	"HTTP/1.1 200\r\n\r\n",
	"HTTP/1.1 99 Low\r\n\r\n",
	"HTTP/1.1 2000 OK\r\n\r\n",
	"HTTP/2.0 200 OK\r\n\r\n",
	"ICY 200 OK\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nbad trailer\r\n\r\n",
	"HTTP/1.1 200 OK\r\n: empty name\r\n\r\n",
	"",
}

// FuzzReadResponse reads an instance's response with readResponse, for a
// GET and for a HEAD. It must never panic; the lines it passes on must be
// well-formed header lines, none of them framing or hop-by-hop, and no
// header or trailer value it keeps may hold CR, LF or NUL (the client
// would get them); and reading the body must end, with no more bytes than
// came in.
func FuzzReadResponse(f *testing.F) {
	for _, r := range upstreamResponses {
		f.Add([]byte(r), false)
	}
	f.Add([]byte(upstreamResponses[0]), true)
	f.Fuzz(func(t *testing.T, data []byte, head bool) {
		method := http.MethodGet
		if head {
			method = http.MethodHead
		}
		br := bufio.NewReaderSize(bytes.NewReader(data), 4096)
		resp, err := readResponse(br, &response{}, method)
		if err != nil {
			return
		}
		checkLines(t, resp.head.lines(), data)
		h := http.Header{}
		resp.head.header(h, resp.declared, false)
		checkValues(t, "header", h, data)
		if resp.body == nil {
			t.Fatalf("no body reader for %q", data)
		}
		n, _ := readAllBounded(t, resp.body, data)
		if n > int64(len(data)) {
			t.Fatalf("the body gave %d bytes from %d bytes of input %q", n, len(data), data)
		}
		checkValues(t, "trailer", resp.trailer, data)
	})
}

// checkLines fails unless lines are header lines ("Name: value\r\n", a
// token for a name, no control byte but HTAB in the value), none of them
// framing the body or hop-by-hop: the client gets them as they are.
func checkLines(t *testing.T, lines []byte, data []byte) {
	t.Helper()
	for len(lines) > 0 {
		end := bytes.Index(lines, []byte("\r\n"))
		if end < 0 {
			t.Fatalf("lines %q do not end with CRLF; response %q", lines, data)
		}
		name, value, ok := bytes.Cut(lines[:end], []byte(": "))
		if !ok || !h1.ValidFieldName(name) || !h1.ValidFieldValue(value) {
			t.Fatalf("line %q is not a header line; response %q", lines[:end], data)
		}
		if k := kindOf(name); k == fieldContentLength || k == fieldTransferEncoding || k == fieldConnection || k == fieldHop {
			t.Fatalf("line %q frames the body or is hop-by-hop; response %q", lines[:end], data)
		}
		lines = lines[end+2:]
	}
}

// checkValues fails when a value of h holds CR, LF or NUL.
func checkValues(t *testing.T, what string, h http.Header, data []byte) {
	t.Helper()
	for k, vv := range h {
		for _, v := range vv {
			if strings.ContainsAny(v, "\r\n\x00") {
				t.Fatalf("%s %s has the value %q (CR, LF or NUL); response %q", what, k, v, data)
			}
		}
	}
}

// readAllBounded reads r to its end, failing when it keeps returning
// nothing without an error or reads on past the input.
func readAllBounded(t *testing.T, r io.Reader, data []byte) (int64, error) {
	t.Helper()
	var n int64
	buf := make([]byte, 512)
	zero := 0
	for i := 0; ; i++ {
		m, err := r.Read(buf)
		n += int64(m)
		if err != nil {
			return n, err
		}
		if m == 0 {
			if zero++; zero > 100 {
				t.Fatalf("100 body reads in a row returned nothing and no error; response %q", data)
			}
		} else {
			zero = 0
		}
		if i > 2*len(data)+1000 {
			t.Fatalf("the body did not end after %d reads of %d bytes of input %q", i, len(data), data)
		}
	}
}
