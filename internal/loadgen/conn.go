package loadgen

import (
	"bufio"
	"net"
	"net/http"
	"time"
)

// httpConn is one keep-alive HTTP/1.1 connection that sends one request at
// a time and never retries: when the connection fails, the request fails,
// the connection is dropped and the next request dials a new one.
type httpConn struct {
	addr string
	nc   net.Conn
	br   *bufio.Reader
	bw   *bufio.Writer
}

func newHTTPConn(addr string) *httpConn {
	return &httpConn{addr: addr, br: bufio.NewReaderSize(nil, 8<<10), bw: bufio.NewWriterSize(nil, 8<<10)}
}

// roundTrip sends a request and reads the response's header; the caller
// reads the body, then calls done or close. head is the request line and
// headers without the blank line, cookie the Cookie header's value ("" for
// none). Connection events are noted in o.
func (c *httpConn) roundTrip(o *outcome, head []byte, cookie string, body []byte, deadline time.Time) (*http.Response, error) {
	if c.nc == nil {
		if err := c.dial(deadline); err != nil {
			return nil, wrap("dial", err)
		}
		o.dialed = true
	} else {
		o.reused = true
	}
	if err := c.nc.SetDeadline(deadline); err != nil {
		c.fail(o, err)
		return nil, wrap("set deadline", err)
	}
	if err := c.write(head, cookie, body); err != nil {
		c.fail(o, err)
		return nil, wrap("write request", err)
	}
	o.sent = int64(len(body))
	// Peek first so that a connection closed before any byte of an answer
	// (the keep-alive race) reports EOF, and a cut header unexpected EOF.
	if _, err := c.br.Peek(1); err != nil {
		c.fail(o, err)
		return nil, wrap("read response", err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.fail(o, err)
		return nil, wrap("read response", err)
	}
	return resp, nil
}

func (c *httpConn) dial(deadline time.Time) error {
	d := net.Dialer{Deadline: deadline}
	nc, err := d.Dial("tcp", c.addr)
	if err != nil {
		return err
	}
	c.nc = nc
	c.br.Reset(nc)
	c.bw.Reset(nc)
	return nil
}

func (c *httpConn) write(head []byte, cookie string, body []byte) error {
	_, _ = c.bw.Write(head) // a bufio.Writer's error is sticky: Flush reports it
	if cookie != "" {
		_, _ = c.bw.WriteString("Cookie: ")
		_, _ = c.bw.WriteString(cookie)
		_, _ = c.bw.WriteString("\r\n")
	}
	_, _ = c.bw.WriteString("\r\n")
	_, _ = c.bw.Write(body)
	return c.bw.Flush()
}

// done finishes a request whose body was read whole: the connection stays
// for the next one unless the server said Connection: close.
func (c *httpConn) done(o *outcome, resp *http.Response) {
	if resp.Close {
		o.closed = true
		c.close()
	}
}

// fail drops the connection after err, noting whether the server dropped it.
func (c *httpConn) fail(o *outcome, err error) {
	o.dropped = dropped(err)
	c.close()
}

func (c *httpConn) close() {
	if c.nc != nil {
		_ = c.nc.Close() // nothing is left to flush or to learn from it
		c.nc = nil
	}
}
