package websocket

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// closeTimeout bounds how long Close waits for the peer's close frame, and
// how long writing a close frame may block on a peer that does not read.
const closeTimeout = 2 * time.Second

// maxKeptWriteBuf is the largest write buffer a Conn keeps between writes;
// a bigger one, needed for one big message, is dropped after it.
const maxKeptWriteBuf = 64 << 10

// Conn is one WebSocket connection, client or server side.
//
// ReadMessage must be called by one goroutine at a time. WriteMessage,
// Close, CloseWithCode and SetDeadline may be called from any goroutine,
// also while another one is in ReadMessage.
type Conn struct {
	conn   net.Conn
	br     *bufio.Reader
	client bool // a client masks what it sends and expects unmasked frames

	maxSize atomic.Int64

	readMu   sync.Mutex // held by the one reader; Close uses it to know whether one is active
	readErr  error      // sticky: once reading failed or the peer closed, frames are out of step
	readDone chan struct{}
	endOnce  sync.Once

	writeMu   sync.Mutex
	writeBuf  []byte
	writeErr  error // sticky: a failed write may have left half a frame on the wire
	closeSent bool
}

func newConn(nc net.Conn, br *bufio.Reader, client bool) *Conn {
	c := &Conn{conn: nc, br: br, client: client, readDone: make(chan struct{})}
	c.maxSize.Store(DefaultMaxMessageSize)
	return c
}

// SetMaxMessageSize bounds the size of a reassembled message that
// ReadMessage accepts; a bigger one fails the connection with code 1009.
func (c *Conn) SetMaxMessageSize(n int64) { c.maxSize.Store(n) }

// SetDeadline sets the read and write deadline of the underlying connection.
func (c *Conn) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// NetConn returns the underlying connection, for addresses and deadlines.
func (c *Conn) NetConn() net.Conn { return c.conn }

// ReadMessage returns the next text or binary message, reassembled from its
// fragments. Pings are answered and pongs dropped on the way. When the peer
// closes, the close is answered and a *CloseError returned; after any error
// every later call returns the same error. The returned slice is the
// caller's.
func (c *Conn) ReadMessage() (Opcode, []byte, error) {
	c.readMu.Lock()
	defer c.readMu.Unlock()
	if c.readErr != nil {
		return 0, nil, c.readErr
	}
	op, msg, err := c.readMessage()
	if err != nil {
		c.endRead(err)
	}
	return op, msg, err
}

// readMessage reads frames until a data message is complete; readMu is held.
func (c *Conn) readMessage() (Opcode, []byte, error) {
	var op Opcode
	var msg []byte
	inMessage := false
	for {
		h, err := readHeader(c.br)
		if err == nil {
			err = checkHeader(h, inMessage, !c.client)
		}
		if err != nil {
			return 0, nil, c.failIfProtocol(err)
		}
		if h.op.isControl() {
			if err := c.handleControl(h); err != nil {
				return 0, nil, err
			}
			continue
		}
		if !inMessage {
			op, inMessage = h.op, true
		}
		if int64(len(msg))+h.length > c.maxSize.Load() {
			return 0, nil, c.fail(CloseMessageTooBig, ErrMessageTooBig)
		}
		if msg, err = c.readPayload(h, msg); err != nil {
			return 0, nil, err
		}
		if h.fin {
			if op == OpText && !utf8.Valid(msg) {
				return 0, nil, c.fail(CloseInvalidPayload, &ProtocolError{CloseInvalidPayload, "text message is not UTF-8"})
			}
			return op, msg, nil
		}
	}
}

// readPayload appends the frame's payload, unmasked, to msg.
func (c *Conn) readPayload(h header, msg []byte) ([]byte, error) {
	start := len(msg)
	msg = slices.Grow(msg, int(h.length))[:start+int(h.length)]
	if _, err := io.ReadFull(c.br, msg[start:]); err != nil {
		return nil, unexpected(err)
	}
	if h.masked {
		maskBytes(h.mask, 0, msg[start:])
	}
	return msg, nil
}

// handleControl answers one control frame; it returns a *CloseError for a
// close frame, so that ReadMessage hands it to the caller.
func (c *Conn) handleControl(h header) error {
	payload, err := c.readPayload(h, nil)
	if err != nil {
		return err
	}
	switch h.op {
	case OpPing:
		// Once our close is out, RFC 6455 forbids more frames; drop the ping.
		if err := c.writeFrame(OpPong, payload); err != nil && !errors.Is(err, ErrClosed) {
			return fmt.Errorf("answer ping: %w", err)
		}
	case OpClose:
		return c.handleClose(payload)
	}
	return nil
}

// handleClose validates the peer's close frame and echoes its code.
func (c *Conn) handleClose(p []byte) error {
	ce := &CloseError{Code: CloseNoStatus}
	switch {
	case len(p) == 1:
		return c.fail(CloseProtocolError, &ProtocolError{CloseProtocolError, "close frame with a one-byte payload"})
	case len(p) >= 2:
		ce.Code = int(binary.BigEndian.Uint16(p))
		ce.Reason = string(p[2:])
		if !validCloseCode(ce.Code) {
			return c.fail(CloseProtocolError, &ProtocolError{CloseProtocolError, fmt.Sprintf("invalid close code %d", ce.Code)})
		}
		if !utf8.Valid(p[2:]) {
			return c.fail(CloseInvalidPayload, &ProtocolError{CloseInvalidPayload, "close reason is not UTF-8"})
		}
	}
	// The echo may fail if the peer already went away; the close is complete
	// either way from this side's point of view.
	_ = c.sendClose(ce.Code, "")
	return ce
}

