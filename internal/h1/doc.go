// Package h1 is a hand-written HTTP/1.1 server for the gateway's
// listeners: it hands ordinary *http.Request and http.ResponseWriter values
// to an http.Handler, so the gateway keeps one code path, at a fraction of
// net/http's server cost per request. Connections that open with the
// HTTP/2 preface (h2c prior knowledge) are handed to a standard
// http.Server.
//
// Where the cost goes away: no goroutine or read per request besides the
// connection's own (net/http runs a background read to detect a client
// that leaves); the request head is parsed in place from the read buffer
// into one string; the request, its header map and the response writer
// are reused from one request to the next, while the read and write
// buffers are taken per request (an idle kept-alive connection holds
// neither); deadlines are set once per phase; a small response is written with one write, head and body
// together; a proxy may hand over a large body that waits on another
// socket (BodySplicer), and it goes from socket to socket in the kernel.
//
// # Contracts that differ from net/http
//
//   - A handler must not keep the *http.Request, its Header, its Body or the
//     ResponseWriter after ServeHTTP returns: the connection reuses them for
//     its next request. (The gateway does not keep them.)
//   - r.Context() belongs to the connection, not to the request: it is
//     cancelled when the connection ends or the server closes, not when
//     ServeHTTP returns, and a client that disconnects in the middle of a
//     request is not noticed until the response is written. Noticing it
//     costs a goroutine and a pending read per request, which is most of
//     what this package saves. The context carries
//     http.LocalAddrContextKey, not http.ServerContextKey.
//   - Requests are refused more strictly, with a short response and the
//     connection closed: both Content-Length and Transfer-Encoding (400;
//     net/http drops the Content-Length), Transfer-Encoding in an HTTP/1.0
//     request (400; net/http ignores it), obsolete line folding (400;
//     net/http joins the lines). Up to four empty lines before a request
//     line are skipped (RFC 9112 §2.2; net/http skips them only after a
//     POST).
//   - No Content-Type is sniffed when the handler sets none (the gateway
//     passes the instance's). Response headers go out in map order, not
//     sorted. A handler's Transfer-Encoding header is ignored: the server
//     chooses the framing. A Content-Length computed for a HEAD response
//     counts everything the handler wrote, not only its first 2 KiB.
//   - Trailers named with http.TrailerPrefix after the status was set are
//     sent even when the body is short enough for a Content-Length (the
//     response is then chunked); net/http drops them in that case.
//   - 1xx responses are not sent to HTTP/1.0 clients (RFC 9110 §15.2).
//   - An aborted response (panic(http.ErrAbortHandler)) whose body only the
//     connection's end delimits ends with a TCP reset, not a clean close,
//     so that the client cannot take the part for the whole.
//   - Closing a connection with request bytes unread (a refused request, a
//     body too long to read away) is a lingering close: the server stops
//     writing and reads for up to 500 ms, so that the kernel does not reset
//     the connection before the client has read the response.
//   - Shutdown does not close idle connections early: they close at their
//     idle timeout, or after one more response that says
//     "Connection: close" (see Drain). HTTP/2 connections get GOAWAY.
//   - Not supported: TLS (Request.TLS is always nil), http.CloseNotifier,
//     io.ReaderFrom on the writer (sendfile; BodySplicer is its proxy's
//     counterpart), ReadTimeout and WriteTimeout
//     (a handler may set deadlines with http.ResponseController), the h2c
//     upgrade from HTTP/1.1 (only prior knowledge).
package h1
