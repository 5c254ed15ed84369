package gateway

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/h1"
)

// upstreamConn is one keep-alive HTTP/1.1 connection to a target. A request
// uses it synchronously from the handler's goroutine: no reader or writer
// goroutines per connection, which is where a generic transport spends its
// time.
type upstreamConn struct {
	net.Conn
	target *Target
	raw    syscall.RawConn
	io     io.ReadWriter // the connection, by h1.Socket's raw calls when it is TCP
	br     *bufio.Reader
	bw     *bufio.Writer
	count  countingReader
	// pooled: it sat in the idle pool before this request, warmed ahead of
	// a switch or after serving an earlier one, so the instance may have
	// closed it meanwhile. A warmed one most of all: many servers give a
	// connection less time for its first request than between two (Go's
	// ReadHeaderTimeout, nginx's client_header_timeout).
	pooled bool
	// checked: getIdle took it from the pool after alive's peek found it
	// open. (A new connection is not checked, but not pooled either.)
	checked bool
	once    sync.Once
	// awaitAnswer: the next write to the connection is a request's last,
	// and waits for the answer to become readable (see writeAwait).
	awaitAnswer bool
	// sentPart: part of the current request went out before its last
	// write, so the instance may have begun to answer.
	sentPart bool
	// answerTimeout is the response timeout of the request under way;
	// timed says its deadline is set.
	answerTimeout time.Duration
	timed         bool
	// deadline is the read deadline the connection has (zero: none), and
	// armedFor the timeout it was set for. It may outlive its request:
	// see armTimeout.
	deadline time.Time
	armedFor time.Duration
	await    awaitWrite
	// awaitStep and peek as method values, made once.
	awaitStepFn, peekFn func(uintptr) bool
	quiet               bool // peek's finding
	// x and resp are the request under way and its answer, reused for
	// each: a request costs no allocation for them.
	x    exchange
	resp response
}

// requestWriter is what bw writes to: the connection, or writeAwait for a
// request's last write.
type requestWriter struct{ c *upstreamConn }

func (w requestWriter) Write(p []byte) (int, error) {
	c := w.c
	if c.awaitAnswer && c.raw != nil {
		c.awaitAnswer = false
		return c.writeAwait(p, nil)
	}
	c.sentPart = true
	return c.io.Write(p)
}

// flushAwait writes what bw holds, the request's last bytes, and returns
// once the answer is readable (or the wait failed, which the read that
// follows reports). The read then finds bytes: it is not first tried on an
// empty socket, which on a host where the instance shares the gateway's
// CPU it always is (the instance cannot answer before the gateway yields),
// and where each system call is dear. Only a request sent in one write
// waits so: of a longer one, the instance may have answered the first part
// already (see writeAwait).
func (c *upstreamConn) flushAwait() error {
	if c.sentPart {
		return c.bw.Flush()
	}
	c.armTimeout() // the wait is for the answer: the response timeout bounds it
	c.awaitAnswer = true
	err := c.bw.Flush()
	c.awaitAnswer = false
	return err
}

// sendAwait is flushAwait for a request that is all in head, which needs
// no write buffer of the connection's: head's buffer (hb) goes back to
// headBufs as soon as it is on the wire, before the wait.
func (c *upstreamConn) sendAwait(hb *[]byte, head []byte) error {
	c.armTimeout() // the wait is for the answer: the response timeout bounds it
	if c.raw == nil {
		_, err := c.io.Write(head)
		releaseHead(hb, head)
		return err
	}
	_, err := c.writeAwait(head, hb)
	return err
}

// writer is the connection's buffer for a request with a body, made on
// first use: a connection that only ever carries requests without one
// holds none.
func (c *upstreamConn) writer() *bufio.Writer {
	if c.bw == nil {
		c.bw = bufio.NewWriterSize(requestWriter{c}, 16<<10)
	}
	return c.bw
}

// readers are the upstream connections' read buffers, 16 KiB (the longest
// line of a response head). A connection takes one when a response is to
// be read and gives it back once the response is through, so that the few
// in use stay in the CPU's cache, and an idle connection holds none.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 16<<10) }}

// reader is the connection's read buffer, taken for the response to come.
func (c *upstreamConn) reader() *bufio.Reader {
	if c.br == nil {
		c.br = readers.Get().(*bufio.Reader)
		c.br.Reset(&c.count)
	}
	return c.br
}

// releaseReader gives the read buffer back when it holds nothing (bytes
// nobody asked for stay, for alive to find).
func (c *upstreamConn) releaseReader() {
	if c.br != nil && c.br.Buffered() == 0 {
		c.br.Reset(nil)
		readers.Put(c.br)
		c.br = nil
	}
}

// begin readies the connection for a request whose answer must begin
// within timeout (zero: no limit).
func (c *upstreamConn) begin(timeout time.Duration) {
	c.count.n, c.sentPart, c.answerTimeout, c.timed = 0, false, timeout, false
}

// armTimeout starts the response timeout of the request under way, once.
// A deadline for the same timeout set less than h1.DeadlineSlack of it ago
// (by an earlier request whose answer needed no read after its head, see
// keepDeadline) is kept rather than set anew: on a busy connection that
// saves two timer changes per request, and the wait is bounded at most that
// slack short of the timeout, never longer.
func (c *upstreamConn) armTimeout() {
	if c.answerTimeout <= 0 || c.timed {
		return
	}
	c.timed = true
	now := time.Now()
	if !c.deadline.IsZero() && c.armedFor == c.answerTimeout && c.deadline.Sub(now) > c.answerTimeout-h1.DeadlineSlack(c.answerTimeout) {
		return
	}
	c.deadline, c.armedFor = now.Add(c.answerTimeout), c.answerTimeout
	_ = c.SetReadDeadline(c.deadline) // fails only once closed; the read says so
}

