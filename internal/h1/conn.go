package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoff-dev/handoff/internal/conncap"
)

// bufferSize is the size of a connection's read and write buffers. A
// request head that does not fit in the read buffer is read on a slower
// path, up to MaxHeaderBytes.
const bufferSize = 4 << 10

// Lingering close: after refusing a request, or closing with a request
// body unread, the server stops writing and reads what the client still
// sends for a while, so that the kernel does not answer that data with a
// reset that destroys the response before the client reads it.
const (
	lingerTimeout = 500 * time.Millisecond
	lingerMax     = 256 << 10
)

// conn is one HTTP/1 connection. Its goroutine reads a request, runs the
// handler and writes the response, then the next; the request, its header
// map and the response writer are reused from one request to the next.
type conn struct {
	srv *Server
	rwc net.Conn
	// br is taken from readers while a request is read and served; a
	// kept-alive TCP connection gives it back while idle (awaitIdle). Its
	// source is always in, so that a buffer taken by a raw read callback
	// goes on reading through the socket.
	br *bufio.Reader
	in idleSource
	// bw is taken from writers for each response and given back once it
	// is flushed (nil between requests): an idle connection holds no
	// write buffer, and on a busy server the few in use stay in the CPU's
	// cache, where one per connection was cold memory at every response.
	bw         *bufio.Writer
	out        countingWriter // under bw: how many bytes reached the socket
	remoteAddr string
	cancel     context.CancelFunc

	state    atomic.Int32 // an http.ConnState
	hijacked atomic.Bool
	detached bool // hijacked or handed to the HTTP/2 server: not ours to close
	linger   bool // close with a lingering close
	served   int  // requests read so far

	// readDeadline: a read deadline may be set, so one must be cleared
	// before a handler reads a body at the client's pace.
	readDeadline bool
	// idleAt: when the read deadline now set was set as the idle one
	// (zero: it is not, or not known to be). See setIdleDeadline.
	idleAt time.Time

	idleReadFn func(uintptr) bool // idleRead as a method value, made once
	idleErr    error              // idleRead's finding

	tmpl    http.Request // an empty request that carries the context
	req     http.Request
	header  http.Header
	scratch scratch
	w       response
	big     []byte // a request head too large for br
}

// headerHint sizes a connection's request and response header maps: up to
// eight fields a map is one group of slots, which clearing for the next
// request touches whole; sized for more, it is a table that costs about
// twice as much to fill, walk and clear. A head with more fields grows the
// map once, and the connection keeps it.
const headerHint = 8

// Buffers of closed connections, for new ones: a client that does not
// keep its connection (HTTP/1.0, Connection: close) costs no new buffers.
var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, bufferSize) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, bufferSize) }}
)

func newConn(s *Server, rwc net.Conn) *conn {
	c := &conn{
		srv:    s,
		rwc:    rwc,
		br:     readers.Get().(*bufio.Reader),
		header: make(http.Header, headerHint),
	}
	var rw io.ReadWriter = rwc
	if sock := NewSocket(rwc); sock != nil {
		rw, c.out.sock = sock, sock
		c.idleReadFn = c.idleRead
	}
	c.in.r = rw
	c.br.Reset(&c.in)
	c.out.w = rw
	if ra := rwc.RemoteAddr(); ra != nil {
		c.remoteAddr = ra.String()
	}
	ctx := context.WithValue(s.baseCtx, http.LocalAddrContextKey, rwc.LocalAddr())
	ctx, c.cancel = context.WithCancel(ctx)
	c.tmpl = *new(http.Request).WithContext(ctx)
	c.w.c = c
	c.w.header = make(http.Header, headerHint)
	return c
}

// serve runs the connection until it closes, is hijacked or handed over.
func (c *conn) serve() {
	defer c.close()
	if d := c.srv.ReadHeaderTimeout; d > 0 {
		c.setReadDeadline(time.Now().Add(d))
	}
	for c.serveOne() {
	}
}

