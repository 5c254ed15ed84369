//go:build !(linux && (amd64 || arm64))

package h1

import (
	"errors"
	"net"
	"syscall"
)

// Socket is Linux's on amd64 and arm64 (sock_linux.go). Elsewhere NewSocket returns nil and
// connections are read and written through net.Conn.
type Socket struct{ net.Conn }

// NewSocket returns nil: see Socket.
func NewSocket(net.Conn) *Socket { return nil }

// Writev writes a and then b.
func (s *Socket) Writev(a, b []byte) (int, error) {
	bufs := net.Buffers{a, b}
	n, err := bufs.WriteTo(s.Conn)
	return int(n), err
}

// RawSend writes p to the non-blocking socket fd.
func RawSend(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	if err != nil {
		errno, _ := err.(syscall.Errno)
		return 0, errno
	}
	return n, 0
}

// RawQuiet reports whether the non-blocking socket fd has nothing to read
// and is not at its end.
func RawQuiet(fd uintptr) bool {
	var b [1]byte
	_, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return err == syscall.EAGAIN
}

// Splice sends nothing: splice(2) is Linux's.
func (s *Socket) Splice(syscall.RawConn, int64) (int64, error) { return 0, ErrNoSplice }

// RawRead is not used: NewSocket returns no Socket here.
func (s *Socket) RawRead(func(fd uintptr) bool) error { return errors.ErrUnsupported }

var errWouldBlock = errors.New("h1: read would block")

func rawRecv(fd uintptr, p []byte) (int, error) { return 0, errors.ErrUnsupported }
