package loadgen

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"time"
)

// client is one simulated user: it does one unit of work (a request, a
// stream, an echo) per call to next, and keeps its connection in between.
type client interface {
	next() outcome
	close()
}

// httpClient is a client of a request-response kind: fast, slow, upload
// and stream differ only in the request they send and how they check the
// body.
type httpClient struct {
	conn    *httpConn
	jar     *jar
	head    []byte // prebuilt: request line and headers, without the blank line
	body    []byte
	timeout time.Duration
	check   bodyChecker
	// want, when set, is the only status that is not a failure (201 for a
	// write); otherwise only 5xx are.
	want int
}

// bodyChecker reads a response body to its end and checks it; it returns
// how many bytes it read, and a *MismatchError for a wrong body.
type bodyChecker interface {
	read(resp *http.Response) (int64, error)
}

func (c *httpClient) next() outcome {
	o := outcome{start: time.Now()}
	resp, err := c.conn.roundTrip(&o, c.head, c.jar.value(), c.body, o.start.Add(c.timeout))
	if err != nil {
		o.err = err
		return o
	}
	o.status = resp.StatusCode
	o.release = resp.Header.Get("X-Release")
	o.instance = resp.Header.Get("X-Instance")
	c.jar.update(resp)
	o.read, err = c.check.read(resp)
	switch {
	case err != nil:
		// A connection cut inside a body is dropped; after a mismatch the
		// body's end is uncertain: start afresh either way.
		o.err = wrap("read body", err)
		c.conn.fail(&o, err)
	case resp.StatusCode >= 500 && modeRefusal(resp):
		o.refused = resp.Header.Get(refusedHeader)
		c.conn.done(&o, resp)
	case resp.StatusCode >= 500:
		o.err = &StatusError{resp.StatusCode}
		c.conn.done(&o, resp)
	case c.want != 0 && resp.StatusCode != c.want:
		o.err = &StatusError{resp.StatusCode}
		c.conn.done(&o, resp)
	default:
		c.conn.done(&o, resp)
	}
	return o
}

func (c *httpClient) close() { c.conn.close() }

// requestHead renders a request's line and headers, without the blank line.
func requestHead(method, path, host string, header http.Header, contentLength int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: handoff-loadgen\r\n", method, path, host)
	if contentLength >= 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", contentLength)
		if header.Get("Content-Type") == "" {
			b.WriteString("Content-Type: application/octet-stream\r\n")
		}
	}
	_ = header.Write(&b) // a bytes.Buffer does not fail
	return b.Bytes()
}

// discardBody reads and counts a body it does not check; http.ReadResponse
// already fails a body shorter than its Content-Length.
type discardBody struct{ buf []byte }

func (d *discardBody) read(resp *http.Response) (int64, error) {
	var n int64
	for {
		k, err := resp.Body.Read(d.buf)
		n += int64(k)
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// maxExpectBody bounds how much of a body expectBody keeps to compare.
const maxExpectBody = 1 << 20

// expectBody checks that a 200 body is exactly want (an upload's echoed
// length and hash).
type expectBody struct {
	want []byte
	got  bytes.Buffer
}

func (e *expectBody) read(resp *http.Response) (int64, error) {
	e.got.Reset()
	n, err := e.got.ReadFrom(io.LimitReader(resp.Body, maxExpectBody))
	if err != nil {
		return n, err
	}
	rest, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return n + rest, err
	}
	if resp.StatusCode == http.StatusOK && (rest > 0 || !bytes.Equal(e.got.Bytes(), e.want)) {
		return n + rest, &MismatchError{fmt.Sprintf("wrong upload echo %.80q, want %q", e.got.Bytes(), e.want)}
	}
	return n + rest, nil
}

// eventBody counts the events of a 200 text/event-stream and checks that
// all n arrived before the stream ended.
type eventBody struct {
	n  int
	br *bufio.Reader
}

func (e *eventBody) read(resp *http.Response) (int64, error) {
	e.br.Reset(resp.Body)
	var read int64
	events, data := 0, false
	for {
		line, err := e.br.ReadSlice('\n')
		read += int64(len(line))
		switch {
		case err == io.EOF:
			if resp.StatusCode == http.StatusOK && events != e.n {
				return read, &MismatchError{fmt.Sprintf("stream cut short: %d of %d events", events, e.n)}
			}
			return read, nil
		case err == bufio.ErrBufferFull:
			continue // a long line; only its start matters
		case err != nil:
			return read, err
		case len(bytes.TrimSpace(line)) == 0:
			if data {
				events++
			}
			data = false
		case bytes.HasPrefix(line, []byte("data:")):
			data = true
		}
	}
}

// refusedHeader is how the handoff gateway marks an answer it gave itself.
const refusedHeader = "Handoff-Refused"

// modeRefusal reports whether the gateway refused the request on purpose,
// because an operator switched a mode on: read-only refuses writes,
// maintenance everything, a pause what it held past its max. Those are the
// modes working, not failures; they are counted in Result.Refused. Every
// other 5xx, the gateway's own "bad_gateway" included, is a failure.
func modeRefusal(resp *http.Response) bool {
	switch resp.Header.Get(refusedHeader) {
	case "read_only", "maintenance", "paused":
		return true
	}
	return false
}
