package h1

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// bufferBeforeCommit is how much body a response holds back before it
// must choose its framing: a handler that writes no more than this, sets
// no length and returns gets a Content-Length instead of chunks. After the
// head is sent, it is the size of the chunks small writes are gathered in.
const bufferBeforeCommit = 4 << 10

// response is the http.ResponseWriter of a request. A connection has one,
// reset for each request; handlers must not keep it after ServeHTTP.
//
// The head is written to the connection's buffer in two parts: the status
// line and the handler's headers when the status is set (so later changes
// to the header map have no effect, as with net/http), and the framing and
// Connection headers when the response commits to a framing — when the
// body outgrows the buffer, on Flush, or when the handler returns. Writes
// to the connection's bufio.Writer are not checked one by one: its error
// is sticky, and the Flush that ends each response reports it.
type response struct {
	c    *conn
	req  *http.Request
	body *body // nil without a request body

	header http.Header

	status      int
	wroteHeader bool // the final status is set and the head's first part written
	committed   bool // the framing is chosen and the head complete
	handlerDone bool
	fullDuplex  bool
	isHEAD      bool
	keepAlive10 bool

	// Noted from the handler's header when the status was set.
	declaredLength int64 // its Content-Length, or -1
	connection     []string
	trailerDecl    []string
	trailerKeys    bool // it has keys with http.TrailerPrefix

	contentLength int64 // the length the head announced, or -1
	chunked       bool
	closeAfter    bool // the connection closes after this response
	written       int64
	deadlineSet   bool // the handler set a write deadline

	// pending holds the body before the head is complete, then gathers
	// small writes into chunks. Its buffer (pendingBuf) is taken from
	// pendings on first use and given back with the response.
	pending    []byte
	pendingBuf *[]byte

	// continueMu orders a 100 Continue sent by a body read against the
	// response head written by the handler, which may run concurrently.
	expectContinue  bool // fixed for the request; no lock needed to read
	continueMu      sync.Mutex
	canContinue     bool
	continueSkipped bool // the head went out before any 100 Continue

	// outStart is the connection's output count when this response began
	// (or after its 100 Continue): equal to it now, nothing of the final
	// response has reached the client.
	outStart atomic.Int64

	// fields is what WriteHeaderFields hands over, for writeHeadStart.
	fields wireFields

	scratch [24]byte
}

// FieldsWriter is implemented by the server's http.ResponseWriter. A proxy
// that has read a response head hands its fields over as they go on the
// wire, with no header map in between: its own parse of the head is all
// the work they cost, where filling a map for the server to walk again
// cost a gateway several percent of its CPU time.
type FieldsWriter interface {
	// WriteHeaderFields is WriteHeader(code) for a final status, with
	// fields written after the header map's. fields are whole lines,
	// "Name: value\r\n" each, with valid names and values, and none of
	// Content-Length, Transfer-Encoding or Connection (the server frames
	// the body, from length, the length the head declared or -1, and
	// writes Connection itself from the map), nor Content-Type on a 304.
	// date says fields has a Date line. The caller may reuse fields once
	// the call returns.
	WriteHeaderFields(code int, fields []byte, length int64, date bool)
}

// wireFields is a WriteHeaderFields call's fields, while WriteHeader runs.
type wireFields struct {
	set    bool
	lines  []byte
	length int64
	date   bool
}

var (
	_ http.ResponseWriter = (*response)(nil)
	_ http.Flusher        = (*response)(nil)
	_ http.Hijacker       = (*response)(nil)
)

// reset prepares w for a new request.
func (w *response) reset(req *http.Request, b *body, f framing) {
	*w = response{
		c:              w.c,
		req:            req,
		body:           b,
		header:         w.header,
		isHEAD:         req.Method == "HEAD",
		keepAlive10:    f.keepAlive10,
		declaredLength: -1,
		contentLength:  -1,
		expectContinue: f.expectContinue,
		canContinue:    f.expectContinue,
	}
	w.outStart.Store(w.c.out.n.Load())
	clear(w.header)
}

// Header returns the response header map. Changes after WriteHeader or the
// first Write have no effect, but for trailers.
func (w *response) Header() http.Header { return w.header }