// serveOne reads and answers one request and reports whether the
// connection may carry another.
func (c *conn) serveOne() bool {
	if !c.awaitRequest() {
		return false
	}
	head, inBuf, err := c.readHead()
	if err != nil {
		c.refuse(err)
		return false
	}
	if c.served == 0 && bytes.Equal(head, h2Preface[:len(h2PriLine)]) {
		if !c.prefaceFollows() {
			c.refuse(errUnsupported) // "PRI * HTTP/2.0" is no HTTP/1 request
			return false
		}
		c.srv.handToH2(c)
		return false
	}
	c.served++
	f, err := c.parse(head, inBuf)
	if err != nil {
		c.refuse(err)
		return false
	}
	c.prepare(f)
	if !c.runHandler() {
		return false
	}
	return c.finishRequest()
}

// awaitRequest waits for the first byte of the next request, bounded by
// the idle timeout on a kept-alive connection (by the header timeout, set
// at accept, on a new one).
func (c *conn) awaitRequest() bool {
	if c.br == nil || c.br.Buffered() == 0 {
		if c.served > 0 {
			c.setIdleDeadline()
			// The client sends its next request only once it has read
			// this response: a read now would most often find nothing,
			// and cost a system call before the wait. Other connections'
			// work goes first; by then the request has often come.
			runtime.Gosched()
			if c.out.sock != nil {
				return c.awaitIdle()
			}
		}
		if _, err := c.reader().Peek(1); err != nil {
			return false
		}
	}
	c.setState(http.StateActive)
	return true
}

// awaitIdle is awaitRequest's wait on a kept-alive TCP connection, which
// holds no read buffer meanwhile: br goes back to the pool, and the raw
// read that finds the next request's first bytes takes one (idleRead), so
// the wait costs no call more than before. An idle connection holds 4 KiB
// less, and on a busy server the few buffers in use stay in the CPU's
// cache where one per connection was cold memory at every request.
func (c *conn) awaitIdle() bool {
	c.releaseReader()
	c.idleErr = nil
	if err := c.out.sock.RawRead(c.idleReadFn); err != nil || c.idleErr != nil {
		// The wait ended (the idle timeout, a close) or the read failed:
		// the connection closes, with br nil if nothing was read.
		return false
	}
	c.setState(http.StateActive)
	return true
}

// idleRead is awaitIdle's raw read callback: a read buffer is taken for
// the read, and kept only if the read found bytes (or the end).
func (c *conn) idleRead(fd uintptr) bool {
	br := readers.Get().(*bufio.Reader)
	br.Reset(&c.in)
	c.in.fd, c.in.raw = fd, true
	_, err := br.Peek(1)
	c.in.raw = false
	if err == errWouldBlock {
		br.Reset(nil)
		readers.Put(br)
		return false // nothing yet: wait in the poller
	}
	c.br, c.idleErr = br, err
	return true
}

// idleSource is what br reads from: the connection, or within idleRead
// one non-blocking read of the socket fd.
type idleSource struct {
	r   io.Reader
	fd  uintptr
	raw bool // within idleRead: read fd
}

func (s *idleSource) Read(p []byte) (int, error) {
	if !s.raw {
		return s.r.Read(p)
	}
	return rawRecv(s.fd, p)
}

// readHead returns the request head through its blank line. inBuf says it
// is still in br (to be discarded once parsed) rather than in c.big. The
// header timeout starts when a head turns out not to have arrived whole.
func (c *conn) readHead() (head []byte, inBuf bool, err error) {
	limit := c.srv.maxHeaderBytes()
	timed := c.served == 0 // a new connection's deadline runs from accept
	from := 0
	for {
		buf, _ := c.br.Peek(c.br.Buffered())
		if end := headEnd(buf, from); end >= 0 {
			if end > limit {
				return nil, false, errHeaderTooLarge
			}
			return buf[:end], true, nil
		}
		if len(buf) >= limit {
			return nil, false, errHeaderTooLarge
		}
		if err := checkRequestLine(buf); err != nil {
			return nil, false, err
		}
		if !timed {
			c.setHeaderDeadline()
			timed = true
		}
		if len(buf) == c.br.Size() {
			head, err := c.readBigHead(buf, limit)
			return head, false, err
		}
		from = len(buf)
		if _, err := c.br.Peek(len(buf) + 1); err != nil {
			return nil, false, err
		}
	}
}

