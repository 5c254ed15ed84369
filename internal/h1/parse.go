package h1

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// field locates one header field line in a request head.
type field struct{ k0, k1, v0, v1 int32 }

// scratch is the per-connection storage a parsed request borrows, kept
// from one request to the next so that parsing allocates only the head's
// string.
type scratch struct {
	fields []field
	vals   []string // backing store of the header map's one-value slices
	url    url.URL
}

// release drops storage that one unusual request grew, so that a
// connection does not keep it for its lifetime.
func (s *scratch) release() {
	if cap(s.fields) > 256 {
		s.fields = nil
	}
	if cap(s.vals) > 256 {
		s.vals = nil
	} else {
		// Let go of the last head. Only its own values: those past them
		// were cleared after the head that set them.
		clear(s.vals)
	}
}

// framing is what a request head says about its body and its connection.
type framing struct {
	contentLength  int64 // -1: chunked
	expectContinue bool  // reading the body first sends 100 Continue
	keepAlive10    bool  // HTTP/1.0 with Connection: keep-alive
}

// parseRequest parses a complete request head: the request line, the
// header fields and the blank line that ends them. It fills req (Method,
// URL, Proto*, Header, Host, RequestURI, Close, ContentLength,
// TransferEncoding, Trailer), whose Header must be an empty map, and
// returns how the body is framed.
//
// head is modified: header names are canonicalized in place. All strings
// in req share one copy of head, the only allocation of a common request.
// req.URL points into s. The rules are net/http's, made stricter where
// a lenient parse invites request smuggling (see the package doc).
func parseRequest(head []byte, req *http.Request, s *scratch) (framing, error) {
	head = head[leadingEmptyLines(head):]
	lineEnd, err := scanFields(head, s)
	if err != nil {
		return framing{}, err
	}
	str := string(head)
	if lineEnd > maxRequestLine+1 {
		return framing{}, errURITooLong
	}
	if err := parseRequestLine(trimCR(str[:lineEnd]), req, &s.url); err != nil {
		return framing{}, err
	}
	h := req.Header
	s.vals = s.vals[:0]
	if need := len(s.fields); cap(s.vals) < need {
		s.vals = make([]string, 0, max(need, 16))
	}
	for _, f := range s.fields {
		addValue(h, str[f.k0:f.k1], str[f.v0:f.v1], &s.vals)
	}
	if err := setHost(req); err != nil {
		return framing{}, err
	}
	fixPragma(h, &s.vals)
	return parseFraming(req)
}

// maxEmptyLines is how many empty lines before a request line are skipped.
// A bound keeps the search for a head's end linear in a stream of them.
const maxEmptyLines = 4

// leadingEmptyLines counts the bytes of empty lines before a request line,
// which RFC 9112 §2.2 asks a server to ignore (at least one).
func leadingEmptyLines(b []byte) int {
	n := 0
	for range maxEmptyLines {
		switch {
		case n+1 < len(b) && b[n] == '\r' && b[n+1] == '\n':
			n += 2
		case n < len(b) && b[n] == '\n':
			n++
		default:
			return n
		}
	}
	return n
}

// headEnd returns the length of the request head at the start of b,
// through the blank line that ends it, or -1 if b does not hold it all.
// Scanning resumes near from (a previous call's len(b)), as the bytes
// before it are known to hold no end.
func headEnd(b []byte, from int) int {
	return endFrom(b, max(from-2, leadingEmptyLines(b)))
}

// blockEnd is headEnd for a block of header lines with no request line
// (a trailer).
func blockEnd(b []byte, from int) int {
	return endFrom(b, max(from-2, 0))
}

// endFrom finds the end of the first blank line after a line end at or
// after i.
func endFrom(b []byte, i int) int {
	for {
		j := bytes.IndexByte(b[i:], '\n')
		if j < 0 {
			return -1
		}
		i += j + 1
		switch {
		case i < len(b) && b[i] == '\n':
			return i + 1
		case i+1 < len(b) && b[i] == '\r' && b[i+1] == '\n':
			return i + 2
		}
	}
}

