package loadgen

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/http"
	"time"

	"github.com/handoff-dev/handoff/internal/websocket"
)

// wsClient keeps one WebSocket and makes one echo round trip per next. A
// close frame from the server is a graceful reconnect (the next round trip
// dials again); a connection that dies without one is a forced reconnect
// and fails the round trip.
type wsClient struct {
	addr, host, path  string
	header            http.Header
	jar               *jar
	timeout           time.Duration
	conn              *websocket.Conn
	release, instance string // of the handshake's response
	msg               []byte
	seq               uint64
}

func (c *wsClient) next() outcome {
	o := outcome{start: time.Now()}
	if c.conn == nil {
		if err := c.dial(&o); err != nil {
			o.err = err
			return o
		}
		if o.refused != "" {
			return o
		}
	} else {
		o.reused = true
	}
	o.status, o.release, o.instance = http.StatusSwitchingProtocols, c.release, c.instance
	if err := c.conn.SetDeadline(o.start.Add(c.timeout)); err != nil {
		return c.fail(o, "set deadline", err)
	}
	c.seq++
	binary.BigEndian.PutUint64(c.msg, c.seq)
	if err := c.conn.WriteMessage(websocket.OpBinary, c.msg); err != nil {
		return c.fail(o, "write message", err)
	}
	op, echo, err := c.conn.ReadMessage()
	var ce *websocket.CloseError
	switch {
	case errors.As(err, &ce):
		// The server said goodbye first; the message it did not echo was
		// never acknowledged, so it is not a lost request but no request.
		c.close()
		o.closed, o.skip = true, true
	case err != nil:
		return c.fail(o, "read echo", err)
	case op != websocket.OpBinary || !bytes.Equal(echo, c.msg):
		o.err = &MismatchError{"wrong websocket echo"}
	}
	o.sent, o.read = int64(len(c.msg)), int64(len(echo))
	return o
}

// dial opens the WebSocket, sending the jar's cookies.
func (c *wsClient) dial(o *outcome) error {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	header := c.header
	if cookie := c.jar.value(); cookie != "" {
		header = header.Clone()
		if header == nil {
			header = http.Header{}
		}
		header.Set("Cookie", cookie)
	}
	conn, resp, err := websocket.Dial(ctx, c.addr, c.host, c.path, header)
	if resp != nil {
		c.jar.update(resp)
		o.status, o.release, o.instance = resp.StatusCode, resp.Header.Get("X-Release"), resp.Header.Get("X-Instance")
		c.release, c.instance = o.release, o.instance
	}
	if err != nil {
		if resp != nil && resp.StatusCode >= 500 && modeRefusal(resp) {
			o.refused = resp.Header.Get(refusedHeader)
			return nil
		}
		return wrap("open websocket", err)
	}
	o.dialed = true
	c.conn = conn
	return nil
}

func (c *wsClient) fail(o outcome, op string, err error) outcome {
	o.err = wrap(op, err)
	o.dropped = dropped(err)
	_ = c.conn.NetConn().Close() // the connection is broken: no handshake to wait for
	c.conn = nil
	return o
}

// close runs the closing handshake, bounded by the websocket package.
func (c *wsClient) close() {
	if c.conn != nil {
		_ = c.conn.Close() // the run is over; a failed close changes no count
		c.conn = nil
	}
}
