package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/h1"
)

// maxAttempts bounds how many instances one request may be tried on.
const maxAttempts = 3

// syncBodyMax is the largest body written from the handler's own goroutine;
// the socket buffer takes it whole, so the instance cannot stall us by
// answering before it reads. Longer bodies are written concurrently with
// reading the response.
const syncBodyMax = 64 << 10

// noFlush leaves a body in the connection's buffer for the flush after it.
func noFlush() error { return nil }

// copyBufs hold a response body on its way through: 64 KiB, so that a body
// of that size costs one read and one write.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

// attemptError says why one attempt failed and whether another may follow.
type attemptError struct {
	err error
	// retry: the instance cannot have acted on the request, or the request
	// may be sent twice.
	retry bool
	// down: the target refused the connection; take it out of rotation.
	down bool
	// stale: the connection came from the pool unchecked and the request
	// failed on it before any answer, so the instance may have closed it
	// while it was idle (see roundTrip).
	stale bool
	// status, when set, is the answer the client gets instead of 502: 400
	// or 408 when its own body broke or stalled, 504 when the instance did
	// not answer within the response timeout, 503 when the gateway is out
	// of file descriptors.
	status int
}

// clientBodyError is a failure to read the client's request body: the
// client's fault (a framing error, a stall, a disconnect), not the
// instance's.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "read request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

// errNotUpgrade is a 101 to a request that asked for no protocol switch.
var errNotUpgrade = fmt.Errorf("%w: 101 Switching Protocols to a request without Upgrade", errMalformed)

func (e *attemptError) Error() string { return e.err.Error() }
func (e *attemptError) Unwrap() error { return e.err }

// exchange is one request/response on one upstream connection. The
// connection keeps one and reuses it for each request: it is not to be
// used once finish has given the connection back.
type exchange struct {
	conn    *upstreamConn
	resp    *response
	wrote   chan error // the body writer's result, when it runs concurrently
	stopCtx func() bool
	// clientGone: writing the response to the client failed (it left), so
	// the request is logged as 499, not as the instance's status.
	clientGone bool
}

// roundTrip sends r on a connection to t and reads the response head into h.
//
// A pooled connection may have been closed by the instance while it sat
// idle (its idle timeout, a restart). A request with no body that may be
// sent twice goes out on one unchecked, and if the instance turns out to
// have closed it — the request failed before any answer — it is sent
// again on a checked or new connection to the same target, which does not
// count as an attempt: the failure was the pool's, not the instance's.
// Any other request has its connection checked first (Target.getIdle).
// The check is a system call, a fifth of those a request costs; a closed
// connection is rare, and a request may go out again only when sending it
// twice is harmless.
func (g *Gateway) roundTrip(r *http.Request, t *Target, body *replayBody, o outbound) (*exchange, error) {
	check := body != nil || !idempotent(r)
	x, err := g.try(r, t, body, o, check)
	if ae, ok := err.(*attemptError); ok && ae.stale { // never so when checked
		x, err2 := g.try(r, t, body, o, true)
		if ae2, ok := err2.(*attemptError); ok {
			ae2.err = fmt.Errorf("%w (after a pooled connection failed: %v)", ae2.err, ae.err) // for the log
		}
		return x, err2
	}
	return x, err
}

