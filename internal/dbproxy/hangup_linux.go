package dbproxy

import (
	"net"
	"syscall"

	"golang.org/x/sys/unix"
)

// hungUp reports whether the client at the other end of c has closed its
// side (its FIN or a reset came), whatever it sent before: the socket's
// TCP state says so even when bytes wait unread (a TLS close_notify, a
// pipelined message), which a peek could not tell apart. A connection that
// is not TCP is never taken for hung up.
func hungUp(c net.Conn) bool {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	state, known := uint8(0), false
	if err := raw.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			state, known = info.State, true
		}
	}); err != nil {
		return true // closed here already
	}
	return known && state != tcpEstablished
}

// tcpEstablished is Linux's TCP_ESTABLISHED (include/net/tcp_states.h).
const tcpEstablished = 1
