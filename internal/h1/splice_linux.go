//go:build linux && (amd64 || arm64)

package h1

import (
	"io"
	"os"
	"sync"
	"syscall"
)

// Splice sends the next n bytes of src to the socket through a kernel
// pipe (splice(2) in, splice(2) out), as HAProxy does, so that a large
// body never passes through the process: on loopback a 64 KiB response
// spent about 15 % of the gateway's CPU time on the two copies, into its
// buffer and out of it. Each side waits in the poller with its own
// connection's deadlines, as Read and Write do. It returns how many bytes
// reached the socket; a failure of src is a *SourceError (io.ErrUnexpectedEOF
// when src ended first), any other error the socket's. It returns
// ErrNoSplice, having sent nothing, when the socket's writer is busy or
// no pipe can be had (maxPipes are in use).
func (s *Socket) Splice(src syscall.RawConn, n int64) (int64, error) {
	op := &s.w
	if !op.busy.CompareAndSwap(false, true) {
		return 0, ErrNoSplice
	}
	defer op.busy.Store(false)
	p, err := takePipe()
	if err != nil {
		return 0, ErrNoSplice
	}
	var sent int64
	for sent < n && err == nil {
		if err = p.fill(src, n-sent); err == nil {
			var m int64
			m, err = p.drain(s)
			sent += m
		}
	}
	p.release()
	return sent, err
}

// pipe is a kernel pipe a splice passes through; held is how many bytes
// it holds. A pipe that still holds some when its splice fails is closed,
// not reused.
type pipe struct {
	r, w int
	held int
	// The raw callbacks, their argument and their error.
	fillFn, drainFn func(uintptr) bool
	want            int
	errno           syscall.Errno
}

// pipeSize is what a pipe holds by default on Linux (16 pages): a body
// larger goes through in several turns.
const pipeSize = 64 << 10

// pipes keeps idle pipes for the next splice (creating one is three
// system calls, closing it two). A pool that can drop items would leak
// their descriptors, so this is a plain list. The pipes open, idle or in
// use, are capped: each is two descriptors beside a client's and an
// instance's connection, out of the reserve handoff serve keeps when it
// derives its cap on client connections from the descriptor limit. A body
// that finds none free is copied instead.
var pipes struct {
	sync.Mutex
	idle []*pipe
	open int
}

// maxPipes bounds the pipes open at once: 64 descriptors. On a host with
// few CPUs a splice that waits (a slow client) holds its pipe, and bodies
// beyond that many waiting at once are copied.
const maxPipes = 32

func takePipe() (*pipe, error) {
	pipes.Lock()
	defer pipes.Unlock()
	if n := len(pipes.idle); n > 0 {
		p := pipes.idle[n-1]
		pipes.idle = pipes.idle[:n-1]
		return p, nil
	}
	if pipes.open >= maxPipes {
		return nil, ErrNoSplice
	}
	var fds [2]int
	if err := syscall.Pipe2(fds[:], syscall.O_CLOEXEC|syscall.O_NONBLOCK); err != nil {
		return nil, err
	}
	pipes.open++
	p := &pipe{r: fds[0], w: fds[1]}
	p.fillFn, p.drainFn = p.fillStep, p.drainStep
	return p, nil
}

// release keeps p for the next splice, or closes it if it still holds
// bytes of a splice that failed.
func (p *pipe) release() {
	pipes.Lock()
	defer pipes.Unlock()
	if p.held == 0 {
		pipes.idle = append(pipes.idle, p)
		return
	}
	syscall.Close(p.r)
	syscall.Close(p.w)
	pipes.open--
}

// fill moves up to max bytes from src into the empty pipe, waiting until
// src has some.
func (p *pipe) fill(rc syscall.RawConn, max int64) error {
	p.want, p.errno = int(min(max, pipeSize)), 0
	if err := rc.Read(p.fillFn); err != nil {
		return &SourceError{err}
	}
	switch {
	case p.errno != 0:
		return &SourceError{os.NewSyscallError("splice", p.errno)}
	case p.held == 0:
		return &SourceError{io.ErrUnexpectedEOF}
	}
	return nil
}

func (p *pipe) fillStep(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_SPLICE, fd, 0, uintptr(p.w), 0, uintptr(p.want), spliceFlags)
		countCall(&socketCalls.Splices)
		switch e {
		case 0:
			p.held = int(n)
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // src has nothing yet (the pipe is empty)
		}
		p.errno = e
		return true
	}
}

// drain moves all the pipe holds to the socket, waiting while its buffer
// is full, and returns how many bytes went.
func (p *pipe) drain(s *Socket) (int64, error) {
	before := p.held
	p.errno = 0
	err := s.rc.Write(p.drainFn)
	return int64(before - p.held), s.writeError(err, p.errno)
}

func (p *pipe) drainStep(fd uintptr) bool {
	for p.held > 0 {
		n, _, e := syscall.RawSyscall6(syscall.SYS_SPLICE, uintptr(p.r), 0, fd, 0, uintptr(p.held), spliceFlags)
		countCall(&socketCalls.Splices)
		switch e {
		case 0:
			p.held -= int(n)
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // the socket's buffer is full
		}
		p.errno = e
		return true
	}
	return true
}

// SPLICE_F_MOVE | SPLICE_F_NONBLOCK: the pipe never blocks (the sockets
// are non-blocking already).
const spliceFlags = 0x1 | 0x2