// try is one attempt of roundTrip, on a pooled connection (checked first
// when check is set) or a new one.
func (g *Gateway) try(r *http.Request, t *Target, body *replayBody, o outbound, check bool) (*exchange, error) {
	c := t.getIdle(check)
	if c == nil {
		var err error
		if c, err = t.dial(r.Context()); err != nil {
			if descriptorsExhausted(err) {
				// The gateway's own fault: no other instance would fare
				// better, and this one is not to blame.
				g.outOfDescriptors("dial", t.Addr, err)
				return nil, &attemptError{err: err, status: http.StatusServiceUnavailable}
			}
			return nil, &attemptError{err: err, retry: r.Context().Err() == nil, down: refused(err)}
		}
	}
	x := &c.x
	*x = exchange{conn: c, stopCtx: noStop}
	if r.ProtoMajor == 2 {
		// An HTTP/2 stream's context ends with the stream: a client that
		// cancels takes its upstream request with it. (An HTTP/1.1
		// request's context is its connection's, which ends only after.)
		x.stopCtx = context.AfterFunc(r.Context(), func() { c.SetDeadline(time.Unix(1, 0)) })
	}
	c.begin(g.opts.ResponseTimeout)
	hb := headBufs.Get().(*[]byte)
	head := writeHead((*hb)[:0], r, o)
	// A request released from a hold lets the next in line go once all of
	// it is with the connection: before the write that waits for the
	// answer, not after it (the line would go at the app's pace).
	if body == nil {
		dispatched(r)
		if err := c.sendAwait(hb, head); err != nil {
			return nil, g.failed(x, r, body, err, true)
		}
	} else if err := c.sendWithBody(x, r, body, hb, head); err != nil {
		return nil, g.failed(x, r, body, err, false)
	}
	resp, err := g.awaitResponse(c, r)
	if err == nil && resp.status == http.StatusSwitchingProtocols {
		err = errNotUpgrade
	}
	if err != nil {
		return nil, g.failed(x, r, body, err, false)
	}
	x.resp = resp
	return x, nil
}

// sendWithBody writes a request with a body: one short enough from this
// goroutine, waiting for the answer after its last write as a request
// without one does; a longer one, or one of unknown length, from a
// goroutine of its own that goes on beside the wait for the answer.
func (c *upstreamConn) sendWithBody(x *exchange, r *http.Request, body *replayBody, hb *[]byte, head []byte) error {
	bw := c.writer()
	bw.Write(head) // an error is sticky in bw: the body's write reports it
	releaseHead(hb, head)
	if r.ContentLength > 0 && r.ContentLength <= syncBodyMax {
		buf := copyBufs.Get().(*[]byte)
		err := writeBody(bw, r, body, *buf, noFlush)
		copyBufs.Put(buf)
		if err != nil {
			return err
		}
		dispatched(r)
		return c.flushAwait()
	}
	x.wrote = make(chan error, 1)
	go func() {
		buf := copyBufs.Get().(*[]byte)
		err := writeBody(bw, r, body, *buf, bw.Flush)
		copyBufs.Put(buf)
		if _, ok := err.(*clientBodyError); ok {
			// The instance got part of a body that will never end: end
			// its wait for the rest, and the response read with it.
			c.close()
		}
		x.wrote <- err
	}()
	dispatched(r) // a streamed body: its writer goes on beside the wait
	return nil
}

// awaitResponse reads the response head, waiting at most the response
// timeout for it: an instance that accepted the request and went silent
// gets the request a 504 rather than holding it. The body then comes at
// the instance's pace (an event stream may be quiet for long).
func (g *Gateway) awaitResponse(c *upstreamConn, r *http.Request) (*response, error) {
	c.armTimeout() // set already when the request's last write waited for the answer
	resp, err := readResponse(c.reader(), &c.resp, r.Method)
	if c.timed && err == nil {
		if !c.keepDeadline(resp) {
			c.clearDeadline()
		}
		// An HTTP/2 client that left meanwhile: keep its cancellation. (An
		// HTTP/1 request's context is its connection's, which h1 cancels
		// only once the handler is done or the server closes the client's
		// connection, which ends the response anyway; not looking saves
		// touching it, cold by now on a busy gateway.)
		if r.ProtoMajor >= 2 && r.Context().Err() != nil {
			_ = c.SetDeadline(time.Unix(1, 0))
		}
	}
	return resp, err
}

func noStop() bool { return true }

// failed closes a failed exchange and decides whether the request may be
// tried again: only if the instance had not begun to answer, and either
// nothing reached it (headOnly) or the request may be sent twice.
func (g *Gateway) failed(x *exchange, r *http.Request, body *replayBody, err error, headOnly bool) error {
	x.stopCtx()
	x.conn.close()
	if x.wrote != nil {
		// The writer has stopped; the body may be rewound. If it stopped
		// on the client's body, that is the failure to report.
		if werr := <-x.wrote; werr != nil {
			if _, ok := werr.(*clientBodyError); ok {
				err = werr
			}
		}
	}
	if r.Context().Err() != nil {
		return &attemptError{err: context.Cause(r.Context())}
	}
	if ce, ok := err.(*clientBodyError); ok {
		status := http.StatusBadRequest
		if errors.Is(ce.err, os.ErrDeadlineExceeded) {
			status = http.StatusRequestTimeout
		}
		return &attemptError{err: err, status: status}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return &attemptError{err: err, status: http.StatusGatewayTimeout}
	}
	answered := x.conn.count.n > 0
	rewound := body == nil || body.rewind()
	retry := !answered && rewound && (headOnly || idempotent(r))
	return &attemptError{err: err, retry: retry, stale: retry && x.conn.pooled && !x.conn.checked}
}

