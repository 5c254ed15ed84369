package dbproxy

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"strings"
)

// Postgres messages after the startup are a type byte, a 4-byte length
// that counts itself, and the body. The endpoint reads the bodies it must
// look into (and small ones) whole, and streams the rest through.
const (
	// pgBuffered is the largest body read whole; a longer one (a big
	// DataRow, COPY data, a long query) is streamed.
	pgBuffered = 256 << 10
	// pgParseMax is the largest Parse kept for replay on a new server.
	pgParseMax = 16 << 20
	// pgMessageMax is Postgres' own limit on a message (MaxAllocSize).
	pgMessageMax = 1<<30 - 1
)

// frontendTypes are the message types a client may send after startup.
const frontendTypes = "BCDEFHPQSXcdfp"

// pgMessage is one message: its header and, unless it is streamed, its
// body.
type pgMessage struct {
	typ  byte
	size int // body length
	// body is the whole body, or nil for a body to be streamed with
	// pgReader.forward.
	body []byte
	head [5]byte
}

// pgReader reads messages from one side of a session.
type pgReader struct {
	r   *bufio.Reader
	buf []byte
}

func newPGReader(r io.Reader) *pgReader {
	return &pgReader{r: bufio.NewReaderSize(r, 16<<10)}
}

// errMalformed is a message the endpoint refuses to forward.
type errMalformed struct{ msg string }

func (e *errMalformed) Error() string { return "malformed message: " + e.msg }

// next reads a message's header, and its body when it is small enough or
// must be looked into (a Parse, kept for replay). frontend checks the type
// against what a client may send.
func (pr *pgReader) next(frontend bool) (pgMessage, error) {
	var m pgMessage
	if _, err := io.ReadFull(pr.r, m.head[:]); err != nil {
		return m, err
	}
	m.typ = m.head[0]
	n := int64(binary.BigEndian.Uint32(m.head[1:]))
	if n < 4 || n-4 > pgMessageMax {
		return m, &errMalformed{fmt.Sprintf("type %q with length %d", m.typ, n)}
	}
	if frontend && !strings.ContainsRune(frontendTypes, rune(m.typ)) {
		return m, &errMalformed{fmt.Sprintf("unknown message type %q", m.typ)}
	}
	m.size = int(n - 4)
	limit := pgBuffered
	if m.typ == 'P' && frontend {
		limit = pgParseMax
	}
	if m.size > limit {
		return m, nil
	}
	if cap(pr.buf) < m.size {
		pr.buf = make([]byte, m.size, max(m.size, 512))
	}
	m.body = pr.buf[:m.size]
	if _, err := io.ReadFull(pr.r, m.body); err != nil {
		return m, unexpected(err)
	}
	return m, nil
}

// forward writes m to w, streaming a body that next left unread.
func (pr *pgReader) forward(w io.Writer, m pgMessage) error {
	if _, err := w.Write(m.head[:]); err != nil {
		return err
	}
	if m.body != nil {
		_, err := w.Write(m.body)
		return err
	}
	_, err := io.CopyN(w, pr.r, int64(m.size))
	return unexpected(err)
}

// skip discards the body next left unread.
func (pr *pgReader) skip(m pgMessage) error {
	if m.body != nil {
		return nil
	}
	_, err := pr.r.Discard(m.size)
	return unexpected(err)
}

// raw is the whole message, header and body (body must have been read).
func (m pgMessage) raw() []byte {
	return append(append(make([]byte, 0, 5+len(m.body)), m.head[:]...), m.body...)
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// cstring splits a NUL-terminated string off b.
func cstring(b []byte) (string, []byte, bool) {
	for i, c := range b {
		if c == 0 {
			return string(b[:i]), b[i+1:], true
		}
	}
	return "", nil, false
}

// deallocation reads a simple query for the statements it deallocates:
// DEALLOCATE [PREPARE] name, DEALLOCATE [PREPARE] ALL and DISCARD ALL,
// each possibly among others separated by semicolons (pgx's DeallocateAll
// sends "deallocate all"). all reports every statement gone.
func deallocation(query string) (names []string, all bool) {
	for stmt := range strings.SplitSeq(query, ";") {
		f := strings.Fields(stmt)
		if len(f) >= 2 && strings.EqualFold(f[0], "discard") && strings.EqualFold(f[1], "all") {
			all = true
			continue
		}
		if len(f) < 2 || !strings.EqualFold(f[0], "deallocate") {
			continue
		}
		name := f[1]
		if strings.EqualFold(name, "prepare") && len(f) >= 3 {
			name = f[2]
		}
		if strings.EqualFold(name, "all") {
			all = true
			continue
		}
		if strings.HasPrefix(name, `"`) && strings.HasSuffix(name, `"`) && len(name) >= 2 {
			name = strings.ReplaceAll(name[1:len(name)-1], `""`, `"`)
		} else {
			name = strings.ToLower(name)
		}
		names = append(names, name)
	}
	return names, all
}
