package dbproxy

import (
	"bufio"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
)

// MySQL packets are a 3-byte little-endian length, a sequence number and
// the payload; a payload of 0xFFFFFF bytes goes on in the next packet.
const (
	myMaxPayload = 0xFFFFFF
	// myBuffered is the longest payload read whole; a longer one is
	// streamed after its first bytes (enough to classify it).
	myBuffered = 256 << 10
	myPeek     = 64
	// myPrepareMax is the longest statement text kept for preparing again.
	myPrepareMax = 16 << 20
)

// Capability flags (the ones the endpoint reads or takes away).
const (
	capLongPassword      = 1 << 0
	capConnectWithDB     = 1 << 3
	capCompress          = 1 << 5
	capProtocol41        = 1 << 9
	capSSL               = 1 << 11
	capSecureConnection  = 1 << 15
	capPluginAuth        = 1 << 19
	capConnectAttrs      = 1 << 20
	capPluginAuthLenenc  = 1 << 21
	capSessionTrack      = 1 << 23
	capDeprecateEOF      = 1 << 24
	capOptionalMetadata  = 1 << 25
	capZstd              = 1 << 26
	capQueryAttributes   = 1 << 27
	capUnsupportedByUs   = capSSL | capCompress | capDeprecateEOF | capOptionalMetadata | capZstd | capQueryAttributes
	statusInTrans        = 0x0001
	statusAutocommit     = 0x0002
	statusMoreResults    = 0x0008
	statusCursorExists   = 0x0040
	myCmdQuit            = 0x01
	myCmdInitDB          = 0x02
	myCmdQuery           = 0x03
	myCmdFieldList       = 0x04
	myCmdStatistics      = 0x09
	myCmdProcessKill     = 0x0c
	myCmdPing            = 0x0e
	myCmdStmtPrepare     = 0x16
	myCmdStmtExecute     = 0x17
	myCmdStmtSendLong    = 0x18
	myCmdStmtClose       = 0x19
	myCmdStmtReset       = 0x1a
	myCmdSetOption       = 0x1b
	myCmdStmtFetch       = 0x1c
	myCmdResetConnection = 0x1f
)

// myPacket is one physical packet: its header and its payload, whole or
// (streamed) its first bytes.
type myPacket struct {
	head    [4]byte
	size    int
	payload []byte
	partial bool // payload holds only the first bytes; the rest is streamed by forward
}

func (p myPacket) seq() byte { return p.head[3] }

// setPayload replaces a whole packet's payload and its header's length.
func (p *myPacket) setPayload(b []byte) {
	p.payload, p.size = b, len(b)
	p.head[0], p.head[1], p.head[2] = byte(p.size), byte(p.size>>8), byte(p.size>>16)
}

// first is the payload's first byte (0 for an empty payload).
func (p myPacket) first() byte {
	if len(p.payload) == 0 {
		return 0
	}
	return p.payload[0]
}

type myReader struct {
	r   *bufio.Reader
	buf []byte
}

func newMyReader(r io.Reader) *myReader { return &myReader{r: bufio.NewReaderSize(r, 16<<10)} }

// next reads a packet's header and its payload, whole up to keep bytes
// (at least myBuffered), else its first bytes.
func (mr *myReader) next(keep int) (myPacket, error) {
	var p myPacket
	if _, err := io.ReadFull(mr.r, p.head[:]); err != nil {
		return p, err
	}
	p.size = int(p.head[0]) | int(p.head[1])<<8 | int(p.head[2])<<16
	n := p.size
	if n > max(keep, myBuffered) {
		n, p.partial = myPeek, true
	}
	if cap(mr.buf) < n {
		mr.buf = make([]byte, n, max(n, 512))
	}
	p.payload = mr.buf[:n]
	if _, err := io.ReadFull(mr.r, p.payload); err != nil {
		return p, unexpected(err)
	}
	return p, nil
}

// forward writes p to w, streaming what next left unread.
func (mr *myReader) forward(w io.Writer, p myPacket) error {
	if _, err := w.Write(p.head[:]); err != nil {
		return err
	}
	if _, err := w.Write(p.payload); err != nil {
		return err
	}
	if p.partial {
		_, err := io.CopyN(w, mr.r, int64(p.size-len(p.payload)))
		return unexpected(err)
	}
	return nil
}

// skip discards what next left unread.
func (mr *myReader) skip(p myPacket) error {
	if p.partial {
		_, err := mr.r.Discard(p.size - len(p.payload))
		return unexpected(err)
	}
	return nil
}

