package gateway

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// hopHeaders belong to one connection, not to the message (RFC 9110 §7.6.1),
// and are never forwarded. Expect is handled here: the server sends the
// 100 Continue itself when the body is first read.
var hopHeaders = [...]string{
	"Connection", "Keep-Alive", "Proxy-Connection",
	"Proxy-Authenticate", "Proxy-Authorization", "Te",
	"Trailer", "Transfer-Encoding", "Upgrade", "Expect",
}

// isHop reports whether k is one of hopHeaders. A switch, not a map: it is
// asked for every header of every request and response, and a map lookup
// (hashing the name) cost about twice as much.
func isHop(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection",
		"Proxy-Authenticate", "Proxy-Authorization", "Te",
		"Trailer", "Transfer-Encoding", "Upgrade", "Expect":
		return true
	}
	return false
}

// Headers the gateway sets itself; a client's own values are replaced.
const (
	hdrReadOnly = "Handoff-Read-Only"
	hdrXFF      = "X-Forwarded-For"
	hdrXFHost   = "X-Forwarded-Host"
	hdrXFProto  = "X-Forwarded-Proto"
)

// AdminCookie is the dashboard's session cookie. Browsers send a host's
// cookies to every port of it, so an app behind the gateway on the same host
// would receive it: the gateway takes it out of the requests it forwards.
const AdminCookie = "handoff_session"

// outbound is what the gateway adds to or changes in a forwarded request.
type outbound struct {
	readOnly bool
	upgrade  string // the Upgrade header's value on a tunnel request
}

// hasBody reports whether r carries a request body to forward.
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// connectionTokens lists the headers a Connection header names; they are
// hop-by-hop too.
func connectionTokens(h http.Header) []string {
	var out []string
	for _, v := range h["Connection"] {
		for _, tok := range strings.Split(v, ",") {
			if tok = strings.TrimSpace(tok); tok != "" {
				out = append(out, http.CanonicalHeaderKey(tok))
			}
		}
	}
	return out
}

func listed(list []string, key string) bool {
	for _, k := range list {
		if k == key {
			return true
		}
	}
	return false
}

// writeHead appends the request line and headers of r as it goes to the
// instance. Header values arrive validated by the server; the values added
// here come from the connection, not from the client.
func writeHead(b []byte, r *http.Request, o outbound) []byte {
	b = append(b, r.Method...)
	b = append(b, ' ')
	b = append(b, requestURI(r)...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.Host...)
	b = append(b, "\r\n"...)
	tokens := connectionTokens(r.Header)
	for k, vv := range r.Header {
		switch {
		case isHop(k), k == "Content-Length", k == hdrReadOnly, k == hdrXFF, k == hdrXFHost, k == hdrXFProto:
			continue // the gateway frames the body and sets its own headers
		case strings.IndexByte(k, '_') >= 0:
			// CGI-style servers (WSGI, Rack, PHP) read "X_Forwarded_For" as
			// X-Forwarded-For: a client could forge what the gateway sets.
			// nginx drops such names too (underscores_in_headers off).
			continue
		case tokens != nil && listed(tokens, k):
			continue
		}
		for _, v := range vv {
			if k == "Cookie" {
				if v = withoutCookie(v, AdminCookie); v == "" {
					continue
				}
			}
			b = appendHeader(b, k, v)
		}
	}
	client := clientIP(r)
	if prior := r.Header[hdrXFF]; len(prior) > 0 {
		client = strings.Join(prior, ", ") + ", " + client
	}
	b = appendHeader(b, hdrXFF, client)
	b = appendHeader(b, hdrXFHost, r.Host)
	if r.TLS != nil {
		b = appendHeader(b, hdrXFProto, "https")
	} else {
		b = appendHeader(b, hdrXFProto, "http")
	}
	if o.readOnly {
		b = appendHeader(b, hdrReadOnly, "1")
	}
	if o.upgrade != "" {
		b = appendHeader(b, "Connection", "Upgrade")
		b = appendHeader(b, "Upgrade", o.upgrade)
	}
	switch {
	case hasBody(r) && r.ContentLength > 0:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, r.ContentLength, 10)
		b = append(b, "\r\n"...)
	case hasBody(r):
		b = appendHeader(b, "Transfer-Encoding", "chunked")
		if keys := trailerKeys(r); keys != "" {
			b = appendHeader(b, "Trailer", keys)
		}
	case r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch:
		b = appendHeader(b, "Content-Length", "0")
	}
	return append(b, "\r\n"...)
}

