package h1

import (
	"bufio"
	"bytes"
	"io"
	"net/http/httputil"
	"strconv"
	"testing"
)

// chunkedBodies seed FuzzChunkedBody: well-formed bodies, the leniencies
// the reader allows, and the malformed ones e2e/testdata/malformed sends
// through the whole gateway. Each may be followed by the next request's
// bytes, which the body must leave unread.
var chunkedBodies = []string{
	"0\r\n\r\n",
	"5\r\nhello\r\n0\r\n\r\n",
	"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1\r\n\r\n",
	"5\nhello\r\n0\n\n",
	"5;name=value\r\nhello\r\n0\r\n\r\n",
	"5;name=\"a;b\\\"c\"\r\nhello\r\n0\r\n\r\n",
	"5 \r\nhello\r\n0\r\n\r\n",
	"A\r\n0123456789\r\n0\r\nX-Sum: 1\r\nX-Other: a, b\r\n\r\n",
	"0\r\nbad trailer line\r\n\r\n",
	"0\r\nX-T: a\r\n b\r\n\r\n",
	"g\r\nhello\r\n0\r\n\r\n",
	"+5\r\nhello\r\n0\r\n\r\n",
	" 5\r\nhello\r\n0\r\n\r\n",
	"0x5\r\nhello\r\n0\r\n\r\n",
	"3\r\nhello\r\n0\r\n\r\n",
	"9\r\nhello\r\n0\r\n\r\n",
	"a\r\nhello",
	"5\r\nhello\r\n",
	"5\r\nhello0\r\n\r\n",
	"5\r\nhello\r0\r\n\r\n",
	"5\r\r\nhello\r\n0\r\n\r\n",
	"5;a\rb\r\nhello\r\n0\r\n\r\n",
	"ffffffffffffffffffff\r\nhello\r\n0\r\n\r\n",
	"1000000000000000\r\nhello",
	"0\r\n",
	"0\r\n\r",
	"",
}

// FuzzChunkedBody reads a chunked request body over the fuzz bytes with a
// small read buffer. It must never panic, never return more bytes than
// came in, and end with a clean io.EOF only when the bytes it consumed are
// a complete chunked body (checked against chunkedReference, written here
// from RFC 9112 §7.1) whose data is what it returned, leaving the bytes
// after it unread. Any well-formed encoding must read back cleanly.
func FuzzChunkedBody(f *testing.F) {
	for _, b := range chunkedBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, rest, err := readChunkedBody(t, data)
		if len(got) > len(data) {
			t.Fatalf("returned %d bytes from %d bytes of input %q", len(got), len(data), data)
		}
		if err == nil {
			want, end, ok := chunkedReference(data)
			if !ok {
				t.Fatalf("clean EOF, but the input is no complete chunked body: %q", data)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("clean EOF with data %q, the body's data is %q; input %q", got, want, data)
			}
			if !bytes.Equal(rest, data[end:]) {
				t.Fatalf("after the body %q is left unread, want %q; input %q", rest, data[end:], data)
			}
		}

		// The same bytes as data of a well-formed body, in one chunk and
		// in chunks of 1..7 bytes, must read back exactly.
		for _, size := range []int{len(data), 1 + len(data)%7} {
			enc := encodeChunked(data, size)
			got, rest, err := readChunkedBody(t, append(enc, "GET"...))
			if err != nil || !bytes.Equal(got, data) || string(rest) != "GET" {
				t.Fatalf("well-formed %q: read %q, rest %q, error %v", enc, got, rest, err)
			}
		}
	})
}

// readChunkedBody reads a dechunking body over data to its end. err is nil
// for a clean io.EOF; rest is what the reader left of the input.
func readChunkedBody(t *testing.T, data []byte) (got, rest []byte, err error) {
	t.Helper()
	br := bufio.NewReaderSize(bytes.NewReader(data), bufferSize)
	c := &conn{srv: &Server{}, br: br}
	b := newBody(c, framing{contentLength: -1})
	sizes := []int{1, 3, 64, 7, 4096}
	zero := 0
	for i := 0; ; i++ {
		p := make([]byte, sizes[i%len(sizes)])
		n, rerr := b.Read(p)
		if n < 0 || n > len(p) {
			t.Fatalf("Read returned n=%d for a %d-byte buffer", n, len(p))
		}
		got = append(got, p[:n]...)
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			err = rerr
			break
		}
		if n == 0 {
			if zero++; zero > 100 {
				t.Fatalf("100 reads in a row returned nothing and no error; input %q", data)
			}
		} else {
			zero = 0
		}
		if i > 4*len(data)+1000 {
			t.Fatalf("no end after %d reads of %d bytes of input %q", i, len(data), data)
		}
	}
	if err == nil {
		// Once ended, the body stays ended.
		if n, again := b.Read(make([]byte, 8)); n != 0 || again != io.EOF {
			t.Fatalf("a read after EOF returned %d, %v", n, again)
		}
	} else if n, again := b.Read(make([]byte, 8)); n != 0 || again == nil {
		t.Fatalf("a read after the error %v returned %d, %v", err, n, again)
	}
	rest, _ = io.ReadAll(br)
	return got, rest, err
}

// chunkedReference decodes a chunked body as RFC 9112 §7.1 frames it,
// accepting the leniencies a recipient may allow (a bare LF ending a line,
// whitespace around the size and before an extension) and reading trailer
// lines up to the empty one without judging them. It returns the data and
// where the body ends; ok is false when data holds no complete body.
func chunkedReference(data []byte) (out []byte, end int, ok bool) {
	pos := 0
	line := func() ([]byte, bool) {
		i := bytes.IndexByte(data[pos:], '\n')
		if i < 0 {
			return nil, false
		}
		l := data[pos : pos+i]
		pos += i + 1
		return bytes.TrimSuffix(l, []byte("\r")), true
	}
	for {
		l, ok := line()
		if !ok {
			return nil, 0, false
		}
		if i := bytes.IndexByte(l, ';'); i >= 0 {
			l = l[:i]
		}
		size, err := strconv.ParseUint(string(bytes.Trim(l, " \t")), 16, 64)
		if err != nil {
			return nil, 0, false
		}
		if size == 0 {
			break
		}
		if size > uint64(len(data)-pos) {
			return nil, 0, false
		}
		out = append(out, data[pos:pos+int(size)]...)
		pos += int(size)
		switch {
		case bytes.HasPrefix(data[pos:], []byte("\r\n")):
			pos += 2
		case bytes.HasPrefix(data[pos:], []byte("\n")):
			pos++
		default:
			return nil, 0, false
		}
	}
	for {
		l, ok := line()
		if !ok {
			return nil, 0, false
		}
		if len(l) == 0 {
			return out, pos, true
		}
	}
}

// encodeChunked writes data as a chunked body in chunks of size bytes.
func encodeChunked(data []byte, size int) []byte {
	var buf bytes.Buffer
	w := httputil.NewChunkedWriter(&buf)
	for len(data) > 0 && size > 0 {
		n := min(size, len(data))
		w.Write(data[:n])
		data = data[n:]
	}
	w.Close()
	buf.WriteString("\r\n")
	return buf.Bytes()
}
