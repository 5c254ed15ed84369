package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"

	"github.com/handoff-dev/handoff/internal/h1"
)

// response is an instance's response head, its fields kept as they go
// to the client (wireHead), and its body.
type response struct {
	status int
	length int64 // the body's length, -1 when the body ends with its last chunk or the connection
	// declared is the Content-Length the head declared (-1: none, or one a
	// transfer coding overrides): what a HEAD's answer tells the client.
	declared int64
	chunked  bool
	// untilClose: the body ends with the connection although a length was
	// given (Transfer-Encoding: identity overrides Content-Length).
	untilClose bool
	close      bool      // the instance closes the connection after this response
	date       bool      // the head has a Date
	stream     bool      // an event stream (Content-Type text/event-stream): flushed as it comes
	head       *wireHead // from wireHeads, from the head's reading until putHead
	body       io.Reader
	trailer    http.Header // a chunked body's trailers, once the body has been read
	lb         lengthBody  // body, when framed by length (one allocation less)
}

var errMalformed = errors.New("malformed response from the instance")

// readResponse reads a response head from br into resp, skipping interim
// 1xx responses (but not 101), and sets up its body for the request's
// method. It returns resp.
func readResponse(br *bufio.Reader, resp *response, method string) (*response, error) {
	for {
		if err := readHead(br, resp); err != nil {
			return nil, err
		}
		if resp.status >= 100 && resp.status < 200 && resp.status != http.StatusSwitchingProtocols {
			continue
		}
		resp.frame(br, method)
		return resp, nil
	}
}

// Caps on an instance's response head. A head over either is refused with
// 502, as nginx refuses one larger than its proxy buffer: a broken or
// hostile instance cannot make the gateway hold an unbounded head. A
// single line must also fit the connection's 16 KiB read buffer.
const (
	maxResponseHeadBytes = 64 << 10
	maxResponseFields    = 512
)

// readHead reads the status line and the header lines into resp.
func readHead(br *bufio.Reader, resp *response) error {
	head := resp.head
	if head == nil {
		head = wireHeads.Get().(*wireHead)
	}
	*resp = response{length: -1, declared: -1, head: head} // a 1xx's head is reused
	head.reset()
	line, err := readLine(br)
	if err != nil {
		return err
	}
	// "HTTP/1.1 200 OK": the version, a space, three digits, 100 to 599.
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' || line[9] < '1' || line[9] > '5' {
		return fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	status, err := strconv.Atoi(string(line[9:12])) // line[9] is a digit: no sign
	if err != nil || (len(line) > 12 && line[12] != ' ') {
		return fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	http10 := line[7] == '0'
	resp.status, resp.close = status, http10
	size := len(line)
	var te []string
	var named [][]byte // the tokens of Connection headers, copied: br's lines do not last
	for {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			break
		}
		size += len(line)
		if len(head.fields) >= maxResponseFields || size > maxResponseHeadBytes {
			return fmt.Errorf("%w: the head has over %d fields or %d bytes", errMalformed, maxResponseFields, maxResponseHeadBytes)
		}
		name, value, err := splitField(line)
		if err != nil {
			return err
		}
		drop := true // framing and hop-by-hop fields: the server writes its own
		switch kindOf(name) {
		case fieldContentLength:
			// Digits only, as h1 reads a request's (parseContentLength).
			n, err := strconv.ParseUint(string(value), 10, 63)
			if err != nil || (resp.declared >= 0 && int64(n) != resp.declared) {
				return fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
			resp.declared = int64(n)
		case fieldTransferEncoding:
			te = append(te, string(value))
		case fieldConnection:
			for _, tok := range bytes.Split(value, []byte(",")) {
				tok = trimBlanks(tok)
				switch {
				case bytes.EqualFold(tok, []byte("close")):
					resp.close = true
				case bytes.EqualFold(tok, []byte("keep-alive")):
					if http10 {
						resp.close = false
					}
				case len(tok) > 0:
					named = append(named, bytes.Clone(tok))
				}
			}
		case fieldHop:
		case fieldDate:
			drop, resp.date = false, true
		case fieldContentType:
			drop = status == http.StatusNotModified // RFC 9110 §15.4.5
			resp.stream = bytes.HasPrefix(value, []byte("text/event-stream"))
		default:
			drop = false
		}
		head.add(name, value, drop)
	}
	if named != nil {
		head.dropNamed(named)
	}
	if te != nil {
		if err := resp.transferCoding(te); err != nil {
			return err
		}
		resp.declared = -1 // the transfer coding overrides it (RFC 9112 §6.3)
	}
	resp.length = resp.declared
	return nil
}

// splitField checks one header line and returns its name and its value: a
// name of token bytes, a value with no control byte but HTAB (so no NUL,
// CR or LF can reach the client).
func splitField(line []byte) (name, value []byte, err error) {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return nil, nil, fmt.Errorf("%w: header line %q", errMalformed, line)
	}
	if !h1.ValidFieldName(line[:colon]) {
		return nil, nil, fmt.Errorf("%w: header name %q", errMalformed, line[:colon])
	}
	value = trimBlanks(line[colon+1:])
	if !h1.ValidFieldValue(value) {
		return nil, nil, fmt.Errorf("%w: a control byte in header %q", errMalformed, line[:colon])
	}
	return line[:colon], value, nil
}