// clearDeadline removes the response timeout's deadline: the body comes at
// the instance's pace.
func (c *upstreamConn) clearDeadline() {
	if !c.deadline.IsZero() {
		c.deadline = time.Time{}
		_ = c.SetReadDeadline(time.Time{}) // fails only once closed; the read says so
	}
}

// keepDeadline reports whether the response timeout's deadline may stay
// on the connection after resp's head was read: nothing more will be read
// for this request (no body, or all of it in br already), so the deadline
// can bound the next request's wait instead of being cleared and set again.
func (c *upstreamConn) keepDeadline(resp *response) bool {
	switch {
	case resp.status == http.StatusSwitchingProtocols || resp.close:
		return false // a tunnel reads at its own pace; a closing connection is not reused
	case resp.body == http.NoBody:
		return true
	case resp.body == &resp.lb:
		return int64(c.br.Buffered()) >= resp.lb.n
	}
	return false
}

// writeAwait writes p and waits until the connection is readable. The
// wait is armed before the write: the poller's readiness is reset when a
// raw read begins, so a wait begun after the write could miss an answer
// that came in between, and wait for bytes that never come. The instance
// cannot answer a request it has not received, so every byte of the answer
// arrives after the reset, and wakes the wait. A write the socket does not
// take whole at once is finished by the ordinary path, without the wait.
func (c *upstreamConn) writeAwait(p []byte, hb *[]byte) (int, error) {
	a := &c.await
	*a = awaitWrite{p: p, hb: hb}
	_ = c.raw.Read(c.awaitStepFn)
	n, wrote, werr := a.n, a.wrote, a.err
	if a.hb != nil { // not all of p went: it is still needed
		defer releaseHead(a.hb, p)
	}
	*a = awaitWrite{}
	// A failed wait (a deadline, a close) is not the write's: the read
	// that follows reports it, as it would have without the wait.
	switch {
	case werr != nil:
		return n, &net.OpError{Op: "write", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.NewSyscallError("write", werr)}
	case !wrote:
		return c.io.Write(p) // the raw read failed before the write: the ordinary path says why
	case n < len(p):
		m, err := c.io.Write(p[n:])
		return n + m, err
	}
	return n, nil
}

// awaitWrite is writeAwait's state, kept in the connection so that the
// raw read's callback (a method value made once per connection) costs no
// allocation per request.
type awaitWrite struct {
	p     []byte
	hb    *[]byte // p's buffer, from headBufs, given back once p is sent
	n     int
	wrote bool
	err   error
}

// awaitStep is writeAwait's raw read callback: the first call writes, the
// next says the connection is readable.
func (c *upstreamConn) awaitStep(fd uintptr) bool {
	a := &c.await
	if a.wrote {
		return true // readable
	}
	a.wrote = true
	for a.n < len(a.p) {
		m, err := h1.RawSend(fd, a.p[a.n:]) // a raw call: see h1.Socket
		switch err {
		case 0:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return true // the rest by the ordinary path
		default:
			a.err = err
			return true
		}
		a.n += int(m)
	}
	if a.hb != nil {
		releaseHead(a.hb, a.p)
		a.p, a.hb = nil, nil
	}
	return false // wait for the answer
}

// countingReader counts bytes read from the connection, so a failed request
// can tell whether the instance had begun to answer.
type countingReader struct {
	c io.Reader
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
	c := &upstreamConn{Conn: nc, target: t, io: nc}
	if tc, ok := nc.(*net.TCPConn); ok {
		c.raw, _ = tc.SyscallConn()
	}
	if sock := h1.NewSocket(nc); sock != nil {
		c.io = sock
	}
	c.awaitStepFn, c.peekFn = c.awaitStep, c.peek
	c.count.c = c.io
	t.track(c)
	return c, nil
}

// alive reports whether an idle connection is still open and quiet. The
// instance may have closed it (idle timeout, restart, crash) while it sat in
// the pool; with check, a non-blocking peek finds that out before a request
// is written onto it, instead of after.
func (c *upstreamConn) alive(check bool) bool {
	if c.br != nil && c.br.Buffered() > 0 {
		return false // bytes nobody asked for: the stream is out of step
	}
	if c.raw == nil || !check {
		return true
	}
	if !c.deadline.IsZero() && !time.Now().Before(c.deadline.Add(-h1.DeadlineSlack(c.armedFor))) {
		// A response timeout kept from an earlier request is (nearly)
		// past: the peek would fail on it.
		c.clearDeadline()
	}
	c.quiet = false
	err := c.raw.Read(c.peekFn)
	return err == nil && c.quiet
}

// peek is alive's raw read callback (a method value made once per
// connection, so that the check costs no allocation).
func (c *upstreamConn) peek(fd uintptr) bool {
	// EOF or data nobody asked for: either way, not reusable.
	c.quiet = h1.RawQuiet(fd)
	return true
}

// close closes the connection once. Any goroutine may call it: a drain
// deadline closes connections that requests are still using.
func (c *upstreamConn) close() {
	c.once.Do(func() {
		c.Conn.Close()
		c.target.untrack(c)
	})
}
