// Package websocket is a minimal RFC 6455 WebSocket: enough for the sample
// app's echo endpoint, the load generator and the gateway's tests, with no
// dependency beyond the standard library.
//
// It speaks plain TCP only (handoff's proving tools run on loopback), and it
// has no extensions (no permessage-deflate) and no subprotocol negotiation:
// a peer that asks for either gets a connection without them, which RFC 6455
// allows. Messages are read whole: fragments are reassembled, and control
// frames that arrive between them are answered (ping → pong, close → close)
// without the caller seeing them.
package websocket

import (
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
)

// Opcode is a frame's opcode (RFC 6455 §5.2).
type Opcode byte

// The opcodes RFC 6455 defines; the others are reserved and refused.
const (
	OpContinuation Opcode = 0x0
	OpText         Opcode = 0x1
	OpBinary       Opcode = 0x2
	OpClose        Opcode = 0x8
	OpPing         Opcode = 0x9
	OpPong         Opcode = 0xA
)

// String names the opcode as RFC 6455 does.
func (o Opcode) String() string {
	switch o {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return fmt.Sprintf("opcode(%#x)", byte(o))
}

// isControl reports whether o is a control opcode: those have the high bit set.
func (o Opcode) isControl() bool { return o&0x8 != 0 }

// known reports whether RFC 6455 defines o (the rest are reserved).
func (o Opcode) known() bool {
	switch o {
	case OpContinuation, OpText, OpBinary, OpClose, OpPing, OpPong:
		return true
	}
	return false
}

// Close status codes (RFC 6455 §7.4.1) that this package sends or reports.
const (
	CloseNormal          = 1000
	CloseGoingAway       = 1001
	CloseProtocolError   = 1002
	CloseUnsupportedData = 1003
	// CloseNoStatus is reported when a close frame carried no code; it is
	// never sent.
	CloseNoStatus       = 1005
	CloseInvalidPayload = 1007
	CloseMessageTooBig  = 1009
	CloseInternalError  = 1011
	// CloseServiceRestart (IANA registry): the server is restarting; a
	// client should reconnect. A proxy sends it when the server behind a
	// tunnel went away without closing.
	CloseServiceRestart = 1012
)

// DefaultMaxMessageSize bounds a reassembled message unless SetMaxMessageSize
// says otherwise: big enough for any test payload, small enough that a
// misbehaving peer cannot make a reader allocate without bound.
const DefaultMaxMessageSize = 1 << 20

// maxControlPayload is RFC 6455's limit on a control frame's payload.
const maxControlPayload = 125

// CloseError is returned by ReadMessage once the peer has sent a close frame.
// The close has already been answered; the caller only needs Close.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("websocket: closed by peer with code %d", e.Code)
	}
	return fmt.Sprintf("websocket: closed by peer with code %d (%s)", e.Code, e.Reason)
}

// ProtocolError is a peer's violation of RFC 6455. The connection has been
// failed: a close frame with Code was sent and the TCP connection closed.
type ProtocolError struct {
	Code int
	Msg  string
}

func (e *ProtocolError) Error() string { return "websocket: protocol error: " + e.Msg }

var (
	// ErrMessageTooBig is returned by ReadMessage when a message exceeds the
	// connection's maximum size; the peer was sent close code 1009.
	ErrMessageTooBig = errors.New("websocket: message too big")
	// ErrClosed is returned by writes once this side has sent a close frame.
	ErrClosed = errors.New("websocket: connection closed")
	// ErrBadHandshake is wrapped by Dial and Upgrade when the opening
	// handshake is not a valid RFC 6455 one.
	ErrBadHandshake = errors.New("websocket: bad handshake")
)

// acceptGUID is the fixed GUID of RFC 6455 §1.3.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AcceptKey computes Sec-WebSocket-Accept for a Sec-WebSocket-Key.
func AcceptKey(key string) string {
	h := sha1.Sum([]byte(key + acceptGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}
