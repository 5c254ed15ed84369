package websocket

import (
	"bufio"
	"crypto/rand"
	"encoding/binary"
	"io"
	"sync"
)

// Relay copies WebSocket frames from one side of a proxy's tunnel to the
// other, byte for byte, and can end its direction with a Close frame written
// at a frame boundary — so that a proxy that must give up a tunnel (a drain
// deadline) says goodbye in the protocol instead of cutting the connection
// under a message.
type Relay struct {
	src      *bufio.Reader
	dst      io.Writer
	toServer bool // frames toward a server are masked (RFC 6455 §5.3)

	mu       sync.Mutex
	inFrame  bool // a frame is being copied: a Close must wait for its end
	pending  []byte
	closed   bool // our Close was written: later frames are dropped
	sawClose bool // a Close from the source passed through
	buf      [14]byte
}

// NewRelay relays frames read from src to dst. toServer says dst is the
// server's side, whose frames must be masked.
func NewRelay(src *bufio.Reader, dst io.Writer, toServer bool) *Relay {
	return &Relay{src: src, dst: dst, toServer: toServer}
}

// Run copies frames until src ends or fails. After GoAway's Close has been
// written, frames still arriving are read and dropped.
func (r *Relay) Run() error {
	for {
		size, length, op, err := r.header()
		if err != nil {
			return err
		}
		r.mu.Lock()
		drop := r.closed
		r.inFrame = !drop
		r.mu.Unlock()
		dst := r.dst
		if drop {
			dst = io.Discard
		} else if _, err := dst.Write(r.buf[:size]); err != nil {
			return err
		}
		if _, err := io.CopyN(dst, r.src, length); err != nil {
			return err
		}
		if drop {
			continue
		}
		r.mu.Lock()
		r.inFrame = false
		if op == OpClose {
			r.sawClose = true
		}
		err = r.flushPending()
		r.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// header reads the next frame header into r.buf, returning its size, the
// payload length and the opcode.
func (r *Relay) header() (size int, length int64, op Opcode, err error) {
	b, err := r.src.Peek(2)
	if err != nil {
		return 0, 0, 0, err
	}
	size = 2
	switch b[1] & 0x7f {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if b[1]&0x80 != 0 {
		size += 4
	}
	h, err := r.src.Peek(size)
	if err != nil {
		return 0, 0, 0, unexpected(err)
	}
	copy(r.buf[:], h)
	r.src.Discard(size)
	op = Opcode(h[0] & 0x0f)
	switch length = int64(h[1] & 0x7f); length {
	case 126:
		length = int64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		length = int64(binary.BigEndian.Uint64(h[2:10]) &^ (1 << 63))
	}
	return size, length, op, nil
}

// GoAway writes a Close frame with code and reason at the next frame
// boundary (at once if none is being copied), and drops what follows.
// It reports whether the source had already sent its own Close.
func (r *Relay) GoAway(code int, reason string) (bool, error) {
	payload := binary.BigEndian.AppendUint16(nil, uint16(code))
	payload = append(payload, reason...)
	var key *[4]byte
	if r.toServer {
		key = new([4]byte)
		rand.Read(key[:])
	}
	frame := appendHeader(nil, true, OpClose, len(payload), key)
	if key != nil {
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || r.sawClose {
		return r.sawClose, nil
	}
	r.pending = append(frame, payload...)
	if r.inFrame {
		return false, nil // Run writes it when the frame ends
	}
	return false, r.flushPending()
}

// flushPending writes a pending Close; r.mu is held.
func (r *Relay) flushPending() error {
	if r.pending == nil {
		return nil
	}
	_, err := r.dst.Write(r.pending)
	r.pending, r.closed = nil, true
	return err
}
