package h1

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
)

// parseCases are request heads with the refusal each should get (nil:
// accepted). They seed FuzzParseRequest too.
var parseCases = []struct {
	name string
	head string
	want *requestError
}{
	{"get", "GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n", nil},
	{"bare LF", "GET / HTTP/1.1\nHost: a\n\n", nil},
	{"lower-case names", "GET / HTTP/1.1\r\nhost: a\r\nx-forwarded-for: 1.2.3.4\r\naccept-ENCODING: gzip\r\n\r\n", nil},
	{"repeated header", "GET / HTTP/1.1\r\nHost: a\r\nAccept: x\r\nAccept: y\r\n\r\n", nil},
	{"value whitespace", "GET / HTTP/1.1\r\nHost: a\r\nX-A: \t v w \t\r\nX-Empty:\r\n\r\n", nil},
	{"obs-text value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: caf\xc3\xa9\r\n\r\n", nil},
	{"escaped path", "GET /a%2Fb/%7Euser HTTP/1.1\r\nHost: a\r\n\r\n", nil},
	{"odd path bytes", "GET /a!b*(c)'d HTTP/1.1\r\nHost: a\r\n\r\n", nil},
	{"force query", "GET /a? HTTP/1.1\r\nHost: a\r\n\r\n", nil},
	{"two question marks", "GET /a?b? HTTP/1.1\r\nHost: a\r\n\r\n", nil},
	{"absolute form", "GET http://other.example/p?q HTTP/1.1\r\nHost: a\r\n\r\n", nil},
	{"asterisk", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", errAsterisk},
	{"connect", "CONNECT example.com:443 HTTP/1.1\r\n\r\n", errConnect},
	{"connect origin form", "CONNECT /a HTTP/1.1\r\nHost: a\r\n\r\n", errConnect},
	{"asterisk get", "GET * HTTP/1.1\r\nHost: a\r\n\r\n", errAsterisk},
	{"fragment", "GET /a#b HTTP/1.1\r\nHost: a\r\n\r\n", errTarget},
	{"absolute form with userinfo", "GET http://user@other.example/p HTTP/1.1\r\nHost: a\r\n\r\n", errTarget},
	{"absolute form with empty userinfo", "GET http://@other.example/p HTTP/1.1\r\nHost: a\r\n\r\n", errTarget},
	{"absolute form with one slash", "GET http:/other.example/p HTTP/1.1\r\nHost: a\r\n\r\n", errTarget},
	{"absolute form with empty authority", "GET http:///p HTTP/1.1\r\nHost: a\r\n\r\n", errTarget},
	{"opaque absolute form", "GET http:other.example/p HTTP/1.1\r\nHost: a\r\n\r\n", errTarget},
	{"escaped origin form", "GET /a%20b/c HTTP/1.1\r\nHost: a\r\n\r\n", nil},
	{"escaped fragment", "GET /a%20#b HTTP/1.1\r\nHost: a\r\n\r\n", errTarget},
	{"http10 no host", "GET / HTTP/1.0\r\n\r\n", nil},
	{"http10 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", nil},
	{"http11 close", "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, close\r\n\r\n", nil},
	{"http12", "GET / HTTP/1.2\r\nHost: a\r\n\r\n", nil},
	{"content-length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", nil},
	{"same content-lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", errManyLengths},
	{"tab before chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\tchunked\r\n\r\n", errHeaderValue},
	{"lower-case method", "get / HTTP/1.1\r\nHost: a\r\n\r\n", errMethod},
	{"digit in method", "M1.X / HTTP/1.1\r\nHost: a\r\n\r\n", errMethod},
	{"host with empty label", "GET / HTTP/1.1\r\nHost: a..b\r\n\r\n", errBadHost},
	{"unbracketed IPv6 host", "GET / HTTP/1.1\r\nHost: ::1\r\n\r\n", errBadHost},
	{"host with bad port", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", errBadHost},
	{"bracketed IPv6 host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", nil},
	{"host with trailing dot", "GET / HTTP/1.1\r\nHost: example.com.\r\n\r\n", nil},
	{"long request line", "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: a\r\n\r\n", errURITooLong},
	{"longest field line", "GET / HTTP/1.1\r\nHost: a\r\nX-A: " + strings.Repeat("a", maxFieldLine-5) + "\r\n\r\n", nil},
	{"long field line", "GET / HTTP/1.1\r\nHost: a\r\nX-A: " + strings.Repeat("a", maxFieldLine-4) + "\r\n\r\n", errFieldTooLong},
	{"chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", nil},
	{"chunked trailer", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: x-sum, X-Other\r\n\r\n", nil},
	{"expect", "PUT / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-Continue\r\n\r\n", nil},
	{"pragma", "GET / HTTP/1.1\r\nHost: a\r\nPragma: no-cache\r\n\r\n", nil},
	{"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n", errBadHost},
	{"leading empty line", "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", nil},

	{"no version", "GET /\r\nHost: a\r\n\r\n", errRequestLine},
	{"extra space", "GET / HTTP/1.1 x\r\nHost: a\r\n\r\n", errVersion},
	{"double space", "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", errVersion},
	{"lower-case version", "GET / http/1.1\r\nHost: a\r\n\r\n", errVersion},
	{"bad method", "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", errMethod},
	{"http2", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", errUnsupported},
	{"http09", "GET / HTTP/0.9\r\nHost: a\r\n\r\n", errUnsupported},
	{"relative target", "GET a/b HTTP/1.1\r\nHost: a\r\n\r\n", errTarget},
	{"control byte in target", "GET /a\x01b HTTP/1.1\r\nHost: a\r\n\r\n", errTarget},
	{"control byte in query", "GET /a?\x7f HTTP/1.1\r\nHost: a\r\n\r\n", errTarget},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", errFolded},
	{"leading whitespace", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", errFolded},
	{"no colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A b\r\n\r\n", errHeaderLine},
	{"empty name", "GET / HTTP/1.1\r\nHost: a\r\n: b\r\n\r\n", errHeaderName},
	{"space before colon", "GET / HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", errHeaderName},
	{"bad name byte", "GET / HTTP/1.1\r\nHost: a\r\nX(A: b\r\n\r\n", errHeaderName},
	{"bare CR in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\rc\r\n\r\n", errHeaderValue},
	{"NUL in value", "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\x00c\r\n\r\n", errHeaderValue},
	{"no host", "GET / HTTP/1.1\r\nX-A: b\r\n\r\n", errNoHost},
	{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", errManyHosts},
	{"bad host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", errBadHost},
	{"differing content-lengths", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", errManyLengths},
	{"content-length list", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", errContentLength},
	{"negative content-length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", errContentLength},
	{"signed content-length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\n", errContentLength},
	{"hex content-length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", errContentLength},
	{"empty content-length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", errContentLength},
	{"huge content-length", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", errContentLength},
	{"length and chunked", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", errLengthAndTE},
	{"chunked in http10", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", errTE10},
	{"gzip chunked", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", errTransferCoding},
	{"chunked twice", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", errTransferCoding},
	{"identity", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", errTransferCoding},
	{"bad trailer key", "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: Content-Length\r\n\r\n", errTrailerKey},
	{"expectation", "GET / HTTP/1.1\r\nHost: a\r\nExpect: teapot\r\n\r\n", errExpectation},
}

func parseString(head string) (*http.Request, framing, error) {
	req := &http.Request{Header: http.Header{}}
	var s scratch
	f, err := parseRequest([]byte(head), req, &s)
	return req, f, err
}

func TestParseRequest(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := parseString(tc.head)
			if tc.want == nil && err != nil {
				t.Fatalf("refused: %v", err)
			}
			if tc.want != nil && err != tc.want {
				t.Fatalf("got error %v, want %v", err, tc.want)
			}
			compareWithNetHTTP(t, []byte(tc.head))
		})
	}
}

func TestParseRequestFields(t *testing.T) {
	req, f, err := parseString("POST http://other.example/p%20q?x=1 HTTP/1.1\r\nhost: a.example\r\n" +
		"content-length: 12\r\nx-multi: 1\r\nX-Multi: 2\r\nConnection: close\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Method", req.Method, "POST"},
		{"RequestURI", req.RequestURI, "http://other.example/p%20q?x=1"},
		{"Host", req.Host, "other.example"}, // absolute form wins over the Host header
		{"URL.Path", req.URL.Path, "/p q"},
		{"URL.RawQuery", req.URL.RawQuery, "x=1"},
		{"Header", req.Header, http.Header{"Content-Length": {"12"}, "X-Multi": {"1", "2"}, "Connection": {"close"}}},
		{"ContentLength", req.ContentLength, int64(12)},
		{"framing", f.contentLength, int64(12)},
		{"Close", req.Close, true},
		{"Proto", req.Proto, "HTTP/1.1"},
	}
	for _, c := range checks {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("%s = %#v, want %#v", c.name, c.got, c.want)
		}
	}
}

// TestParseRequestKeepsValuesApart checks that appending to a header value
// slice cannot overwrite the next header's value, as the slices share one
// backing array.
func TestParseRequestKeepsValuesApart(t *testing.T) {
	req, _, err := parseString("GET / HTTP/1.1\r\nHost: a\r\nX-A: 1\r\nX-B: 2\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	req.Header["X-A"] = append(req.Header["X-A"], "appended")
	if got := req.Header["X-B"]; len(got) != 1 || got[0] != "2" {
		t.Fatalf("X-B = %q after an append to X-A", got)
	}
}

func TestHeadEnd(t *testing.T) {
	cases := []struct {
		in   string
		want int
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\nrest", 27},
		{"GET / HTTP/1.1\nHost: a\n\nrest", 24},
		{"GET / HTTP/1.1\r\nHost: a\r\n", -1},
		{"GET / HTTP/1.1\r\nHost: a\r\n\r", -1},
		{"\r\n\r\nGET / HTTP/1.1\r\n\r\n", 22},
		{"\r\n", -1},
	}
	for _, c := range cases {
		if got := headEnd([]byte(c.in), 0); got != c.want {
			t.Errorf("headEnd(%q) = %d, want %d", c.in, got, c.want)
		}
		// Fed a byte at a time, resuming where the last call stopped.
		got := -1
		for n := 1; n <= len(c.in) && got < 0; n++ {
			got = headEnd([]byte(c.in[:n]), n-1)
		}
		if got != c.want {
			t.Errorf("headEnd(%q) byte by byte = %d, want %d", c.in, got, c.want)
		}
	}
}

// FuzzParseRequest checks that parsing never panics, never accepts a head
// that net/http's server refuses, and agrees with it on every field of a
// head both accept. Where it refuses what net/http accepts, the reason
// must be one of the documented stricter rules.
func FuzzParseRequest(f *testing.F) {
	for _, tc := range parseCases {
		f.Add([]byte(tc.head))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		end := headEnd(data, 0)
		if end < 0 {
			return
		}
		compareWithNetHTTP(t, data[:end])
	})
}

func compareWithNetHTTP(t *testing.T, head []byte) {
	t.Helper()
	ours, _, err := parseString(string(head))
	theirs, theirErr := netHTTPServerParse(head[leadingEmptyLines(head):])
	switch {
	case err == nil && theirErr != nil:
		t.Fatalf("accepted a head net/http refuses (%v): %q", theirErr, head)
	case err != nil && theirErr == nil:
		if !stricterOnPurpose(err, head, theirs) {
			t.Fatalf("refused (%v) a head net/http accepts: %q", err, head)
		}
	case err == nil:
		compareRequests(t, ours, theirs)
	}
}

// hostField is the value of the (lowercased) head's Host line, without
// its surrounding whitespace.
func hostField(lower []byte) string {
	for _, line := range bytes.Split(lower, []byte("\n")) {
		if value, ok := bytes.CutPrefix(bytes.TrimSuffix(line, []byte("\r")), []byte("host:")); ok {
			return string(bytes.Trim(value, " \t"))
		}
	}
	return ""
}

// framingTab reports whether a Content-Length or Transfer-Encoding line of
// the (lowercased) head has a tab in the whitespace around its value,
// which the parser refuses on purpose (a framing field must read the
// same to every hop).
func framingTab(lower []byte) bool {
	for _, line := range bytes.Split(lower, []byte("\n")) {
		name, value, ok := bytes.Cut(bytes.TrimSuffix(line, []byte("\r")), []byte(":"))
		if !ok || (string(name) != "content-length" && string(name) != "transfer-encoding") {
			continue
		}
		trimmed := bytes.Trim(value, " \t")
		if len(trimmed) == 0 {
			trimmed = value[:0]
		}
		i := bytes.Index(value, trimmed)
		if bytes.IndexByte(value[:i], '\t') >= 0 || bytes.IndexByte(value[i+len(trimmed):], '\t') >= 0 {
			return true
		}
	}
	return false
}

// stricterOnPurpose reports whether a refusal of what net/http accepts is
// one of the package's documented stricter rules, with its cause present.
func stricterOnPurpose(err error, head []byte, theirs *http.Request) bool {
	lower := bytes.ToLower(head)
	switch err {
	case errFolded:
		return bytes.Contains(head, []byte("\n ")) || bytes.Contains(head, []byte("\n\t"))
	case errLengthAndTE:
		return theirs.TransferEncoding != nil && bytes.Contains(lower, []byte("\ncontent-length:"))
	case errTE10:
		return theirs.ProtoMinor == 0 && bytes.Contains(lower, []byte("\ntransfer-encoding:"))
	case errConnect:
		return theirs.Method == "CONNECT"
	case errAsterisk:
		return theirs.RequestURI == "*"
	case errManyLengths:
		return bytes.Count(lower, []byte("\ncontent-length:")) > 1
	case errHeaderValue:
		return framingTab(lower) || bytes.Contains(lower, []byte("\t\r\n")) || bytes.Contains(lower, []byte("\t\n"))
	case errMethod:
		return !isMethod(theirs.Method)
	case errBadHost:
		// The Host header is checked even beside an absolute-form target
		// (nginx answers an empty one 400 too).
		return !validHost(theirs.Host) || !validHost(hostField(lower))
	case errURITooLong:
		// The request line, not only its target: a long method counts too
		// (CI's fuzz input: 2,547 bytes of method before a 6 KiB target).
		line := head[leadingEmptyLines(head):]
		if i := bytes.IndexByte(line, '\n'); i >= 0 {
			line = line[:i]
		}
		return len(line) > maxRequestLine-20
	case errTarget:
		return strings.Contains(theirs.RequestURI, "#") || theirs.URL.User != nil ||
			!strings.HasPrefix(theirs.RequestURI, "/") && theirs.URL.Host == ""
	case errFieldTooLong:
		return longestLine(head) > maxFieldLine
	}
	return false
}

func compareRequests(t *testing.T, ours, theirs *http.Request) {
	t.Helper()
	fields := []struct {
		name      string
		got, want any
	}{
		{"Method", ours.Method, theirs.Method},
		{"RequestURI", ours.RequestURI, theirs.RequestURI},
		{"URL", *ours.URL, *theirs.URL},
		{"Proto", ours.Proto, theirs.Proto},
		{"ProtoMajor", ours.ProtoMajor, theirs.ProtoMajor},
		{"ProtoMinor", ours.ProtoMinor, theirs.ProtoMinor},
		{"Host", ours.Host, theirs.Host},
		{"Header", ours.Header, theirs.Header},
		{"ContentLength", ours.ContentLength, theirs.ContentLength},
		{"TransferEncoding", ours.TransferEncoding, theirs.TransferEncoding},
		{"Trailer", ours.Trailer, theirs.Trailer},
		{"Close", ours.Close, theirs.Close},
	}
	for _, f := range fields {
		if !reflect.DeepEqual(f.got, f.want) {
			t.Errorf("%s = %#v, net/http has %#v", f.name, f.got, f.want)
		}
	}
}

// netHTTPServerParse is what net/http's server accepts: http.ReadRequest
// and then the checks its conn.readRequest and serve loop add (Go 1.26
// net/http/server.go), written out here from their source.
func netHTTPServerParse(head []byte) (*http.Request, error) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(head)))
	if err != nil {
		return nil, err
	}
	if req.ProtoMajor != 1 {
		return nil, errors.New("unsupported protocol version")
	}
	// http.ReadRequest removes Host from the header; the server's own
	// readRequest checks it first.
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(head)))
	if _, err := tp.ReadLine(); err != nil {
		return nil, err
	}
	mh, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, err
	}
	hosts, haveHost := mh["Host"]
	if req.ProtoAtLeast(1, 1) && (!haveHost || len(hosts) == 0) && req.Method != "CONNECT" {
		return nil, errors.New("missing required Host header")
	}
	if len(hosts) == 1 && strings.IndexFunc(hosts[0], notHostRune) >= 0 {
		return nil, errors.New("malformed Host header")
	}
	for k, vv := range req.Header {
		if k == "" || strings.IndexFunc(k, notTokenRune) >= 0 {
			return nil, errors.New("invalid header name")
		}
		for _, v := range vv {
			if strings.IndexFunc(v, func(r rune) bool { return r < ' ' && r != '\t' || r == 0x7f }) >= 0 {
				return nil, errors.New("invalid header value")
			}
		}
	}
	delete(req.Header, "Host")
	if e := req.Header.Get("Expect"); e != "" && !strings.EqualFold(e, "100-continue") {
		return nil, errors.New("expectation failed")
	}
	req.Body = nil
	return req, nil
}

func notHostRune(r rune) bool {
	return !(r < 0x80 && (isAlnum(byte(r)) || strings.ContainsRune("!$%&()*+,-.:;=[']_~", r)))
}

func notTokenRune(r rune) bool {
	return !(r < 0x80 && (isAlnum(byte(r)) || strings.ContainsRune("!#$%&'*+-.^_`|~", r)))
}

func isAlnum(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

func BenchmarkParseRequest(b *testing.B) {
	req := &http.Request{Header: http.Header{}}
	var s scratch
	head := []byte(benchRequest)
	b.ReportAllocs()
	b.SetBytes(int64(len(head)))
	for b.Loop() {
		clear(req.Header)
		if _, err := parseRequest(head, req, &s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadRequestNetHTTP(b *testing.B) {
	head := []byte(benchRequest)
	br := bufio.NewReader(nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(head)))
	for b.Loop() {
		br.Reset(bytes.NewReader(head))
		if _, err := http.ReadRequest(br); err != nil {
			b.Fatal(err)
		}
	}
}

// longestLine is the length of the longest line of head, its line end
// left out.
func longestLine(head []byte) int {
	n := 0
	for _, line := range bytes.Split(head, []byte("\n")) {
		n = max(n, len(bytes.TrimSuffix(line, []byte("\r"))))
	}
	return n
}