// myPacketBytes frames a payload as one packet with sequence seq.
func myPacketBytes(seq byte, payload []byte) []byte {
	b := make([]byte, 4, 4+len(payload))
	b[0], b[1], b[2], b[3] = byte(len(payload)), byte(len(payload)>>8), byte(len(payload)>>16), seq
	return append(b, payload...)
}

// mysqlErrPacket is an ERR packet as a server sends it.
func mysqlErrPacket(seq byte, code uint16, state, msg string) []byte {
	payload := []byte{0xff, byte(code), byte(code >> 8), '#'}
	payload = append(payload, state...)
	payload = append(payload, msg...)
	return myPacketBytes(seq, payload)
}

// lenenc reads a length-encoded integer.
func lenenc(b []byte) (v uint64, n int, ok bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	switch c := b[0]; {
	case c < 0xfb:
		return uint64(c), 1, true
	case c == 0xfc && len(b) >= 3:
		return uint64(binary.LittleEndian.Uint16(b[1:])), 3, true
	case c == 0xfd && len(b) >= 4:
		return uint64(b[1]) | uint64(b[2])<<8 | uint64(b[3])<<16, 4, true
	case c == 0xfe && len(b) >= 9:
		return binary.LittleEndian.Uint64(b[1:]), 9, true
	}
	return 0, 0, false
}

func appendLenenc(b []byte, v uint64) []byte {
	switch {
	case v < 0xfb:
		return append(b, byte(v))
	case v < 1<<16:
		return append(b, 0xfc, byte(v), byte(v>>8))
	case v < 1<<24:
		return append(b, 0xfd, byte(v), byte(v>>8), byte(v>>16))
	}
	return binary.LittleEndian.AppendUint64(append(b, 0xfe), v)
}

// okStatus reads the server-status flags of an OK packet (0x00, or 0xfe
// as the end of a result set with CLIENT_DEPRECATE_EOF).
func okStatus(payload []byte) (uint16, bool) {
	if len(payload) < 1 {
		return 0, false
	}
	i := 1
	for range 2 { // affected rows, last insert id
		_, n, ok := lenenc(payload[i:])
		if !ok {
			return 0, false
		}
		i += n
	}
	if len(payload) < i+2 {
		return 0, false
	}
	return binary.LittleEndian.Uint16(payload[i:]), true
}

// eofStatus reads the server-status flags of an EOF packet.
func eofStatus(payload []byte) (uint16, bool) {
	if len(payload) < 5 || payload[0] != 0xfe {
		return 0, false
	}
	return binary.LittleEndian.Uint16(payload[3:]), true
}

// isEOF tells an EOF packet from a row that starts with 0xfe.
func isEOF(p myPacket) bool { return p.first() == 0xfe && p.size < 9 }

// myHandshake is the server's initial handshake (protocol 10), the parts
// the endpoint reads or changes.
type myHandshake struct {
	payload  []byte // the whole packet's payload
	thread   uint32 // the connection id the server gives the session
	threadAt int    // its offset
	capsLow  int    // offsets of the capability flags
	capsHigh int
	extCaps  int // MariaDB's extended capabilities (-1: none)
	caps     uint32
	scramble []byte
	plugin   string
}

func parseHandshake(payload []byte) (*myHandshake, error) {
	h := &myHandshake{payload: payload, extCaps: -1}
	if len(payload) < 1 || payload[0] != 10 {
		return nil, fmt.Errorf("server handshake: not protocol 10")
	}
	_, rest, ok := cstring(payload[1:])
	if !ok {
		return nil, fmt.Errorf("server handshake: no version")
	}
	i := len(payload) - len(rest)
	// connection id 4, scramble 8, filler 1, caps low 2, charset 1, status 2, caps high 2, scramble length 1, reserved 10
	if len(payload) < i+4+8+1+2+1+2+2+1+10 {
		return nil, fmt.Errorf("server handshake: %d bytes", len(payload))
	}
	h.thread, h.threadAt = binary.LittleEndian.Uint32(payload[i:]), i
	scramble := append([]byte(nil), payload[i+4:i+12]...)
	h.capsLow = i + 13
	h.capsHigh = i + 18
	h.caps = uint32(binary.LittleEndian.Uint16(payload[h.capsLow:])) | uint32(binary.LittleEndian.Uint16(payload[h.capsHigh:]))<<16
	authLen := int(payload[i+20])
	h.extCaps = i + 21 + 6
	j := i + 31
	if h.caps&capSecureConnection != 0 {
		n := max(13, authLen-8)
		if len(payload) < j+n {
			return nil, fmt.Errorf("server handshake: short scramble")
		}
		scramble = append(scramble, payload[j:j+n-1]...) // without its NUL
		j += n
	}
	h.scramble = scramble
	if h.caps&capPluginAuth != 0 {
		h.plugin, _, _ = cstring(payload[j:])
		if h.plugin == "" && j < len(payload) {
			h.plugin = string(payload[j:])
		}
	}
	return h, nil
}