func appendHeader(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	b = append(b, v...)
	return append(b, "\r\n"...)
}

// headBufs hold a request head from its writing until it is on the wire:
// taken for each request and given back before the wait for the answer,
// so that the few in use stay in the CPU's cache. (A write buffer per
// upstream connection was 16 KiB that hundreds of connections took turns
// on, each cold when its turn came.)
var headBufs = sync.Pool{New: func() any { b := make([]byte, 0, 2<<10); return &b }}

// releaseHead gives a head's buffer back, unless it grew past what most
// heads need.
func releaseHead(hb *[]byte, head []byte) {
	if cap(head) <= 16<<10 {
		*hb = head[:0]
		headBufs.Put(hb)
	}
}

// requestURI is the target as the client sent it, so that the instance sees
// the same encoding of the path; absolute-form targets become origin-form.
func requestURI(r *http.Request) string {
	if u := r.RequestURI; u != "" && (u[0] == '/' || u == "*") {
		return u
	}
	return r.URL.RequestURI()
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// writeBody sends the request body, chunked when its length is unknown,
// with the trailer the client sent after its last chunk; flush writes what
// bw holds at the end.
func writeBody(bw *bufio.Writer, r *http.Request, body io.Reader, buf []byte, flush func() error) error {
	if length := r.ContentLength; length > 0 {
		if _, err := io.CopyBuffer(bw, io.LimitReader(body, length), buf); err != nil {
			return err
		}
		return flush()
	}
	cw := httputil.NewChunkedWriter(bw)
	if _, err := io.CopyBuffer(cw, body, buf); err != nil {
		return err
	}
	if err := cw.Close(); err != nil {
		return err
	}
	var trailer []byte
	for k, vv := range r.Trailer { // complete once the body has been read
		if forwardedTrailer(k) {
			for _, v := range vv {
				trailer = appendHeader(trailer, k, v)
			}
		}
	}
	if _, err := bw.Write(append(trailer, "\r\n"...)); err != nil {
		return err
	}
	return flush()
}

// forwardedTrailer reports whether a request trailer field goes on to the
// instance: not one that frames, routes or authenticates (RFC 9110
// §6.5.1), and not one whose name a CGI-style server would misread.
func forwardedTrailer(k string) bool {
	return trailerAllowed(k) && strings.IndexByte(k, '_') < 0 && k != hdrReadOnly && k != hdrXFF && k != hdrXFHost && k != hdrXFProto
}

// trailerKeys is the Trailer header for the instance: the fields the client
// declared that will be forwarded.
func trailerKeys(r *http.Request) string {
	var keys []string
	for k := range r.Trailer {
		if forwardedTrailer(k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

// idempotent methods may be sent twice without changing their effect
// (RFC 9110 §9.2.2); a client's Idempotency-Key says the same of any request.
func idempotent(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return r.Header.Get("Idempotency-Key") != "" || r.Header.Get("X-Idempotency-Key") != ""
}

// withoutCookie removes the named cookie from a Cookie header's value.
func withoutCookie(header, name string) string {
	if !strings.Contains(header, name+"=") {
		return header
	}
	var kept []string
	for _, c := range strings.Split(header, ";") {
		if c = strings.TrimSpace(c); c != "" && !strings.HasPrefix(c, name+"=") {
			kept = append(kept, c)
		}
	}
	return strings.Join(kept, "; ")
}
