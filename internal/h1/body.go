package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// maxDrain is how much of a request body the handler left unread is read
// away to keep the connection; a longer rest closes it (as net/http).
const maxDrain = 256 << 10

// body is a request body, bounded by its Content-Length or dechunked. Its
// reads may run on another goroutine than the handler's writes; a mutex
// orders them against the server reading the rest away. It is closed when
// the handler returns: a reader left behind gets an error, never the next
// request's bytes.
type body struct {
	mu        sync.Mutex
	br        *bufio.Reader
	rwc       net.Conn      // for the read deadline of each read
	timeout   time.Duration // Server.BodyTimeout
	w         *response     // sends 100 Continue on the first read
	req       *http.Request // receives the trailers
	chunks    io.Reader     // the dechunker; nil when framed by length
	remaining int64         // framed by length: bytes not yet read
	closed    bool
	eof       bool
	err       error // sticky: the framing broke or the connection failed
}

func newBody(c *conn, f framing) *body {
	b := &body{br: c.br, rwc: c.rwc, timeout: c.srv.BodyTimeout, w: &c.w, req: &c.req, remaining: f.contentLength}
	if f.contentLength < 0 {
		b.chunks = newChunkedReader(c.br)
	}
	return b
}

// Read reads the body. The first read of a request that expects it sends
// 100 Continue.
func (b *body) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	return b.readLocked(p)
}

// Close stops the handler's reads; the server reads the rest away or
// closes the connection.
func (b *body) Close() error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	return nil
}

func (b *body) readLocked(p []byte) (int, error) {
	if b.eof {
		return 0, io.EOF
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.w.expectContinue {
		b.w.sendContinue()
	}
	if len(p) == 0 {
		return 0, nil
	}
	if b.timeout > 0 {
		// The client has this long to send more: a body that stops coming
		// fails with os.ErrDeadlineExceeded instead of holding the request.
		// (Set even when bytes are buffered: the dechunker may read past
		// them within this one Read.)
		_ = b.rwc.SetReadDeadline(time.Now().Add(b.timeout)) // fails only once closed; the read says so
	}
	if b.chunks != nil {
		return b.readChunked(p)
	}
	return b.readLength(p)
}

func (b *body) readLength(p []byte) (int, error) {
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining]
	}
	n, err := b.br.Read(p)
	b.remaining -= int64(n)
	if b.remaining == 0 {
		b.eof = true
		return n, io.EOF // with the last bytes: the caller need not read again
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	b.err = err
	return n, err
}

func (b *body) readChunked(p []byte) (int, error) {
	n, err := b.chunks.Read(p)
	if err == io.EOF {
		if err := readTrailer(b.br, b.req); err != nil {
			b.err = err
			return n, err
		}
		b.eof = true
		return n, io.EOF
	}
	b.err = err
	return n, err
}

// settle reads away the rest of the body when it is at most limit bytes,
// with deadline bounding the wait for a slow client. It reports whether
// the body was read to its end, so that the connection can be reused.
func (b *body) settle(limit int64, deadline func()) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.eof:
		return true
	case b.err != nil, b.chunks == nil && b.remaining > limit:
		return false
	}
	deadline()
	_, err := io.CopyN(io.Discard, lockedBody{b}, limit+1)
	return err == io.EOF
}

// lockedBody reads a body whose mutex the caller holds.
type lockedBody struct{ b *body }

func (l lockedBody) Read(p []byte) (int, error) { return l.b.readLocked(p) }

// done reports whether the body was read to its end.
func (b *body) done() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.eof
}

// sendContinue writes "100 Continue" unless the response head went first.
func (w *response) sendContinue() {
	w.continueMu.Lock()
	defer w.continueMu.Unlock()
	if !w.canContinue {
		return
	}
	w.canContinue = false
	bw := w.c.writer()
	bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	if err := bw.Flush(); err != nil {
		w.c.srv.log().Debug("h1: write 100 Continue", "remote", w.c.remoteAddr, "error", err)
	}
	w.outStart.Store(w.c.out.n.Load()) // an interim response: the final one has not begun
}

var errTrailer = errors.New("h1: malformed request trailer")

// readTrailer reads the trailer section after the last chunk into
// req.Trailer. It must fit in the read buffer, as with net/http.
func readTrailer(br *bufio.Reader, req *http.Request) error {
	buf, err := br.Peek(2)
	switch {
	case bytes.HasPrefix(buf, []byte("\r\n")):
		_, err = br.Discard(2)
		return err
	case bytes.HasPrefix(buf, []byte("\n")):
		_, err = br.Discard(1)
		return err
	case err != nil:
		return io.ErrUnexpectedEOF
	}
	block, err := peekBlock(br)
	if err != nil {
		return err
	}
	var fields []field
	if _, err := scanLines(block, 0, &fields); err != nil {
		return errTrailer
	}
	s := string(block)
	if req.Trailer == nil {
		req.Trailer = http.Header{}
	}
	for _, f := range fields {
		req.Trailer[s[f.k0:f.k1]] = append(req.Trailer[s[f.k0:f.k1]], s[f.v0:f.v1])
	}
	_, err = br.Discard(len(block))
	return err
}

// peekBlock waits for a block of header lines that ends with a blank line
// to be buffered, and returns it, still buffered.
func peekBlock(br *bufio.Reader) ([]byte, error) {
	from := 0
	for {
		buf, _ := br.Peek(br.Buffered())
		if end := blockEnd(buf, from); end >= 0 {
			return buf[:end], nil
		}
		if len(buf) == br.Size() {
			return nil, errTrailerTooLarge
		}
		from = len(buf)
		if _, err := br.Peek(len(buf) + 1); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// drainDeadline bounds reading away an unread body.
func (c *conn) drainDeadline() {
	d := c.srv.ReadHeaderTimeout
	if d <= 0 {
		d = defaultDrainTimeout
	}
	c.setReadDeadline(time.Now().Add(d))
}

const defaultDrainTimeout = 10 * time.Second
