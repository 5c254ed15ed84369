package h1

import (
	"errors"
	"syscall"
)

// A BodySplicer is the server's http.ResponseWriter on a TCP connection. A
// proxy whose response body waits on another socket, of a known length,
// hands it over whole: the server moves it from that socket to the
// client's in the kernel (Socket.Splice) instead of through the handler's
// buffer.
type BodySplicer interface {
	// SpliceBody writes the next n bytes of src as body. The head must
	// have been written (WriteHeader) with a Content-Length that leaves
	// room for them. It returns how many were sent; an error reading src
	// is a *SourceError, any other the client's. ErrNoSplice means nothing
	// of src was sent and the caller should write the body itself.
	SpliceBody(src syscall.RawConn, n int64) (int64, error)
}

// ErrNoSplice says a body could not be spliced; nothing of it was sent.
var ErrNoSplice = errors.New("h1: body cannot be spliced here")

// SourceError is a failure to read the source of a splice: the other
// side's, not the client's.
type SourceError struct{ Err error }

func (e *SourceError) Error() string { return "splice source: " + e.Err.Error() }
func (e *SourceError) Unwrap() error { return e.Err }

// SpliceBody implements BodySplicer. The head and any body written so far
// go out first.
func (w *response) SpliceBody(src syscall.RawConn, n int64) (int64, error) {
	sock := w.c.out.sock
	if sock == nil || w.c.hijacked.Load() || !w.wroteHeader || w.isHEAD || !bodyAllowedForStatus(w.status) ||
		w.declaredLength < 0 || w.written+n > w.declaredLength {
		return 0, ErrNoSplice
	}
	if err := w.FlushError(); err != nil {
		return 0, err
	}
	sent, err := sock.Splice(src, n)
	w.written += sent
	w.c.out.n.Add(sent)
	if _, fromSrc := err.(*SourceError); err != nil && err != ErrNoSplice && !fromSrc {
		w.noteErr(err)
	}
	return sent, err
}