// restrict takes away the capabilities the endpoint does not follow (TLS
// to the client, compression, the EOF-less result sets, optional metadata,
// query attributes, MariaDB's extensions), so that a client never asks
// for them.
func (h *myHandshake) restrict() {
	h.caps &^= capUnsupportedByUs
	binary.LittleEndian.PutUint16(h.payload[h.capsLow:], uint16(h.caps))
	binary.LittleEndian.PutUint16(h.payload[h.capsHigh:], uint16(h.caps>>16))
	if h.extCaps >= 0 && h.extCaps+4 <= len(h.payload) {
		clear(h.payload[h.extCaps : h.extCaps+4])
	}
}

// myLogin is what a client's handshake response says.
type myLogin struct {
	caps      uint32
	maxPacket uint32
	charset   byte
	user      string
	db        string
	plugin    string
	attrs     []byte // length-encoded attributes, as sent
}

func parseLogin(payload []byte) (*myLogin, error) {
	if len(payload) < 32 {
		return nil, fmt.Errorf("client handshake response: %d bytes", len(payload))
	}
	l := &myLogin{caps: binary.LittleEndian.Uint32(payload), maxPacket: binary.LittleEndian.Uint32(payload[4:]), charset: payload[8]}
	if l.caps&capProtocol41 == 0 {
		return nil, fmt.Errorf("client handshake response: protocol before 4.1 is not supported")
	}
	if l.caps&capSSL != 0 && len(payload) == 32 {
		return nil, fmt.Errorf("client asks for TLS: the endpoint talks plaintext to clients (it listens on loopback)")
	}
	user, rest, ok := cstring(payload[32:])
	if !ok {
		return nil, fmt.Errorf("client handshake response: no user")
	}
	l.user = user
	switch {
	case l.caps&capPluginAuthLenenc != 0:
		n, k, ok := lenenc(rest)
		if !ok || uint64(len(rest)-k) < n {
			return nil, fmt.Errorf("client handshake response: bad auth data")
		}
		rest = rest[k+int(n):]
	case l.caps&capSecureConnection != 0:
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return nil, fmt.Errorf("client handshake response: bad auth data")
		}
		rest = rest[1+int(rest[0]):]
	default:
		_, rest, ok = cstring(rest)
		if !ok {
			return nil, fmt.Errorf("client handshake response: bad auth data")
		}
	}
	if l.caps&capConnectWithDB != 0 && len(rest) > 0 {
		l.db, rest, _ = cstring(rest)
	}
	if l.caps&capPluginAuth != 0 && len(rest) > 0 {
		l.plugin, rest, _ = cstring(rest)
	}
	if l.caps&capConnectAttrs != 0 && len(rest) > 0 {
		l.attrs = append([]byte(nil), rest...)
	}
	return l, nil
}

// scramblePassword answers a server's scramble for an auth plugin: the
// two the endpoint logs in with itself.
func scramblePassword(plugin string, password string, scramble []byte) ([]byte, error) {
	if password == "" {
		return nil, nil
	}
	switch plugin {
	case "mysql_native_password", "":
		// SHA1(password) XOR SHA1(scramble + SHA1(SHA1(password)))
		h1 := sha1.Sum([]byte(password))
		h2 := sha1.Sum(h1[:])
		h := sha1.New()
		h.Write(scramble[:min(20, len(scramble))])
		h.Write(h2[:])
		h3 := h.Sum(nil)
		for i := range h3 {
			h3[i] ^= h1[i]
		}
		return h3, nil
	case "caching_sha2_password":
		// SHA256(password) XOR SHA256(SHA256(SHA256(password)) + scramble)
		m1 := sha256.Sum256([]byte(password))
		m2 := sha256.Sum256(m1[:])
		h := sha256.New()
		h.Write(m2[:])
		h.Write(scramble[:min(20, len(scramble))])
		m3 := h.Sum(nil)
		for i := range m3 {
			m3[i] ^= m1[i]
		}
		return m3, nil
	}
	return nil, fmt.Errorf("auth plugin %s: the endpoint logs in with mysql_native_password or caching_sha2_password only", plugin)
}
