//go:build linux && (amd64 || arm64)

package h1

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// Socket does a TCP connection's reads and writes as raw system calls on
// its non-blocking descriptor, waiting in the runtime's poller when the
// socket is not ready, as net.Conn does, and with the connection's
// deadlines. The calls are the socket ones (recvfrom, sendto; writev for
// two parts), which skip the file layer that read and write go through
// (its checks and file notification hooks), and they are raw: net.Conn's
// go through the
// runtime's blocking-call hand-off (entersyscall/exitsyscall), which wakes
// the runtime's monitor thread after every idle spell and lets it hand the
// scheduler to another thread when a call takes long — on a host where the
// gateway shares its CPU, several percent of its CPU time went to that
// monitor's wake-ups and sleeps. A non-blocking socket call never blocks,
// so it needs none of it.
//
// A Socket is safe for one reader and one writer at a time; a second
// concurrent reader (or writer) takes the ordinary path.
type Socket struct {
	conn net.Conn
	rc   syscall.RawConn
	r, w sockOp
	// The raw callbacks as method values, made once.
	readFn, writeFn, writevFn func(uintptr) bool
}

// sockOp is one direction's call in progress.
type sockOp struct {
	busy atomic.Bool
	p    []byte
	b    []byte // Writev's second part
	n    int
	err  syscall.Errno
	iov  [2]syscall.Iovec
}

// NewSocket returns a Socket for c, or nil when c is not a TCP connection
// (then use c itself).
func NewSocket(c net.Conn) *Socket {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	s := &Socket{conn: c, rc: rc}
	s.readFn, s.writeFn, s.writevFn = s.readStep, s.writeStep, s.writevStep
	return s
}

// Read reads as net.Conn's Read does: io.EOF at the end, a *net.OpError
// otherwise.
func (s *Socket) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	op := &s.r
	if !op.busy.CompareAndSwap(false, true) {
		return s.conn.Read(p)
	}
	op.p, op.n, op.err = p, 0, 0
	err := s.rc.Read(s.readFn)
	n, errno := op.n, op.err
	op.p = nil
	op.busy.Store(false)
	switch {
	case err != nil:
		return 0, s.opError("read", err)
	case errno != 0:
		return 0, s.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

func (s *Socket) readStep(fd uintptr) bool {
	op := &s.r
	n, e := recv(fd, op.p)
	if e == syscall.EAGAIN {
		return false // wait in the poller
	}
	op.n, op.err = n, e
	return true
}

// recv makes one raw recvfrom of the non-blocking socket fd into p (again
// if a signal interrupted it): the bytes read, or 0 and the error.
func recv(fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), 0, 0, 0)
		countCall(&socketCalls.Reads)
		switch e {
		case 0:
			return int(n), 0
		case syscall.EINTR:
			continue
		}
		return 0, e
	}
}

// Write writes all of p, waiting in the poller when the socket's buffer
// is full, as net.Conn's Write does.
func (s *Socket) Write(p []byte) (int, error) {
	op := &s.w
	if !op.busy.CompareAndSwap(false, true) {
		return s.conn.Write(p)
	}
	op.p, op.n, op.err = p, 0, 0
	err := s.rc.Write(s.writeFn)
	n, errno := op.n, op.err
	op.p = nil
	op.busy.Store(false)
	return n, s.writeError(err, errno)
}

func (s *Socket) writeStep(fd uintptr) bool {
	op := &s.w
	for op.n < len(op.p) {
		rest := op.p[op.n:]
		n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&rest[0])), uintptr(len(rest)), syscall.MSG_NOSIGNAL, 0, 0)
		countCall(&socketCalls.Writes)
		switch e {
		case 0:
			op.n += int(n)
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		op.err = e
		return true
	}
	return true
}

// Writev writes a and then b in one system call where the socket takes
// them (a writev), and reports how many bytes of both went.
func (s *Socket) Writev(a, b []byte) (int, error) {
	op := &s.w
	if !op.busy.CompareAndSwap(false, true) {
		bufs := net.Buffers{a, b}
		n, err := bufs.WriteTo(s.conn)
		return int(n), err
	}
	op.p, op.b, op.n, op.err = a, b, 0, 0
	err := s.rc.Write(s.writevFn)
	n, errno := op.n, op.err
	op.p, op.b = nil, nil
	op.busy.Store(false)
	return n, s.writeError(err, errno)
}

func (s *Socket) writevStep(fd uintptr) bool {
	op := &s.w
	for {
		// The parts not yet written, from op.n on.
		iov, skip := op.iov[:0], op.n
		for _, b := range [2][]byte{op.p, op.b} {
			if skip >= len(b) {
				skip -= len(b)
				continue
			}
			b = b[skip:]
			skip = 0
			v := syscall.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			iov = append(iov, v)
		}
		if len(iov) == 0 {
			return true
		}
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)))
		countCall(&socketCalls.Writes)
		switch e {
		case 0:
			op.n += int(n)
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		op.err = e
		return true
	}
}

func (s *Socket) writeError(err error, errno syscall.Errno) error {
	switch {
	case err != nil:
		return s.opError("write", err)
	case errno != 0:
		return s.opError("write", os.NewSyscallError("write", errno))
	}
	return nil
}

// opError wraps err as net.Conn's methods do. An error of the raw call
// (a deadline, a closed connection) comes wrapped already: its inner error
// is kept.
func (s *Socket) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.conn.LocalAddr(), Addr: s.conn.RemoteAddr(), Err: err}
}

// RawSend makes one raw send system call (see Socket) of p on the
// non-blocking socket fd, for a caller that drives the socket itself.
func RawSend(fd uintptr, p []byte) (int, syscall.Errno) {
	if len(p) == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), syscall.MSG_NOSIGNAL, 0, 0)
	countCall(&socketCalls.Writes)
	return int(n), e
}

// RawQuiet reports whether the non-blocking socket fd has nothing to read
// and is not at its end, by a raw peek of one byte (see Socket).
func RawQuiet(fd uintptr) bool {
	var b [1]byte
	_, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1, syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	countCall(&socketCalls.Peeks)
	return e == syscall.EAGAIN
}

// RawRead runs f as the connection's raw read callback (syscall.RawConn):
// f reads the non-blocking socket itself and returns false to wait in the
// poller until it is readable, within the connection's read deadline.
func (s *Socket) RawRead(f func(fd uintptr) bool) error {
	if err := s.rc.Read(f); err != nil {
		return s.opError("read", err)
	}
	return nil
}

// errWouldBlock is rawRecv's "nothing to read yet".
var errWouldBlock = errors.New("h1: read would block")

// rawRecv makes one raw read (see Socket) of the non-blocking socket fd,
// as a Read: io.EOF at the end, errWouldBlock when nothing has come.
func rawRecv(fd uintptr, p []byte) (int, error) {
	n, e := recv(fd, p)
	switch {
	case e == syscall.EAGAIN:
		return 0, errWouldBlock
	case e != 0:
		return 0, os.NewSyscallError("read", e)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}