// readBigHead reads a head that does not fit in br into c.big.
func (c *conn) readBigHead(buf []byte, limit int) ([]byte, error) {
	c.big = append(c.big[:0], buf...)
	if _, err := c.br.Discard(len(buf)); err != nil {
		return nil, err
	}
	from := len(c.big)
	for {
		line, err := c.br.ReadSlice('\n')
		c.big = append(c.big, line...)
		if end := headEnd(c.big, from); end >= 0 {
			if end > limit {
				return nil, errHeaderTooLarge
			}
			return c.big[:end], nil // ReadSlice stops at the '\n' that ends it
		}
		if len(c.big) > limit {
			return nil, errHeaderTooLarge
		}
		if err != nil && err != bufio.ErrBufferFull {
			return nil, err
		}
		from = len(c.big)
	}
}

// The HTTP/2 connection preface; its first line and the blank line after
// it look like a request head.
var (
	h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	h2PriLine = "PRI * HTTP/2.0\r\n\r\n"
)

// prefaceFollows reports whether the rest of the HTTP/2 preface follows
// the "PRI" head at the start of the read buffer.
func (c *conn) prefaceFollows() bool {
	buf, err := c.br.Peek(len(h2Preface))
	return err == nil && bytes.Equal(buf, h2Preface)
}

// parse parses the head into c.req.
func (c *conn) parse(head []byte, inBuf bool) (framing, error) {
	c.req = c.tmpl
	clear(c.header)
	c.req.Header = c.header
	c.req.RemoteAddr = c.remoteAddr
	f, err := parseRequest(head, &c.req, &c.scratch)
	if inBuf {
		if _, derr := c.br.Discard(len(head)); derr != nil && err == nil {
			err = derr
		}
	}
	return f, err
}

// reader returns the connection's read buffer, taking one if it has
// none: a request without a body gives it back once its head is parsed
// (see prepare).
func (c *conn) reader() *bufio.Reader {
	if c.br == nil {
		c.br = readers.Get().(*bufio.Reader)
		c.br.Reset(&c.in)
	}
	return c.br
}

// releaseReader gives the read buffer back. The caller knows it holds
// nothing: no byte of a next request, no body.
func (c *conn) releaseReader() {
	if c.br != nil {
		c.br.Reset(nil)
		readers.Put(c.br)
		c.br = nil
	}
}

// writer returns the connection's write buffer, taking one for a response
// when its first byte is written: a handler that waits (a gateway's for
// its instance) holds none meanwhile.
func (c *conn) writer() *bufio.Writer {
	if c.bw == nil {
		c.bw = writers.Get().(*bufio.Writer)
		c.bw.Reset(&c.out)
	}
	return c.bw
}

// releaseWriter gives the write buffer back once all it held is written.
func (c *conn) releaseWriter() {
	if c.bw != nil && c.bw.Buffered() == 0 {
		c.bw.Reset(nil)
		writers.Put(c.bw)
		c.bw = nil
	}
}

// prepare gives the request its body and resets the response. A request
// without a body gives the read buffer back unless it holds the next
// request: held while the handler runs, hundreds of buffers of busy
// connections took turns in the CPU's cache, each cold when its turn came;
// given back, the few in use stay warm.
func (c *conn) prepare(f framing) {
	if f.contentLength == 0 && c.br.Buffered() == 0 {
		c.releaseReader()
	}
	var b *body
	c.req.Body = http.NoBody
	if f.contentLength != 0 {
		c.idleAt = time.Time{} // the body's reads set their own deadlines
		b = newBody(c, f)
		c.req.Body = b
		if c.readDeadline {
			c.setReadDeadline(time.Time{}) // the body comes at the client's pace
		}
		c.readDeadline = c.srv.BodyTimeout > 0 // each body read sets one
	}
	c.w.reset(&c.req, b, f)
}

// runHandler runs the handler and reports whether the server still owns
// the connection and the response may be finished. A panic closes the
// connection; one with http.ErrAbortHandler is not logged.
func (c *conn) runHandler() (ok bool) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		ok = false
		if v != http.ErrAbortHandler {
			const size = 64 << 10
			stack := make([]byte, size)
			stack = stack[:runtime.Stack(stack, false)]
			c.srv.log().Error("h1: panic serving request", "remote", c.remoteAddr, "panic", v, "stack", string(stack))
		}
		if !c.hijacked.Load() {
			c.abort()
		}
	}()
	c.srv.handler().ServeHTTP(&c.w, &c.req)
	return !c.hijacked.Load()
}

