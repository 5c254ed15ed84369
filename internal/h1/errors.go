package h1

import (
	"net/http"
	"strconv"
)

// requestError is a request the server refuses before a handler sees it:
// the status of the short response it gets, and a reason that never echoes
// the client's bytes. The connection is closed after the response.
type requestError struct {
	status int
	reason string
}

func (e *requestError) Error() string {
	return strconv.Itoa(e.status) + " " + http.StatusText(e.status) + ": " + e.reason
}

// The refusals. They are values, so that refusing allocates nothing.
var (
	errRequestLine     = &requestError{http.StatusBadRequest, "malformed request line"}
	errMethod          = &requestError{http.StatusBadRequest, "invalid method"}
	errVersion         = &requestError{http.StatusBadRequest, "malformed HTTP version"}
	errUnsupported     = &requestError{http.StatusHTTPVersionNotSupported, "unsupported protocol version"}
	errTarget          = &requestError{http.StatusBadRequest, "invalid request target"}
	errAsterisk        = &requestError{http.StatusBadRequest, "the target * is not served here"}
	errURITooLong      = &requestError{http.StatusRequestURITooLong, "request line too long"}
	errConnect         = &requestError{http.StatusMethodNotAllowed, "CONNECT is not served here"}
	errFolded          = &requestError{http.StatusBadRequest, "obsolete line folding or leading whitespace in header"}
	errHeaderLine      = &requestError{http.StatusBadRequest, "malformed header line"}
	errHeaderName      = &requestError{http.StatusBadRequest, "invalid header name"}
	errHeaderValue     = &requestError{http.StatusBadRequest, "invalid header value"}
	errNoHost          = &requestError{http.StatusBadRequest, "missing required Host header"}
	errManyHosts       = &requestError{http.StatusBadRequest, "too many Host headers"}
	errBadHost         = &requestError{http.StatusBadRequest, "malformed Host header"}
	errContentLength   = &requestError{http.StatusBadRequest, "invalid Content-Length"}
	errManyLengths     = &requestError{http.StatusBadRequest, "more than one Content-Length header"}
	errLengthAndTE     = &requestError{http.StatusBadRequest, "both Content-Length and Transfer-Encoding"}
	errTE10            = &requestError{http.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request"}
	errTransferCoding  = &requestError{http.StatusNotImplemented, "unsupported transfer encoding"}
	errTrailerKey      = &requestError{http.StatusBadRequest, "bad trailer key"}
	errExpectation     = &requestError{http.StatusExpectationFailed, "unsupported expectation"}
	errHeaderTooLarge  = &requestError{http.StatusRequestHeaderFieldsTooLarge, "request header too large"}
	errFieldTooLong    = &requestError{http.StatusRequestHeaderFieldsTooLarge, "request header field too long"}
	errTrailerTooLarge = &requestError{http.StatusRequestHeaderFieldsTooLarge, "request trailer too large"}
	errAborted         = &requestError{http.StatusBadGateway, "the response failed before it began"}
	errTooManyConns    = &requestError{http.StatusServiceUnavailable, "too many connections; try again shortly"}
)

// response renders the refusal as a complete response that closes the
// connection (as net/http words its own).
func (e *requestError) response() []byte { return e.responseFor(false) }

// responseFor renders the refusal, without its body for a HEAD request.
// A 503 says when to try again.
func (e *requestError) responseFor(head bool) []byte {
	text := http.StatusText(e.status)
	body := strconv.Itoa(e.status) + " " + text + ": " + e.reason
	extra := ""
	if e.status == http.StatusServiceUnavailable {
		extra = "Retry-After: 1\r\n"
	}
	out := "HTTP/1.1 " + strconv.Itoa(e.status) + " " + text +
		"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n" + extra + "Content-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n"
	if !head {
		out += body
	}
	return []byte(out)
}
