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
)

// response is an instance's response head, read straight into the
// client's header map: the instance's headers are the client's headers
// (less the hop-by-hop ones, removed on delivery), so they are parsed once,
// into the map the response writer will send, with no map in between.
type response struct {
	status  int
	length  int64 // the body's length, -1 when the body ends with its last chunk or the connection
	chunked bool
	close   bool // the instance closes the connection after this response
	body    io.Reader
	trailer http.Header // a chunked body's trailers, once the body has been read
	keep    []string    // headers a Connection header names: hop-by-hop too
}

var errMalformed = errors.New("malformed response from the instance")

// readResponse reads a response head from br into h, skipping interim 1xx
// responses (but not 101), and sets up its body for the request's method.
func readResponse(br *bufio.Reader, h http.Header, method string) (*response, error) {
	for {
		resp, err := readHead(br, h)
		if err != nil {
			clear(h)
			return nil, err
		}
		if resp.status >= 100 && resp.status < 200 && resp.status != http.StatusSwitchingProtocols {
			clear(h)
			continue
		}
		resp.frame(br, h, method)
		return resp, nil
	}
}

// readHead reads the status line and the header lines.
func readHead(br *bufio.Reader, h http.Header) (*response, error) {
	line, err := readLine(br)
	if err != nil {
		return nil, err
	}
	// "HTTP/1.1 200 OK": the version, a space, three digits.
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return nil, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil || status < 100 || (len(line) > 12 && line[12] != ' ') {
		return nil, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	http10 := line[7] == '0'
	resp := &response{status: status, length: -1, close: http10}
	for {
		line, err := readLine(br)
		if err != nil {
			return nil, err
		}
		if len(line) == 0 {
			return resp, nil
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
			return nil, fmt.Errorf("%w: header line %q", errMalformed, line)
		}
		key := canonicalKey(line[:colon])
		value := string(bytes.TrimSpace(line[colon+1:]))
		switch key {
		case "Content-Length":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 0 || (resp.length >= 0 && n != resp.length) {
				return nil, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
			resp.length = n
		case "Transfer-Encoding":
			resp.chunked = true // a response can only end its chunked coding last
		case "Connection":
			for _, tok := range bytes.Split([]byte(value), []byte(",")) {
				tok = bytes.TrimSpace(tok)
				switch {
				case bytes.EqualFold(tok, []byte("close")):
					resp.close = true
				case bytes.EqualFold(tok, []byte("keep-alive")):
					if http10 {
						resp.close = false
					}
				case len(tok) > 0:
					resp.keep = append(resp.keep, textproto.CanonicalMIMEHeaderKey(string(tok)))
				}
			}
		}
		h[key] = append(h[key], value)
	}
}

// frame sets up the body: none for HEAD and bodiless statuses, chunked,
// of a known length, or until the instance closes the connection.
func (resp *response) frame(br *bufio.Reader, h http.Header, method string) {
	switch {
	case method == http.MethodHead || resp.status == http.StatusNoContent || resp.status == http.StatusNotModified || resp.status < 200:
		resp.length, resp.chunked, resp.body = 0, false, http.NoBody
	case resp.chunked:
		resp.length = -1
		delete(h, "Content-Length")
		resp.body = &chunkedBody{r: httputil.NewChunkedReader(br), br: br, resp: resp}
	case resp.length >= 0:
		resp.body = io.LimitReader(br, resp.length)
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
	return bytes.TrimRight(line, "\r\n"), nil
}

// chunkedBody reads a chunked body and then its trailer section.
type chunkedBody struct {
	r    io.Reader
	br   *bufio.Reader
	resp *response
}

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
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return fmt.Errorf("%w: trailer line %q", errMalformed, line)
		}
		if c.resp.trailer == nil {
			c.resp.trailer = http.Header{}
		}
		key := canonicalKey(line[:colon])
		c.resp.trailer[key] = append(c.resp.trailer[key], string(bytes.TrimSpace(line[colon+1:])))
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
