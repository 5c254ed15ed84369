package gateway

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
)

// wireHead is an instance's response head as it goes to the client: its
// header lines, each "Name: value\r\n" with the name as the instance sent
// it and the value without its surrounding blanks, in the order sent.
// Parsed once and copied once: the response writer takes the lines as
// they are (h1.FieldsWriter), with no header map filled and walked again
// in between. A map is made from it only where one is needed: a writer
// that is not h1's (HTTP/2), a page that gets the read-only banner.
//
// A response takes one from wireHeads for its head and gives it back once
// it is through (see response.putHead), so a head costs no allocation, an
// idle connection holds none, and on a busy gateway the few in use stay in
// the CPU's cache, where one per connection was cold memory at every
// answer.
type wireHead struct {
	buf    []byte      // every line of the head
	fields []wireField // where each is in buf
	out    []byte      // the lines that go on, when some do not (see lines)
	drops  int         // fields not forwarded
}

// wireField is one header line in wireHead.buf: the name is
// buf[start:colon], the value buf[colon+2:end-2].
type wireField struct {
	start, colon, end int
	// drop: not forwarded. The body's framing (the server writes its own),
	// hop-by-hop fields (hopHeaders, and those a Connection header names),
	// a 304's Content-Type.
	drop bool
}

func (h *wireHead) reset() {
	h.buf, h.fields, h.out, h.drops = h.buf[:0], h.fields[:0], h.out[:0], 0
}

var wireHeads = sync.Pool{New: func() any {
	// Room for a usual head, so that it is made in three allocations.
	return &wireHead{buf: make([]byte, 0, 1<<10), fields: make([]wireField, 0, 16)}
}}

// wireKeep bounds the buffers wireHeads keeps: an unusual head (up to
// maxResponseHeadBytes) must not stay in memory.
const wireKeep = 8 << 10

// putHead gives the head's buffers back once the response is through.
// They hold bytes only, and readHead resets a head it takes.
func (resp *response) putHead() {
	h := resp.head
	resp.head = nil
	if h != nil && h.reusable() {
		wireHeads.Put(h)
	}
}

// reusable reports whether h's buffers are of a usual head's size.
func (h *wireHead) reusable() bool {
	return cap(h.buf) <= wireKeep && cap(h.out) <= wireKeep && cap(h.fields) <= wireKeep/64
}

// add appends a field's line.
func (h *wireHead) add(name, value []byte, drop bool) {
	start := len(h.buf)
	h.buf = append(h.buf, name...)
	h.buf = append(h.buf, ": "...)
	h.buf = append(h.buf, value...)
	h.buf = append(h.buf, "\r\n"...)
	h.fields = append(h.fields, wireField{start: start, colon: start + len(name), end: len(h.buf), drop: drop})
	if drop {
		h.drops++
	}
}

// dropNamed drops the fields a Connection header names (hop-by-hop too,
// RFC 9110 §7.6.1): known only once the whole head is read.
func (h *wireHead) dropNamed(tokens [][]byte) {
	for i := range h.fields {
		f := &h.fields[i]
		if f.drop {
			continue
		}
		for _, tok := range tokens {
			if bytes.EqualFold(h.buf[f.start:f.colon], tok) {
				f.drop = true
				h.drops++
				break
			}
		}
	}
}

// lines returns the lines that go on to the client.
func (h *wireHead) lines() []byte {
	if h.drops == 0 {
		return h.buf
	}
	h.out = h.out[:0]
	for _, f := range h.fields {
		if !f.drop {
			h.out = append(h.out, h.buf[f.start:f.end]...)
		}
	}
	return h.out
}

// header adds the fields that go on to dst, under their canonical names,
// and Content-Length when the head declared one (length >= 0): the map a
// response writer that is not h1's frames the body by. With all, every
// field goes in, as the instance sent it (a 101's head).
func (h *wireHead) header(dst http.Header, length int64, all bool) {
	for _, f := range h.fields {
		if f.drop && !all {
			continue
		}
		k := canonicalKey(h.buf[f.start:f.colon])
		dst[k] = append(dst[k], string(h.buf[f.colon+2:f.end-2]))
	}
	if length >= 0 && !all {
		dst["Content-Length"] = []string{strconv.FormatInt(length, 10)}
	}
}

// fieldKind is what a response header field means to the gateway.
type fieldKind uint8

const (
	fieldOther fieldKind = iota
	fieldContentLength
	fieldTransferEncoding
	fieldConnection
	fieldHop // any other of hopHeaders
	fieldDate
	fieldContentType
)

// kindOf classifies a header name (a valid token, in any case) without
// making it canonical first: by its length, then its letters.
func kindOf(name []byte) fieldKind {
	is := func(lower string) bool { return equalFoldLower(name, lower) }
	switch len(name) {
	case 2:
		if is("te") {
			return fieldHop
		}
	case 4:
		if is("date") {
			return fieldDate
		}
	case 6:
		if is("expect") {
			return fieldHop
		}
	case 7:
		if is("upgrade") || is("trailer") {
			return fieldHop
		}
	case 10:
		if is("connection") {
			return fieldConnection
		}
		if is("keep-alive") {
			return fieldHop
		}
	case 12:
		if is("content-type") {
			return fieldContentType
		}
	case 14:
		if is("content-length") {
			return fieldContentLength
		}
	case 16:
		if is("proxy-connection") {
			return fieldHop
		}
	case 17:
		if is("transfer-encoding") {
			return fieldTransferEncoding
		}
	case 18:
		if is("proxy-authenticate") {
			return fieldHop
		}
	case 19:
		if is("proxy-authorization") {
			return fieldHop
		}
	}
	return fieldOther
}

// equalFoldLower reports whether the token b is lower, a lower-case name
// of letters and '-', in any case. b|0x20 is b's lower case for a letter,
// and a token byte other than a letter never becomes one of lower's bytes
// by it (only CR, no token byte, would become '-').
func equalFoldLower(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range len(b) {
		if b[i]|0x20 != lower[i] {
			return false
		}
	}
	return true
}