// abort ends a response the handler gave up on: what was sent stays sent,
// and a body that only the connection's end delimits is cut by a reset, so
// that the client cannot take the part for the whole.
//
// When nothing of the response has reached the client yet, the client gets
// a 502 instead, with the connection closed: a gateway's handler gives up
// when the instance's response broke before it began, and a client that
// gets a clean error can retry, where a truncated head or an unexplained
// close leaves it guessing.
func (c *conn) abort() {
	w := &c.w
	if c.out.n.Load() == w.outStart.Load() {
		c.writer().Reset(&c.out) // drop the head and body held so far
		_ = c.rwc.SetWriteDeadline(time.Now().Add(lingerTimeout))
		_, _ = c.bw.Write(errAborted.responseFor(w.isHEAD))
		if c.bw.Flush() == nil && w.body != nil {
			c.linger = true // the client may still be sending its body
		}
		return
	}
	if err := c.writer().Flush(); err != nil {
		return
	}
	if w.committed && w.contentLength < 0 && !w.chunked && bodyAllowedForStatus(w.status) && !w.isHEAD {
		if tc, ok := c.rwc.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // best effort: a clean close is what is left
		}
	}
}

// finishRequest completes the response and reports whether the
// connection may carry another request.
func (c *conn) finishRequest() bool {
	w := &c.w
	w.finish()
	if w.body != nil {
		_ = w.body.Close() // never fails
		if !w.body.done() {
			c.linger = true // unread body bytes may be in flight
		}
	}
	if w.closeAfter {
		return false
	}
	w.releasePending()
	c.releaseWriter()
	c.release()
	c.setState(http.StateIdle)
	return true
}

// release drops what one unusual request grew, so that the connection
// neither keeps it nor pays to clear it on every request after.
func (c *conn) release() {
	c.scratch.release()
	if cap(c.big) > 64<<10 {
		c.big = nil
	}
	if len(c.header) > 256 {
		c.header = make(http.Header, headerHint)
	}
	if len(c.w.header) > 256 {
		c.w.header = make(http.Header, headerHint)
	}
}

// refuse answers a request the server cannot serve. A read that failed or
// timed out gets no answer: no one may be there to read it.
func (c *conn) refuse(err error) {
	var re *requestError
	if !errors.As(err, &re) {
		return
	}
	c.srv.log().Debug("h1: refused request", "remote", c.remoteAddr, "error", re)
	bw := c.writer()
	_ = c.rwc.SetWriteDeadline(time.Now().Add(lingerTimeout)) // fails only once closed; Flush reports that
	_, _ = bw.Write(re.response())                            // sticky: Flush reports it
	if err := bw.Flush(); err != nil {
		return
	}
	c.linger = true
}

// hijack gives the connection up to the handler. It stays counted in
// the server's connection cap until the handler closes it: a WebSocket
// holds a descriptor as long as any request does, and a cap that let
// hijacked connections go uncounted could be walked past by opening them.
func (c *conn) hijack() net.Conn {
	c.hijacked.Store(true)
	c.detached = true
	if c.readDeadline {
		c.setReadDeadline(time.Time{})
	}
	c.srv.untrack(c, http.StateHijacked)
	if c.srv.Conns == nil {
		return c.rwc
	}
	return &hijackedConn{Conn: c.rwc, cap: c.srv.Conns}
}

// hijackedConn is a hijacked connection that gives its place in the
// connection cap back when it is first closed.
type hijackedConn struct {
	net.Conn
	cap  *conncap.Cap
	once sync.Once
}

func (h *hijackedConn) Close() error {
	h.once.Do(h.cap.Give)
	return h.Conn.Close()
}

// close closes the connection unless it was handed over. It cancels the
// connection's context either way: the request has ended.
func (c *conn) close() {
	defer c.cancel()
	if c.detached {
		return
	}
	if c.linger {
		c.lingerClose()
	}
	c.srv.closeLogged("connection", c.rwc)
	c.srv.forget(c, http.StateClosed)
	// The buffers go back to the pool once nothing can use them: the
	// handler has returned, and closing the body waits out a read that a
	// goroutine of a panicked handler may still run (the socket is closed,
	// so the read ends). A hijacked or handed-over connection keeps its own.
	if b := c.w.body; b != nil {
		_ = b.Close() // never fails
	}
	c.releaseReader()
	c.releaseWriter() // unless it holds bytes a failed write left: then it is dropped
}