// finish ends an exchange after the response body was read to its end (ok)
// or not, returning the connection to the pool when it can carry another.
func (x *exchange) finish(ok bool) {
	if !x.stopCtx() {
		ok = false // the client left and the connection's deadline was cut short
	}
	if x.wrote != nil {
		select {
		case err := <-x.wrote:
			ok = ok && err == nil
		default:
			ok = false // the instance answered before reading the whole body
			x.conn.close()
			<-x.wrote
		}
	}
	if !ok || x.resp.close || x.resp.status == http.StatusSwitchingProtocols {
		x.conn.close()
		return
	}
	x.conn.resp.putHead()
	x.conn.releaseReader()
	x.conn.target.putIdle(x.conn)
}

func refused(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
			errors.Is(err, syscall.ENETUNREACH) || oe.Timeout()
	}
	return false
}

// deliver copies the instance's response to the client, with the headers
// the gateway set in w.Header(). It returns the number of body bytes
// written and whether the body was read to its end.
func (g *Gateway) deliver(w http.ResponseWriter, x *exchange, banner []byte, method string) (int64, bool) {
	if x.wrote != nil {
		// The body is still going up while the answer comes down (an
		// instance may answer before it has read it all): the server must
		// not read the rest of it away when the head goes out, or the
		// instance waits forever for bytes the server discarded.
		_ = http.NewResponseController(w).EnableFullDuplex()
	}
	resp := x.resp
	h := w.Header()
	if g.closing.Load() {
		h.Set("Connection", "close")
	}
	fw, wire := w.(h1.FieldsWriter)
	if banner != nil || !wire {
		// The banner changes the head, and a writer that is not h1's
		// (HTTP/2) takes it from the map only.
		resp.head.header(h, resp.declared, false)
		wire = false
	}
	if banner != nil && injectable(resp, h, method) {
		return g.deliverWithBanner(w, x, banner)
	}
	if wire {
		fw.WriteHeaderFields(resp.status, resp.head.lines(), resp.declared, resp.date)
	} else {
		w.WriteHeader(resp.status)
	}
	var flush func()
	if f, ok := w.(http.Flusher); ok && (resp.length < 0 || resp.stream) {
		flush = f.Flush
	}
	var n int64
	var err error
	if wire && flush == nil && resp.body == &resp.lb {
		n, err = spliceBody(w, x)
	}
	if err == nil {
		var m int64
		m, err = copyBody(w, resp.body, x, flush)
		n += m
	}
	if err == nil {
		for k, vv := range resp.trailer {
			h[http.TrailerPrefix+k] = vv
		}
	}
	return n, err == nil
}

// copyBody copies a response body. With flush set (a streamed response) it
// flushes whenever the instance has nothing more buffered, so that events
// reach the client as they are sent, without a flush per small read.
func copyBody(w io.Writer, src io.Reader, x *exchange, flush func()) (int64, error) {
	buf := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(buf)
	var total int64
	for {
		var n int
		var rerr error
		if flush != nil {
			n, rerr = src.Read(*buf)
		} else {
			// Not a stream: fill the buffer (or reach the body's end) before
			// writing, for fewer and larger writes.
			n, rerr = readFull(src, *buf)
		}
		if n > 0 {
			if _, werr := w.Write((*buf)[:n]); werr != nil {
				x.clientGone = true
				return total, werr
			}
			total += int64(n)
			if flush != nil && x.conn.br.Buffered() == 0 {
				flush()
			}
		}
		if rerr == io.EOF {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// readFull is io.ReadFull that reports the source's own end: io.EOF when
// the body ended (even short of a full buffer), any other error as is.
// (io.ReadFull turns every early end into io.ErrUnexpectedEOF, which would
// hide a body that really was cut short.)
func readFull(src io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := src.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