// transferCoding applies a response's Transfer-Encoding, which overrides
// any Content-Length (RFC 9112 §6.3). "chunked" alone is the body's
// framing. "identity" (obsolete) leaves the body to end with the
// connection. Any other coding is refused: the gateway removes the header
// (it is hop-by-hop) and could not pass the coding on, so the client would
// get the coded bytes as if they were the content.
func (resp *response) transferCoding(values []string) error {
	var codings []string
	for _, v := range values {
		for _, c := range strings.Split(v, ",") {
			if c = strings.TrimSpace(c); c != "" {
				codings = append(codings, strings.ToLower(c))
			}
		}
	}
	switch {
	case len(codings) == 1 && codings[0] == "chunked":
		resp.chunked = true
	case len(codings) == 1 && codings[0] == "identity":
		resp.untilClose = true
	default:
		return fmt.Errorf("%w: Transfer-Encoding %q", errMalformed, strings.Join(values, ", "))
	}
	return nil
}

// frame sets up the body: none for HEAD and bodiless statuses, chunked,
// of a known length, or until the instance closes the connection.
func (resp *response) frame(br *bufio.Reader, method string) {
	switch {
	case method == http.MethodHead || resp.status == http.StatusNoContent || resp.status == http.StatusNotModified || resp.status < 200:
		if resp.length > 0 || resp.chunked || resp.untilClose {
			// Bare WSGI and PSGI servers send the body of a HEAD answer
			// anyway: bytes that would be read as the next response's
			// head. The connection is not used again.
			resp.close = true
		}
		resp.length, resp.chunked, resp.body = 0, false, http.NoBody
	case resp.untilClose:
		resp.close, resp.body = true, br
	case resp.chunked:
		resp.body = &chunkedBody{r: httputil.NewChunkedReader(br), br: br, resp: resp}
	case resp.length >= 0:
		resp.lb = lengthBody{r: br, n: resp.length}
		resp.body = &resp.lb
	default:
		resp.close = true
		resp.body = br
	}
}

// readLine reads one header line without its CRLF. Lines longer than the
// reader's buffer are refused.
func readLine(br *bufio.Reader) ([]byte, error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return nil, fmt.Errorf("%w: a header line is too long", errMalformed)
		}
		return nil, err
	}
	return trimEOL(line), nil
}

// trimEOL is bytes.TrimRight(line, "\r\n") without building the cutset's
// set on every call (a few percent of the proxy's own CPU time, once per
// header line).
func trimEOL(line []byte) []byte {
	n := len(line)
	for n > 0 && (line[n-1] == '\r' || line[n-1] == '\n') {
		n--
	}
	return line[:n]
}

