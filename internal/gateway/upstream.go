package gateway

import (
	"bufio"
	"context"
	"net"
	"sync"
	"syscall"
	"time"
)

// upstreamConn is one keep-alive HTTP/1.1 connection to a target. A request
// uses it synchronously from the handler's goroutine: no reader or writer
// goroutines per connection, which is where a generic transport spends its
// time.
type upstreamConn struct {
	net.Conn
	target *Target
	raw    syscall.RawConn
	br     *bufio.Reader
	bw     *bufio.Writer
	count  countingReader
	reused bool // served a request before this one
	once   sync.Once
}

// countingReader counts bytes read from the connection, so a failed request
// can tell whether the instance had begun to answer.
type countingReader struct {
	c net.Conn
	n int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.c.Read(p)
	r.n += int64(n)
	return n, err
}

// dialTimeout bounds connecting to an instance; a live instance on a LAN
// accepts in far less.
const dialTimeout = 3 * time.Second

var dialer = &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}

// dial opens a new connection to the target.
func (t *Target) dial(ctx context.Context) (*upstreamConn, error) {
	nc, err := dialer.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, err
	}
	c := &upstreamConn{Conn: nc, target: t}
	if tc, ok := nc.(*net.TCPConn); ok {
		c.raw, _ = tc.SyscallConn()
	}
	c.count.c = nc
	c.br = bufio.NewReaderSize(&c.count, 16<<10)
	c.bw = bufio.NewWriterSize(nc, 16<<10)
	t.track(c)
	return c, nil
}

// alive reports whether an idle connection is still open and quiet. The
// instance may have closed it (idle timeout, restart, crash) while it sat in
// the pool; a non-blocking peek finds that out before a request is written
// onto it, instead of after.
func (c *upstreamConn) alive() bool {
	if c.br.Buffered() > 0 {
		return false // bytes nobody asked for: the stream is out of step
	}
	if c.raw == nil {
		return true
	}
	ok := false
	var buf [1]byte
	err := c.raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		_ = n // 0 is EOF, more is data nobody asked for: either way, not reusable
		ok = err == syscall.EAGAIN || err == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && ok
}

// close closes the connection once. Any goroutine may call it: a drain
// deadline closes connections that requests are still using.
func (c *upstreamConn) close() {
	c.once.Do(func() {
		c.Conn.Close()
		c.target.untrack(c)
	})
}
