package h1

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// chunkedReader reads a chunked request body (RFC 9112 §7.1) strictly:
// every line ends with CRLF, a chunk size is 1 to 10 hex digits (at most
// 1 TiB), and a chunk extension must follow the grammar — name, optional
// "=" and a token or a complete quoted string. net/http's reader skips
// extensions unread, so an unterminated quote reaches the app as valid
// where nginx refuses it; differing readings of a body's framing are how
// requests are smuggled. The trailer section after the last chunk is left
// to the caller (readTrailer).
type chunkedReader struct {
	br       *bufio.Reader
	n        int64 // bytes left in the current chunk
	needCRLF bool  // the current chunk's data is read; its CRLF is not
	err      error // sticky: io.EOF after the last chunk, or what broke
}

// maxChunkHexDigits bounds a chunk size: 10 hex digits is 1 TiB.
const maxChunkHexDigits = 10

var errChunked = errors.New("h1: malformed chunked body")

func newChunkedReader(br *bufio.Reader) *chunkedReader { return &chunkedReader{br: br} }

func (cr *chunkedReader) Read(p []byte) (int, error) {
	if cr.err != nil {
		return 0, cr.err
	}
	if cr.needCRLF {
		if cr.err = cr.expectCRLF(); cr.err != nil {
			return 0, cr.err
		}
		cr.needCRLF = false
	}
	if cr.n == 0 {
		size, err := cr.readSizeLine()
		if err != nil {
			cr.err = err
			return 0, err
		}
		if size == 0 {
			cr.err = io.EOF
			return 0, io.EOF
		}
		cr.n = size
	}
	if len(p) == 0 {
		return 0, nil
	}
	if int64(len(p)) > cr.n {
		p = p[:cr.n]
	}
	n, err := cr.br.Read(p)
	cr.n -= int64(n)
	if cr.n == 0 {
		cr.needCRLF = true
	}
	switch {
	case err == io.EOF:
		err = io.ErrUnexpectedEOF
		cr.err = err
	case err != nil:
		cr.err = err
	}
	return n, err
}

func (cr *chunkedReader) expectCRLF() error {
	b, err := cr.br.Peek(2)
	if err != nil {
		return unexpected(err)
	}
	if b[0] != '\r' || b[1] != '\n' {
		return errChunked
	}
	_, err = cr.br.Discard(2)
	return err
}

// readSizeLine reads "size [ext] CRLF" and returns the size.
func (cr *chunkedReader) readSizeLine() (int64, error) {
	line, err := cr.br.ReadSlice('\n')
	if err != nil {
		if err == bufio.ErrBufferFull {
			return 0, errChunked // a chunk line longer than the read buffer
		}
		return 0, unexpected(err)
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return 0, errChunked // a bare LF
	}
	return parseChunkLine(line[:len(line)-2])
}

// parseChunkLine parses "size *( BWS ; BWS name [ BWS = BWS value ] )".
func parseChunkLine(line []byte) (int64, error) {
	var size int64
	i := 0
	for ; i < len(line) && isHexDigit(line[i]); i++ {
		if i == maxChunkHexDigits {
			return 0, errChunked
		}
		size = size<<4 | int64(hexValue(line[i]))
	}
	if i == 0 {
		return 0, errChunked
	}
	rest := line[i:]
	for {
		rest = bytes.TrimLeft(rest, " \t")
		if len(rest) == 0 {
			return size, nil
		}
		if rest[0] != ';' {
			return 0, errChunked
		}
		rest = bytes.TrimLeft(rest[1:], " \t")
		name := tokenPrefix(rest)
		if name == 0 {
			return 0, errChunked
		}
		rest = bytes.TrimLeft(rest[name:], " \t")
		if len(rest) == 0 || rest[0] != '=' {
			continue
		}
		rest = bytes.TrimLeft(rest[1:], " \t")
		switch n := tokenPrefix(rest); {
		case n > 0:
			rest = rest[n:]
		case len(rest) > 0 && rest[0] == '"':
			end := quotedEnd(rest)
			if end < 0 {
				return 0, errChunked
			}
			rest = rest[end:]
		default:
			return 0, errChunked
		}
	}
}

// tokenPrefix is the length of the token at the start of b.
func tokenPrefix(b []byte) int {
	n := 0
	for n < len(b) && tokenByte[b[n]] {
		n++
	}
	return n
}

// quotedEnd returns the length of the quoted string at the start of b
// (RFC 9110 §5.6.4), or -1 if it does not end.
func quotedEnd(b []byte) int {
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c == '\\':
			if i+1 >= len(b) || !validValueByte(b[i+1]) {
				return -1
			}
			i++
		case !validValueByte(c):
			return -1
		}
	}
	return -1
}

func isHexDigit(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func hexValue(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