// trimBlanks is bytes.Trim(v, " \t"), as trimEOL.
func trimBlanks(v []byte) []byte {
	i, j := 0, len(v)
	for i < j && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	for j > i && (v[j-1] == ' ' || v[j-1] == '\t') {
		j--
	}
	return v[i:j]
}

// chunkedBody reads a chunked body and then its trailer section.
type chunkedBody struct {
	r      io.Reader
	br     *bufio.Reader
	resp   *response
	fields int
}

// trailerForbidden names the fields a trailer may not carry: they frame,
// route, authenticate or control the response, and a client that merged
// them after the body could be misled (RFC 9110 §6.5.1). They are dropped.
var trailerForbidden = map[string]bool{
	"Content-Length": true, "Transfer-Encoding": true, "Trailer": true, "Host": true, "Connection": true,
	"Keep-Alive": true, "Te": true, "Upgrade": true, "Content-Type": true, "Content-Encoding": true,
	"Content-Range": true, "Cache-Control": true, "Expires": true, "Date": true, "Age": true, "Vary": true,
	"Location": true, "Retry-After": true, "Set-Cookie": true, "Authorization": true,
	"Www-Authenticate": true, "Proxy-Authenticate": true, "Proxy-Authorization": true,
	"Content-Security-Policy": true, "Strict-Transport-Security": true,
}

func trailerAllowed(k string) bool { return !trailerForbidden[k] }

func (c *chunkedBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		if terr := c.readTrailer(); terr != nil {
			return n, terr
		}
	}
	return n, err
}

func (c *chunkedBody) readTrailer() error {
	for {
		line, err := readLine(c.br)
		if err != nil {
			return err
		}
		if len(line) == 0 {
			return nil
		}
		if c.fields++; c.fields > maxResponseFields {
			return fmt.Errorf("%w: over %d trailer fields", errMalformed, maxResponseFields)
		}
		name, value, err := splitField(line)
		if err != nil {
			return err
		}
		key := canonicalKey(name)
		if !trailerAllowed(key) {
			continue // framing, routing, auth and the like may not come late (RFC 9110 §6.5.1)
		}
		if c.resp.trailer == nil {
			c.resp.trailer = http.Header{}
		}
		c.resp.trailer[key] = append(c.resp.trailer[key], string(value))
	}
}

// commonKeys maps header names as instances usually write them to their
// canonical form, so that the common ones cost no allocation.
var commonKeys = map[string]string{}

func init() {
	for _, k := range []string{
		"Accept-Ranges", "Age", "Cache-Control", "Connection", "Content-Disposition", "Content-Encoding",
		"Content-Language", "Content-Length", "Content-Security-Policy", "Content-Type", "Date", "Etag", "ETag",
		"Expires", "Keep-Alive", "Last-Modified", "Link", "Location", "Pragma", "Referrer-Policy", "Retry-After",
		"Server", "Set-Cookie", "Strict-Transport-Security", "Trailer", "Transfer-Encoding", "Vary", "Via",
		"Www-Authenticate", "X-Content-Type-Options", "X-Frame-Options", "X-Instance", "X-Release", "X-Request-Id",
	} {
		canon := textproto.CanonicalMIMEHeaderKey(k)
		commonKeys[k] = canon
		commonKeys[string(bytes.ToLower([]byte(k)))] = canon
	}
}

func canonicalKey(b []byte) string {
	if k, ok := commonKeys[string(b)]; ok {
		return k
	}
	return textproto.CanonicalMIMEHeaderKey(string(b))
}

// lengthBody reads a body of a known length; an instance that closes
// before the end is an error (io.ErrUnexpectedEOF), never a shorter body
// passed off as the whole.
type lengthBody struct {
	r io.Reader
	n int64
}

func (b *lengthBody) Read(p []byte) (int, error) {
	if b.n <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.n {
		p = p[:b.n]
	}
	n, err := b.r.Read(p)
	b.n -= int64(n)
	switch {
	case b.n == 0:
		err = io.EOF
	case err == io.EOF:
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