// WriteHeader sets the status. A 1xx status other than 101 is sent at once
// with the current header (103 Early Hints) and may be followed by others;
// a 101 is final and is followed by Hijack.
func (w *response) WriteHeader(code int) {
	if w.c.hijacked.Load() {
		w.c.srv.log().Warn("h1: WriteHeader on a hijacked connection", "remote", w.c.remoteAddr)
		return
	}
	if w.wroteHeader {
		w.c.srv.log().Warn("h1: superfluous WriteHeader call", "remote", w.c.remoteAddr, "status", code)
		return
	}
	if code < 100 || code > 999 {
		panic("h1: invalid WriteHeader code " + strconv.Itoa(code)) // as net/http does
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.writeInterim(code)
		return
	}
	if w.expectContinue {
		w.continueMu.Lock()
		w.continueSkipped = w.canContinue
		w.canContinue = false
		w.continueMu.Unlock()
	}
	w.wroteHeader = true
	w.status = code
	w.writeHeadStart()
}

// WriteHeaderFields implements FieldsWriter. A status that is not a final
// one, or a head already written, is WriteHeader's to answer: fields are
// then left out.
func (w *response) WriteHeaderFields(code int, fields []byte, length int64, date bool) {
	if code >= 200 {
		w.fields = wireFields{set: true, lines: fields, length: length, date: date} // reset with the response
	}
	w.WriteHeader(code)
}