func (c *conn) lingerClose() {
	cw, ok := c.rwc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = c.rwc.SetReadDeadline(time.Now().Add(lingerTimeout)) // fails only once closed, as would the read
	_, _ = io.CopyN(io.Discard, c.rwc, lingerMax)            // until the client closes, times out, or enough
}

func (c *conn) setState(st http.ConnState) {
	c.state.Store(int32(st))
	if hook := c.srv.ConnState; hook != nil {
		hook(c.rwc, st)
	}
}

// setReadDeadline sets the connection's read deadline. It fails only on
// a closed connection, which the next read reports.
func (c *conn) setReadDeadline(t time.Time) {
	c.readDeadline = !t.IsZero()
	c.idleAt = time.Time{}
	_ = c.rwc.SetReadDeadline(t)
}

// setIdleDeadline bounds the wait for the next request (none without an
// IdleTimeout, as net/http). An idle deadline set within the last
// DeadlineSlack(IdleTimeout) is left as it is: on a busy connection that
// saves a timer change per request (a clock read, a lock and a heap
// operation in the runtime), and the wait it bounds is at most that slack
// shorter than IdleTimeout, never longer.
func (c *conn) setIdleDeadline() {
	d := c.srv.IdleTimeout
	if d <= 0 {
		if c.readDeadline {
			c.setReadDeadline(time.Time{})
		}
		return
	}
	now := time.Now()
	if !c.idleAt.IsZero() && now.Sub(c.idleAt) < DeadlineSlack(d) {
		return
	}
	c.setReadDeadline(now.Add(d))
	c.idleAt = now
}

// DeadlineSlack is how stale a deadline of timeout d may be before it is
// set again: 1/64 of d, at most 100 ms. A connection that a deadline
// bounds for each request keeps one set less than this long ago rather
// than setting it anew each time (see setIdleDeadline).
func DeadlineSlack(d time.Duration) time.Duration {
	return min(d/64, 100*time.Millisecond)
}

// setHeaderDeadline bounds the rest of a request head (none without a
// ReadHeaderTimeout, as net/http).
func (c *conn) setHeaderDeadline() {
	if d := c.srv.ReadHeaderTimeout; d > 0 {
		c.setReadDeadline(time.Now().Add(d))
	} else if c.readDeadline {
		c.setReadDeadline(time.Time{})
	}
}

// countingWriter counts the bytes written to the connection, so that an
// aborted response can tell whether any of it reached the client. The
// count is atomic: a 100 Continue may be written from a body reader's
// goroutine.
type countingWriter struct {
	w    io.Writer
	sock *Socket // w, when the connection is a TCP one: for writev
	n    atomic.Int64

	// tail, when set, goes out right after the next write's bytes, in the
	// same system call (see conn.write); tailN says how much of it went.
	tail  []byte
	tailN int
	vec   [2][]byte
	bufs  net.Buffers
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	if cw.tail != nil {
		return cw.writeWithTail(p)
	}
	n, err := cw.w.Write(p)
	cw.n.Add(int64(n))
	return n, err
}

// writeWithTail writes p and then the tail with one writev.
func (cw *countingWriter) writeWithTail(p []byte) (int, error) {
	var n int64
	var err error
	if cw.sock != nil {
		m, werr := cw.sock.Writev(p, cw.tail)
		n, err, cw.tail = int64(m), werr, nil
	} else {
		cw.vec[0], cw.vec[1] = p, cw.tail
		cw.bufs, cw.tail = cw.vec[:], nil
		n, err = cw.bufs.WriteTo(cw.w)
		cw.bufs, cw.vec = nil, [2][]byte{}
	}
	cw.n.Add(n)
	cw.tailN = int(max(n-int64(len(p)), 0))
	return int(min(n, int64(len(p)))), err
}

// write writes p after the bytes bw holds. A p too long for bw goes out
// with them in one system call, where bw would fill itself from p, write
// that, and then write the rest: a response head and a large body write
// cost one writev, not two writes.
func (c *conn) write(p []byte) (int, error) {
	bw := c.writer()
	if len(p) <= bw.Available() || bw.Buffered() == 0 {
		return bw.Write(p)
	}
	c.out.tail, c.out.tailN = p, 0
	err := bw.Flush()
	n := c.out.tailN
	c.out.tail, c.out.tailN = nil, 0 // unused when the flush failed early
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return n, err
}