// validCloseCode reports whether a peer may send code (RFC 6455 §7.4 and the
// IANA registry); 1005, 1006 and 1015 are for reporting only.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014, code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// failIfProtocol fails the connection when err is the peer's protocol
// violation, and passes I/O errors through.
func (c *Conn) failIfProtocol(err error) error {
	var pe *ProtocolError
	if errors.As(err, &pe) {
		return c.fail(pe.Code, pe)
	}
	return err
}

// fail implements RFC 6455's "Fail the WebSocket Connection": send a close
// frame with code, then drop the TCP connection.
func (c *Conn) fail(code int, err error) error {
	_ = c.sendClose(code, "")
	_ = c.conn.Close()
	return err
}

// endRead records the read side's final error and wakes a waiting Close.
func (c *Conn) endRead(err error) {
	c.readErr = err
	c.endOnce.Do(func() { close(c.readDone) })
}

// WriteMessage sends data as one frame. op is OpText, OpBinary, OpPing or
// OpPong; close frames are sent by Close and CloseWithCode.
func (c *Conn) WriteMessage(op Opcode, data []byte) error {
	switch op {
	case OpText, OpBinary:
	case OpPing, OpPong:
		if len(data) > maxControlPayload {
			return fmt.Errorf("write %v: payload of %d bytes exceeds 125", op, len(data))
		}
	default:
		return fmt.Errorf("write message: opcode %v is not a message", op)
	}
	return c.writeFrame(op, data)
}

// writeFrame sends one final frame unless a close frame was already sent.
func (c *Conn) writeFrame(op Opcode, data []byte) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closeSent {
		return ErrClosed
	}
	return c.writeFrameLocked(true, op, data)
}

// writeFrameLocked writes one frame in a single Write; writeMu is held.
func (c *Conn) writeFrameLocked(fin bool, op Opcode, data []byte) error {
	if c.writeErr != nil {
		return c.writeErr
	}
	var key *[4]byte
	if c.client {
		key = new([4]byte)
		rand.Read(key[:]) // never fails (crypto/rand, Go 1.24+)
	}
	buf := appendHeader(c.writeBuf[:0], fin, op, len(data), key)
	n := len(buf)
	buf = append(buf, data...)
	if key != nil {
		maskBytes(*key, 0, buf[n:])
	}
	_, err := c.conn.Write(buf)
	if cap(buf) <= maxKeptWriteBuf {
		c.writeBuf = buf[:0]
	}
	if err != nil {
		c.writeErr = fmt.Errorf("write %v frame: %w", op, err)
		return c.writeErr
	}
	return nil
}

// sendClose sends a close frame once; code CloseNoStatus sends an empty one.
func (c *Conn) sendClose(code int, reason string) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	if c.closeSent {
		return ErrClosed
	}
	c.closeSent = true
	var p []byte
	if code != CloseNoStatus {
		p = binary.BigEndian.AppendUint16(make([]byte, 0, maxControlPayload), uint16(code))
		p = append(p, reason[:min(len(reason), maxControlPayload-2)]...)
	}
	// A peer that stopped reading must not block the close for ever.
	_ = c.conn.SetWriteDeadline(time.Now().Add(closeTimeout))
	return c.writeFrameLocked(true, OpClose, p)
}

// Close runs the closing handshake with code 1000; see CloseWithCode.
func (c *Conn) Close() error { return c.CloseWithCode(CloseNormal, "") }

// CloseWithCode sends a close frame with code and reason (unless one was
// sent already), waits up to two seconds for the peer's close frame, and
// closes the TCP connection. Messages that arrive meanwhile are discarded,
// unless another goroutine is in ReadMessage: it then receives them and
// the peer's close.
func (c *Conn) CloseWithCode(code int, reason string) error {
	err := c.sendClose(code, reason)
	if err != nil && !errors.Is(err, ErrClosed) {
		_ = c.conn.Close()
		return fmt.Errorf("close websocket: %w", err)
	}
	c.awaitPeerClose()
	if err := c.conn.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("close websocket: %w", err)
	}
	return nil
}

// awaitPeerClose waits, bounded by closeTimeout, until the read side has
// seen the peer's close frame or failed: by reading itself when no other
// goroutine is, else by waiting for that goroutine to get there.
func (c *Conn) awaitPeerClose() {
	if c.readMu.TryLock() {
		defer c.readMu.Unlock()
		_ = c.conn.SetReadDeadline(time.Now().Add(closeTimeout))
		for c.readErr == nil {
			if _, _, err := c.readMessage(); err != nil {
				c.endRead(err)
			}
		}
		return
	}
	t := time.NewTimer(closeTimeout)
	defer t.Stop()
	select {
	case <-c.readDone:
	case <-t.C:
	}
}