// writeInterim sends a 1xx response now. HTTP/1.0 clients do not expect
// interim responses (RFC 9110 §15.2), so they get none.
func (w *response) writeInterim(code int) {
	if w.req.ProtoMinor == 0 {
		return
	}
	w.continueMu.Lock()
	defer w.continueMu.Unlock()
	if code == http.StatusContinue {
		w.canContinue = false // sent now, not again by a body read
	}
	bw := w.c.writer()
	writeStatusLine(bw, true, code, w.scratch[:0])
	for k, vv := range w.header {
		if k == "Content-Length" || k == "Transfer-Encoding" || !isToken(k) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	bw.WriteString("\r\n")
	w.noteErr(bw.Flush())
}

// writeHeadStart writes the status line, the handler's headers and Date,
// noting the headers that framing depends on.
func (w *response) writeHeadStart() {
	bw := w.c.writer()
	writeStatusLine(bw, w.req.ProtoMinor >= 1, w.status, w.scratch[:0])
	noBody := !bodyAllowedForStatus(w.status)
	hasDate := false
	for k, vv := range w.header {
		switch k {
		case "Content-Length":
			if !noBody {
				w.declaredLength = w.parseDeclaredLength(vv)
			}
			continue // written with the framing
		case "Transfer-Encoding":
			continue // the framing is the server's choice
		case "Connection":
			w.connection = vv
			continue // written with the framing
		case "Content-Type":
			if w.status == http.StatusNotModified {
				continue // RFC 9110 §15.4.5
			}
		case "Date":
			hasDate = true
		case "Trailer":
			w.trailerDecl = vv
		}
		if strings.HasPrefix(k, http.TrailerPrefix) {
			w.trailerKeys = true
			continue
		}
		if !isToken(k) {
			continue // dropped, as net/http does: there is no one to tell
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	if f := &w.fields; f.set {
		bw.Write(f.lines)
		hasDate = hasDate || f.date
		if w.declaredLength < 0 && !noBody {
			w.declaredLength = f.length
		}
	}
	if !hasDate {
		bw.Write(dateHeader())
	}
}

func (w *response) parseDeclaredLength(vv []string) int64 {
	if len(vv) == 0 {
		return -1
	}
	n, err := strconv.ParseUint(trimOWS(vv[0]), 10, 63)
	if err != nil {
		w.c.srv.log().Warn("h1: invalid Content-Length from handler", "value", vv[0])
		return -1
	}
	return int64(n)
}

// commit chooses the framing and completes the head. Before that it reads
// what the handler left of the request body, as net/http does: a client
// that sends its whole request before it reads the response must not be
// left blocked.
func (w *response) commit() {
	if w.committed {
		return
	}
	w.committed = true
	if w.req.Close || hasToken(w.connection, "close") || w.c.srv.draining.Load() {
		w.closeAfter = true
	}
	w.settleBody()
	bw := w.c.writer()
	allowed := bodyAllowedForStatus(w.status)
	switch {
	case !allowed:
	case w.declaredLength >= 0:
		w.contentLength = w.declaredLength
	case w.isHEAD:
		if w.handlerDone && w.written > 0 {
			w.contentLength = w.written
		}
	case w.handlerDone && (w.req.ProtoMinor == 0 || !w.hasTrailers()):
		w.contentLength = w.written // HTTP/1.0 has no trailers to send
	case w.req.ProtoMinor >= 1:
		w.chunked = true
	default:
		w.closeAfter = true // HTTP/1.0: the body ends where the connection does
	}
	if w.contentLength >= 0 {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(w.scratch[:0], w.contentLength, 10))
		bw.WriteString("\r\n")
	} else if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	w.writeConnection()
	bw.WriteString("\r\n")
}

// hasTrailers reports whether the response has trailers to send; keys with
// http.TrailerPrefix may be added after the status is set, so the header
// map is looked at again.
func (w *response) hasTrailers() bool {
	if w.trailerKeys || len(w.trailerDecl) > 0 {
		return true
	}
	for k := range w.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

func (w *response) writeConnection() {
	bw := w.c.writer()
	switch {
	case w.status == http.StatusSwitchingProtocols:
		w.closeAfter = true // unless hijacked: the protocol is no longer ours
		for _, v := range w.connection {
			writeField(bw, "Connection", v)
		}
	case w.closeAfter:
		if w.req.ProtoMinor >= 1 {
			bw.WriteString("Connection: close\r\n")
		}
	case len(w.connection) > 0:
		for _, v := range w.connection {
			writeField(bw, "Connection", v)
		}
	case w.keepAlive10:
		bw.WriteString("Connection: keep-alive\r\n")
	}
}

// settleBody reads the rest of the request body the handler left, within
// maxDrain, so that the connection can carry another request; otherwise
// the connection closes after the response.
func (w *response) settleBody() {
	b := w.body
	switch {
	case b == nil || w.fullDuplex:
	case w.continueSkipped:
		w.closeAfter = true // the client may or may not send the body now
	case w.closeAfter:
	case !b.settle(maxDrain, w.c.drainDeadline):
		w.closeAfter = true
	}
}

// Write writes body bytes, holding them until the head is complete.
func (w *response) Write(p []byte) (int, error) {
	if w.c.hijacked.Load() {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !bodyAllowedForStatus(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	w.written += int64(len(p))
	if w.declaredLength >= 0 && w.written > w.declaredLength {
		return 0, http.ErrContentLength
	}
	if w.isHEAD {
		return len(p), nil
	}
	if !w.committed {
		if w.declaredLength < 0 && len(w.pending)+len(p) <= bufferBeforeCommit {
			w.hold(p)
			return len(p), nil
		}
		w.commit()
	}
	return w.writeBody(p)
}

// WriteString is Write for a string, without copying it first.
func (w *response) WriteString(s string) (int, error) {
	// Write only reads p, and never keeps it past the call.
	return w.Write(unsafe.Slice(unsafe.StringData(s), len(s)))
}

func (w *response) hold(p []byte) {
	if w.pendingBuf == nil {
		w.pendingBuf = pendings.Get().(*[]byte)
		w.pending = (*w.pendingBuf)[:0]
	}
	w.pending = append(w.pending, p...)
}

// pendings hold bodies of responses under way until their heads are
// complete (see hold): a connection takes one only for a response that
// needs it, and gives it back with the response, so that an idle
// connection holds none and the few in use stay in the CPU's cache.
var pendings = sync.Pool{New: func() any { b := make([]byte, 0, bufferBeforeCommit); return &b }}

// releasePending gives the pending buffer back once the response is
// complete. hold never grows it past bufferBeforeCommit.
func (w *response) releasePending() {
	if w.pendingBuf != nil {
		pendings.Put(w.pendingBuf)
		w.pendingBuf, w.pending = nil, nil
	}
}

// writeBody writes p after the head, framed.
func (w *response) writeBody(p []byte) (int, error) {
	if !w.chunked {
		if err := w.emit(); err != nil {
			return 0, err
		}
		n, err := w.c.write(p)
		return n, w.noteErr(err)
	}
	if len(w.pending)+len(p) <= bufferBeforeCommit {
		w.hold(p)
		return len(p), nil
	}
	if err := w.emit(); err != nil {
		return 0, err
	}
	if len(p) < bufferBeforeCommit/2 {
		w.hold(p)
		return len(p), nil
	}
	return len(p), w.writeChunk(p)
}

// emit writes the held body bytes, as one chunk when chunked.
func (w *response) emit() error {
	if len(w.pending) == 0 {
		return nil
	}
	var err error
	if w.chunked {
		err = w.writeChunk(w.pending)
	} else {
		_, err = w.c.writer().Write(w.pending)
	}
	w.pending = w.pending[:0]
	return w.noteErr(err)
}

func (w *response) writeChunk(p []byte) error {
	bw := w.c.writer()
	bw.Write(strconv.AppendUint(w.scratch[:0], uint64(len(p)), 16))
	bw.WriteString("\r\n")
	w.c.write(p) // an error is sticky in bw: the next write reports it
	_, err := bw.WriteString("\r\n")
	return w.noteErr(err)
}

// noteErr makes a failed write close the connection after the handler.
func (w *response) noteErr(err error) error {
	if err != nil {
		w.closeAfter = true
	}
	return err
}

// Flush sends what is buffered: the head and the body so far.
func (w *response) Flush() { _ = w.FlushError() }

// FlushError is Flush that reports a failed write (http.ResponseController).
func (w *response) FlushError() error {
	if w.c.hijacked.Load() {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.commit()
	if err := w.emit(); err != nil {
		return err
	}
	return w.noteErr(w.c.writer().Flush())
}

// finish ends the response when the handler has returned: it completes
// the head and the body, and writes the trailers.
func (w *response) finish() {
	w.handlerDone = true
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	w.commit()
	_ = w.emit() // a failed write is noted: the connection closes
	if w.chunked {
		w.writeTrailers()
	}
	if w.contentLength >= 0 && !w.isHEAD && bodyAllowedForStatus(w.status) && w.written != w.contentLength {
		w.closeAfter = true // the client would read the next response as this body
	}
	w.noteErr(w.c.writer().Flush())
	if w.body != nil && !w.closeAfter && !w.body.settle(maxDrain, w.c.drainDeadline) {
		w.closeAfter = true // a full-duplex handler left its body unread
	}
	if w.deadlineSet {
		_ = w.c.rwc.SetWriteDeadline(time.Time{}) // the handler's, not the next request's; fails only once closed
	}
}

// writeTrailers ends a chunked body: the last chunk, the trailers named
// with http.TrailerPrefix and those declared in the Trailer header.
func (w *response) writeTrailers() {
	bw := w.c.writer()
	bw.WriteString("0\r\n")
	for k, vv := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && isToken(name) {
			for _, v := range vv {
				writeField(bw, http.CanonicalHeaderKey(name), v)
			}
		}
	}
	for _, decl := range w.trailerDecl {
		for decl != "" {
			var k string
			k, decl, _ = cut(decl, ',')
			if k = http.CanonicalHeaderKey(trimOWS(k)); validTrailer(k) {
				for _, v := range w.header[k] {
					writeField(bw, k, v)
				}
			}
		}
	}
	bw.WriteString("\r\n")
}

// Hijack hands the connection to the handler: the server neither reads,
// writes, times out, counts nor closes it afterwards. A status set before
// (101) is sent first. The reader holds bytes the client sent after the
// request head.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c := w.c
	if w.handlerDone {
		return nil, nil, errors.New("h1: Hijack after the handler returned")
	}
	if c.hijacked.Load() {
		return nil, nil, http.ErrHijacked
	}
	if w.wroteHeader {
		if err := w.FlushError(); err != nil {
			return nil, nil, err
		}
	}
	rwc := c.hijack()
	return rwc, bufio.NewReadWriter(c.reader(), c.writer()), nil
}

// SetReadDeadline sets the connection's read deadline, for reading the body
// (http.ResponseController).
func (w *response) SetReadDeadline(t time.Time) error {
	w.c.readDeadline = true
	w.c.idleAt = time.Time{}
	return w.c.rwc.SetReadDeadline(t)
}

// SetWriteDeadline sets the connection's write deadline for this response
// (http.ResponseController); it is cleared when the handler returns.
func (w *response) SetWriteDeadline(t time.Time) error {
	w.deadlineSet = true
	return w.c.rwc.SetWriteDeadline(t)
}

// EnableFullDuplex lets the handler read the request body after the
// response head is sent (http.ResponseController). Reads and writes never
// block each other here; what it changes is that the unread body is no
// longer read away when the head is sent.
func (w *response) EnableFullDuplex() error {
	w.fullDuplex = true
	return nil
}

func bodyAllowedForStatus(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

func validTrailer(k string) bool {
	if strings.HasPrefix(k, "If-") {
		return false
	}
	switch k {
	case "Authorization", "Cache-Control", "Connection", "Content-Encoding", "Content-Length",
		"Content-Range", "Content-Type", "Expect", "Host", "Keep-Alive", "Max-Forwards", "Pragma",
		"Proxy-Authenticate", "Proxy-Authorization", "Proxy-Connection", "Range", "Realm", "Te",
		"Trailer", "Transfer-Encoding", "Www-Authenticate":
		return false
	}
	return isToken(k)
}