// scanFields validates the header lines of head, canonicalizes their names
// in place and records where each name and value lies. It returns the end
// of the request line.
func scanFields(head []byte, s *scratch) (int, error) {
	lineEnd := bytes.IndexByte(head, '\n')
	if lineEnd < 0 {
		return 0, errRequestLine
	}
	_, err := scanLines(head, lineEnd+1, &s.fields)
	return lineEnd, err
}

// scanLines scans header lines from offset p to the blank line that ends
// them, replacing *fields, and returns the offset after the blank line.
func scanLines(b []byte, p int, fields *[]field) (int, error) {
	*fields = (*fields)[:0]
	for {
		nl := bytes.IndexByte(b[p:], '\n')
		if nl < 0 {
			return 0, errHeaderLine // the caller passes a complete block
		}
		line := b[p : p+nl]
		p += nl + 1
		if len(line) > 0 && line[len(line)-1] == '\r' {
			line = line[:len(line)-1]
		}
		if len(line) == 0 {
			return p, nil
		}
		if len(line) > maxFieldLine {
			return 0, errFieldTooLong
		}
		f, err := scanField(line, int32(p-nl-1))
		if err != nil {
			return 0, err
		}
		*fields = append(*fields, f)
	}
}

// scanField checks one header line (without its line end) found at offset
// base of the head.
func scanField(line []byte, base int32) (field, error) {
	if line[0] == ' ' || line[0] == '\t' {
		return field{}, errFolded
	}
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return field{}, errHeaderLine
	}
	if colon == 0 {
		return field{}, errHeaderName
	}
	upper := true
	for i := 0; i < colon; i++ {
		c := line[i]
		if !tokenByte[c] {
			return field{}, errHeaderName
		}
		if upper && 'a' <= c && c <= 'z' {
			line[i] = c - ('a' - 'A')
		} else if !upper && 'A' <= c && c <= 'Z' {
			line[i] = c + ('a' - 'A')
		}
		upper = c == '-'
	}
	v0, v1 := colon+1, len(line)
	for v0 < v1 && (line[v0] == ' ' || line[v0] == '\t') {
		v0++
	}
	for v1 > v0 && (line[v1-1] == ' ' || line[v1-1] == '\t') {
		v1--
	}
	if framingField(line[:colon]) && (bytes.IndexByte(line[colon+1:v0], '\t') >= 0 || bytes.IndexByte(line[v1:], '\t') >= 0) {
		// Valid whitespace, but nginx answers 501 and other parsers trip
		// on it: a framing field must read the same to every hop.
		return field{}, errHeaderValue
	}
	if !ValidFieldValue(line[v0:v1]) {
		return field{}, errHeaderValue
	}
	return field{base, base + int32(colon), base + int32(v0), base + int32(v1)}, nil
}

// addValue adds a header value, giving a new key a one-element slice cut
// from vals with its capacity capped, so that an append by anyone copies.
func addValue(h http.Header, k, v string, vals *[]string) {
	if vv, ok := h[k]; ok {
		h[k] = append(vv, v)
		return
	}
	*vals = append(*vals, v)
	n := len(*vals)
	h[k] = (*vals)[n-1 : n : n]
}

func trimCR(s string) string {
	if len(s) > 0 && s[len(s)-1] == '\r' {
		return s[:len(s)-1]
	}
	return s
}

// parseRequestLine parses "METHOD SP target SP HTTP/x.y".
func parseRequestLine(line string, req *http.Request, u *url.URL) error {
	method, rest, ok1 := strings.Cut(line, " ")
	target, proto, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 {
		return errRequestLine
	}
	if !isMethod(method) {
		return errMethod
	}
	major, minor, ok := parseVersion(proto)
	if !ok {
		return errVersion
	}
	if major != 1 {
		return errUnsupported
	}
	if err := parseTarget(method, target, u); err != nil {
		return err
	}
	req.Method = method
	req.RequestURI = target
	req.URL = u
	req.ProtoMajor, req.ProtoMinor = major, minor
	switch minor {
	case 0:
		req.Proto = "HTTP/1.0"
	case 1:
		req.Proto = "HTTP/1.1"
	default:
		req.Proto = proto
	}
	return nil
}

