package websocket

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
)

// header is one frame's header (RFC 6455 §5.2).
type header struct {
	fin    bool
	rsv    byte // the three reserved bits; no extension is negotiated, so they must be 0
	op     Opcode
	masked bool
	mask   [4]byte
	length int64
}

// readHeader reads a frame header from br.
func readHeader(br *bufio.Reader) (header, error) {
	var h header
	var b [8]byte
	if _, err := io.ReadFull(br, b[:2]); err != nil {
		return h, err
	}
	h.fin = b[0]&0x80 != 0
	h.rsv = b[0] & 0x70
	h.op = Opcode(b[0] & 0x0f)
	h.masked = b[1]&0x80 != 0
	h.length = int64(b[1] & 0x7f)
	switch h.length {
	case 126:
		if _, err := io.ReadFull(br, b[:2]); err != nil {
			return h, unexpected(err)
		}
		h.length = int64(binary.BigEndian.Uint16(b[:2]))
	case 127:
		if _, err := io.ReadFull(br, b[:8]); err != nil {
			return h, unexpected(err)
		}
		n := binary.BigEndian.Uint64(b[:8])
		if n>>63 != 0 {
			return h, &ProtocolError{CloseProtocolError, "64-bit payload length has its top bit set"}
		}
		h.length = int64(n)
	}
	if h.masked {
		if _, err := io.ReadFull(br, h.mask[:]); err != nil {
			return h, unexpected(err)
		}
	}
	return h, nil
}

// unexpected turns a clean EOF inside a frame into ErrUnexpectedEOF: only a
// frame boundary is a place where a connection may end.
func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// appendHeader appends a frame header for a payload of n bytes, masked with
// key when key is not nil.
func appendHeader(dst []byte, fin bool, op Opcode, n int, key *[4]byte) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	var maskBit byte
	if key != nil {
		maskBit = 0x80
	}
	switch {
	case n <= 125:
		dst = append(dst, b0, maskBit|byte(n))
	case n <= 0xffff:
		dst = append(dst, b0, maskBit|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, b0, maskBit|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	if key != nil {
		dst = append(dst, key[:]...)
	}
	return dst
}

// maskBytes XORs b in place with key, starting at position pos of the
// payload, and returns the position after b. Masking is its own inverse.
func maskBytes(key [4]byte, pos int, b []byte) int {
	for i := range b {
		b[i] ^= key[(pos+i)&3]
	}
	return pos + len(b)
}

// checkHeader enforces the framing rules that do not depend on the payload.
// inMessage says whether a fragmented data message is being reassembled;
// fromClient whether the frame was sent by a client (which must mask).
func checkHeader(h header, inMessage, fromClient bool) error {
	switch {
	case h.rsv != 0:
		return &ProtocolError{CloseProtocolError, "reserved bits set without a negotiated extension"}
	case !h.op.known():
		return &ProtocolError{CloseProtocolError, fmt.Sprintf("reserved opcode %#x", byte(h.op))}
	case fromClient && !h.masked:
		return &ProtocolError{CloseProtocolError, "client frame is not masked"}
	case !fromClient && h.masked:
		return &ProtocolError{CloseProtocolError, "server frame is masked"}
	case h.op.isControl() && !h.fin:
		return &ProtocolError{CloseProtocolError, "fragmented control frame"}
	case h.op.isControl() && h.length > maxControlPayload:
		return &ProtocolError{CloseProtocolError, "control frame longer than 125 bytes"}
	case h.op == OpContinuation && !inMessage:
		return &ProtocolError{CloseProtocolError, "continuation frame outside a message"}
	case !h.op.isControl() && h.op != OpContinuation && inMessage:
		return &ProtocolError{CloseProtocolError, "new data frame inside a fragmented message"}
	}
	return nil
}
