package gateway

import (
	"net/http"

	"github.com/handoff-dev/handoff/internal/h1"
)

// spliceMin is the least body, beyond what came in with the head, that is
// spliced from the instance's socket to the client's (h1.BodySplicer)
// rather than copied through the gateway: below it the copies cost less
// than the pipe's two extra system calls.
const spliceMin = 16 << 10

// spliceBody sends the rest of a body of known length from the instance's
// socket to the client's in the kernel, when both are sockets that can and
// the body is long enough to gain by it; the bytes that came in with the
// head go first, from the buffer. It returns how many bytes it sent and
// leaves the rest, if any, to copyBody. A read error is the instance's; a
// write error marks the client gone.
func spliceBody(w http.ResponseWriter, x *exchange) (int64, error) {
	lb, br := &x.resp.lb, x.conn.br
	bs, ok := w.(h1.BodySplicer)
	if !ok || x.conn.raw == nil || lb.n-int64(br.Buffered()) < spliceMin {
		return 0, nil
	}
	var n int64
	if b := br.Buffered(); b > 0 {
		p, _ := br.Peek(b) // b < lb.n: all of it is this body's
		if _, err := w.Write(p); err != nil {
			x.clientGone = true
			return 0, err
		}
		br.Discard(b)
		lb.n -= int64(b)
		n = int64(b)
	}
	m, err := bs.SpliceBody(x.conn.raw, lb.n)
	lb.n -= m
	x.conn.count.n += m
	n += m
	se, fromSrc := err.(*h1.SourceError)
	switch {
	case err == h1.ErrNoSplice:
		return n, nil
	case fromSrc:
		return n, se.Err
	case err != nil:
		x.clientGone = true
	}
	return n, err
}