// parseVersion parses "HTTP/d.d" as http.ParseHTTPVersion does.
func parseVersion(v string) (major, minor int, ok bool) {
	switch v {
	case "HTTP/1.1":
		return 1, 1, true
	case "HTTP/1.0":
		return 1, 0, true
	}
	if len(v) != len("HTTP/d.d") || v[:5] != "HTTP/" || v[6] != '.' {
		return 0, 0, false
	}
	if !isDigit(v[5]) || !isDigit(v[7]) {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// parseTarget parses the request target into u as url.ParseRequestURI
// does, without the url package (and its allocation) for the common
// origin-form target of plain path bytes.
//
// A gateway forwards requests to an origin, so it refuses the forms that
// only a forward proxy serves: CONNECT (405), and the asterisk form, which
// asks about the server rather than a resource (nginx refuses it too). A fragment is never sent by a
// client (RFC 9112 §3.2), so "#" in a target is refused rather than sent
// on as part of the path.
func parseTarget(method, target string, u *url.URL) error {
	*u = url.URL{}
	switch {
	case method == "CONNECT":
		return errConnect
	case target == "*":
		return errAsterisk
	}
	if plainTarget(target, u) {
		return nil
	}
	if strings.IndexByte(target, '#') >= 0 {
		return errTarget
	}
	p, err := url.ParseRequestURI(target)
	switch {
	case err != nil:
		return errTarget
	case target[0] != '/' && (p.Host == "" || p.User != nil):
		// An absolute-form target names its host after "//": "http:/a",
		// "http:///a" and "http:a" name none, which RFC 9110 §4.2.1 calls
		// invalid. Userinfo ("http://user@host/") is deprecated and
		// refused, as in a Host header (§4.2.4). nginx answers 400 to all.
		return errTarget
	}
	*u = *p
	return nil
}

// plainTarget fills u for "/path?query" when the path has only bytes that
// need no escaping and the query no control bytes; else it reports false.
func plainTarget(target string, u *url.URL) bool {
	if target == "" || target[0] != '/' {
		return false
	}
	path, query, hasQuery := cut(target, '?')
	for i := 0; i < len(path); i++ {
		if !plainPathByte[path[i]] {
			return false
		}
	}
	for i := 0; i < len(query); i++ {
		if c := query[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	u.Path = path
	u.RawQuery = query
	u.ForceQuery = hasQuery && query == ""
	return true
}

// setHost applies net/http's Host rules and removes Host from the header:
// a target in absolute form names the host; else the one Host header does,
// which HTTP/1.1 requires (but for CONNECT).
func setHost(req *http.Request) error {
	hosts, have := req.Header["Host"]
	if len(hosts) > 1 {
		return errManyHosts
	}
	if req.ProtoMinor >= 1 && len(hosts) == 0 && req.Method != "CONNECT" {
		return errNoHost
	}
	if have {
		if len(hosts) == 1 && !validHost(hosts[0]) {
			return errBadHost
		}
		delete(req.Header, "Host")
	}
	req.Host = req.URL.Host
	if req.Host == "" && len(hosts) == 1 {
		req.Host = hosts[0]
	}
	return nil
}

// fixPragma treats "Pragma: no-cache" as "Cache-Control: no-cache" when
// the latter is absent (RFC 7234 §5.4), as net/http does.
func fixPragma(h http.Header, vals *[]string) {
	if p := h["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := h["Cache-Control"]; !ok {
			addValue(h, "Cache-Control", "no-cache", vals)
		}
	}
}

// parseFraming decides how the body is framed and whether the connection
// may carry another request, refusing every ambiguous framing.
func parseFraming(req *http.Request) (framing, error) {
	h := req.Header
	var f framing
	te, chunked := h["Transfer-Encoding"]
	cl, hasCL := h["Content-Length"]
	switch {
	case chunked && req.ProtoMinor == 0:
		return f, errTE10
	case chunked && hasCL:
		return f, errLengthAndTE
	case chunked:
		if len(te) != 1 || !equalFold(te[0], "chunked") {
			return f, errTransferCoding
		}
		delete(h, "Transfer-Encoding")
		req.TransferEncoding = []string{"chunked"}
		req.ContentLength = -1
		if err := declaredTrailer(req); err != nil {
			return f, err
		}
	case hasCL:
		n, err := parseContentLength(cl)
		if err != nil {
			return f, err
		}
		if len(cl) > 1 {
			h["Content-Length"] = cl[:1:1]
		}
		req.ContentLength = n
	}
	f.contentLength = req.ContentLength
	conn := h["Connection"]
	closeReq := hasToken(conn, "close")
	if req.ProtoMinor == 0 {
		f.keepAlive10 = !closeReq && hasToken(conn, "keep-alive")
		closeReq = !f.keepAlive10
	}
	req.Close = closeReq
	if e := h["Expect"]; len(e) > 0 && e[0] != "" {
		// The one expectation, as net/http reads it: a list around it
		// (",100-continue") is not taken for it.
		if !equalFold(trimOWS(e[0]), "100-continue") {
			return f, errExpectation
		}
		f.expectContinue = req.ProtoMinor >= 1 && req.ContentLength != 0
	}
	return f, nil
}

// parseContentLength accepts one value of decimal digits that fits an
// int64.
//
// Two fields, even equal, are refused: RFC 9110 §8.6 lets a recipient
// merge them, but Node, gunicorn and nginx refuse them, and a gateway that
// disagrees with the servers behind it about framing invites smuggling.
func parseContentLength(cl []string) (int64, error) {
	if len(cl) > 1 {
		return 0, errManyLengths
	}
	n, err := strconv.ParseUint(cl[0], 10, 63) // digits only: no sign, no space

	if err != nil {
		return 0, errContentLength
	}
	return int64(n), nil
}

// declaredTrailer moves the Trailer header of a chunked request into
// req.Trailer as keys whose values arrive after the body.
func declaredTrailer(req *http.Request) error {
	vv, ok := req.Header["Trailer"]
	if !ok {
		return nil
	}
	delete(req.Header, "Trailer")
	var t http.Header
	for _, v := range vv {
		for v != "" {
			var k string
			k, v, _ = cut(v, ',')
			if k = trimOWS(k); k == "" {
				continue
			}
			k = http.CanonicalHeaderKey(k)
			switch k {
			case "Transfer-Encoding", "Trailer", "Content-Length":
				return errTrailerKey
			}
			if t == nil {
				t = http.Header{}
			}
			t[k] = nil
		}
	}
	req.Trailer = t
	return nil
}

// framingField reports whether a canonical header name frames the body.
func framingField(name []byte) bool {
	return string(name) == "Content-Length" || string(name) == "Transfer-Encoding"
}

// isMethod reports whether s is a method nginx would pass on: upper-case
// letters, "_" and "-" (every registered method is written so). RFC 9110
// allows any token, but a lower-case "get" is another method than GET,
// which servers behind the gateway read differently.
func isMethod(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('A' <= c && c <= 'Z' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// maxRequestLine bounds a request line, as nginx's default 8 KiB buffer
// does: a longer one gets 414. Far longer targets than any app uses fit.
const maxRequestLine = 8 << 10

// maxFieldLine bounds one header line (and a trailer's, though the
// trailer's whole block is smaller), as nginx's 8 KiB buffer
// does (and Apache's LimitRequestFieldSize and gunicorn's
// limit_request_field_size, 8190 bytes): a longer one gets 431. An app
// behind any of them never sees one, and the whole head's bound
// (Server.MaxHeaderBytes) would let a single field through at 64 KiB.
const maxFieldLine = 8 << 10

// checkRequestLine looks at the start of a head that has not all arrived:
// a request line that is too long, or complete but with no HTTP version
// (HTTP/0.9's "GET /"), is refused at once rather than after the header
// timeout.
func checkRequestLine(buf []byte) error {
	buf = buf[leadingEmptyLines(buf):]
	nl := bytes.IndexByte(buf, '\n')
	if nl < 0 {
		if len(buf) > maxRequestLine {
			return errURITooLong
		}
		return nil
	}
	line := buf[:nl]
	if len(line) > 0 && line[len(line)-1] == '\r' {
		line = line[:len(line)-1]
	}
	if len(line) > maxRequestLine {
		return errURITooLong
	}
	if sp := bytes.LastIndexByte(line, ' '); sp < 0 || !bytes.HasPrefix(line[sp+1:], []byte("HTTP/")) {
		return errRequestLine
	}
	return nil
}
