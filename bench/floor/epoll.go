package main

import (
	"bytes"
	"log"
	"net/netip"
	"runtime"
	"syscall"
	"unsafe"
)

// fconn is a connection on the epoll loop: a client's or an upstream one.
type fconn struct {
	fd       int
	upstream bool
	in       []byte
	n        int
	peer     *fconn
	pending  []byte // client: bytes still to write
	headLen  int
	total    int
}

var conns = map[int]*fconn{}
var idle []*fconn
var epfd int

func sockaddr(a string) *syscall.SockaddrInet4 {
	ap := netip.MustParseAddrPort(a)
	return &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
}

func recv(fd int, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, 0, 0)
	return int(n), e
}

func send(fd int, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), syscall.MSG_NOSIGNAL, 0, 0)
	return int(n), e
}

func ctl(op, fd int, ev uint32) {
	e := syscall.EpollEvent{Events: ev, Fd: int32(fd)}
	if err := syscall.EpollCtl(epfd, op, fd, &e); err != nil {
		log.Fatal(err)
	}
}

// epollMain serves on one locked thread: level-triggered epoll, raw
// non-blocking socket calls, a LIFO pool of upstream connections.
func epollMain(listen, target string) {
	runtime.LockOSThread()
	lfd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		log.Fatal(err)
	}
	syscall.SetsockoptInt(lfd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
	if err := syscall.Bind(lfd, sockaddr(listen)); err != nil {
		log.Fatal(err)
	}
	if err := syscall.Listen(lfd, 4096); err != nil {
		log.Fatal(err)
	}
	up := sockaddr(target)
	epfd, err = syscall.EpollCreate1(0)
	if err != nil {
		log.Fatal(err)
	}
	ctl(syscall.EPOLL_CTL_ADD, lfd, syscall.EPOLLIN)
	events := make([]syscall.EpollEvent, 512)
	for {
		n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_WAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), 512, ^uintptr(0), 0, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			log.Fatal(e)
		}
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == lfd {
				for {
					nfd, _, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK)
					if err != nil {
						break
					}
					syscall.SetsockoptInt(nfd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
					conns[nfd] = &fconn{fd: nfd, in: make([]byte, 4<<10)}
					ctl(syscall.EPOLL_CTL_ADD, nfd, syscall.EPOLLIN)
				}
				continue
			}
			c := conns[fd]
			if c == nil {
				continue
			}
			if ev.Events&syscall.EPOLLOUT != 0 && c.pending != nil {
				flush(c)
				continue
			}
			if c.upstream {
				upstreamReadable(c)
			} else {
				clientReadable(c, up)
			}
		}
	}
}

func closeConn(c *fconn) {
	delete(conns, c.fd)
	syscall.Close(c.fd)
}

func clientReadable(c *fconn, addr *syscall.SockaddrInet4) {
	m, e := recv(c.fd, c.in[c.n:])
	if e == syscall.EAGAIN {
		return
	}
	if e != 0 || m == 0 {
		closeConn(c)
		return
	}
	c.n += m
	i := bytes.Index(c.in[:c.n], crlf2)
	if i < 0 {
		return
	}
	var u *fconn
	if k := len(idle); k > 0 {
		u, idle = idle[k-1], idle[:k-1]
	} else {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err != nil {
			log.Fatal(err)
		}
		if err := syscall.Connect(fd, addr); err != nil {
			log.Fatal(err)
		}
		syscall.SetNonblock(fd, true)
		syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		u = &fconn{fd: fd, upstream: true, in: make([]byte, 70<<10)}
		conns[fd] = u
		ctl(syscall.EPOLL_CTL_ADD, fd, syscall.EPOLLIN)
	}
	u.peer = c
	if w, e := send(u.fd, c.in[:i+4]); e != 0 || w != i+4 {
		log.Fatal("floor: short write upstream")
	}
	c.n = 0
}

func upstreamReadable(u *fconn) {
	m, e := recv(u.fd, u.in[u.n:])
	if e == syscall.EAGAIN {
		return
	}
	if e != 0 || m == 0 {
		log.Fatal("floor: upstream closed")
	}
	u.n += m
	if u.headLen == 0 {
		i := bytes.Index(u.in[:u.n], crlf2)
		if i < 0 {
			return
		}
		u.headLen = i + 4
		u.total = u.headLen + contentLength(u.in[:u.headLen])
	}
	if u.n < u.total {
		return
	}
	c := u.peer
	c.pending = u.in[:u.total]
	u.n, u.headLen, u.peer = 0, 0, nil
	flush(c)
	if c.pending == nil {
		idle = append(idle, u)
	} else {
		// u's buffer is still being written from: keep it out of the pool
		// until then (the client holds it via peer).
		c.peer = u
	}
}

func flush(c *fconn) {
	for len(c.pending) > 0 {
		w, e := send(c.fd, c.pending)
		if e == syscall.EAGAIN {
			ctl(syscall.EPOLL_CTL_MOD, c.fd, syscall.EPOLLIN|syscall.EPOLLOUT)
			return
		}
		if e != 0 {
			c.pending = nil
			closeConn(c)
			return
		}
		c.pending = c.pending[w:]
	}
	wasOut := c.pending != nil
	c.pending = nil
	if wasOut && c.peer != nil {
		ctl(syscall.EPOLL_CTL_MOD, c.fd, syscall.EPOLLIN)
		idle = append(idle, c.peer)
		c.peer = nil
	}
}
