package h1

import "strings"

// Byte classes of RFC 9110, as tables: one index per byte on the hot path.
var (
	// tokenByte: tchar, the bytes of a method or a header field name.
	tokenByte [256]bool
	// hostByte: the bytes net/http accepts in a Host header (httpguts).
	hostByte [256]bool
	// plainPathByte: path bytes that url.ParseRequestURI keeps as they are,
	// with no escaping and no RawPath; a target made only of these is
	// parsed without the url package.
	plainPathByte [256]bool
)

func init() {
	for c := '0'; c <= '9'; c++ {
		tokenByte[c], hostByte[c], plainPathByte[c] = true, true, true
	}
	for c := 'a'; c <= 'z'; c++ {
		tokenByte[c], hostByte[c], plainPathByte[c] = true, true, true
		tokenByte[c-32], hostByte[c-32], plainPathByte[c-32] = true, true, true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		tokenByte[c] = true
	}
	for _, c := range "!$%&()*+,-.:;=[']_~" {
		hostByte[c] = true
	}
	for _, c := range "-._~$&+,/:;=@" {
		plainPathByte[c] = true
	}
}

// validValueByte reports whether c may appear in a header field value:
// VCHAR, SP, HTAB and obs-text; no other control byte, and so no CR or LF.
func validValueByte(c byte) bool {
	return c >= 0x20 && c != 0x7f || c == '\t'
}

// ValidFieldName reports whether name is a header field name: a token of
// RFC 9110 §5.6.2. The gateway holds an instance's response to the same
// rules as a client's request.
func ValidFieldName(name []byte) bool {
	if len(name) == 0 {
		return false
	}
	for _, c := range name {
		if !tokenByte[c] {
			return false
		}
	}
	return true
}

// ValidFieldValue reports whether v may be a header field value: no
// control byte but HTAB, so no NUL, CR or LF (RFC 9110 §5.5).
func ValidFieldValue(v []byte) bool {
	for _, c := range v {
		if !validValueByte(c) {
			return false
		}
	}
	return true
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !tokenByte[s[i]] {
			return false
		}
	}
	return true
}

// Beyond net/http's byte check it wants the shape of a host: not empty, a
// bracketed IPv6 literal or a name with no empty label ("a..b"), and a port
// of digits if any — an unbracketed "::1" is refused. nginx refuses each.
func validHost(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !hostByte[s[i]] {
			return false
		}
	}
	host, port := s, ""
	if s[0] == '[' {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false
		}
		host, port = s[1:end], s[end+1:]
		if port != "" && port[0] != ':' {
			return false
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i:]
		if strings.IndexByte(host, ':') >= 0 {
			return false // an IPv6 literal without brackets
		}
	}
	if port != "" {
		if len(port) == 1 {
			return false
		}
		for i := 1; i < len(port); i++ {
			if !isDigit(port[i]) {
				return false
			}
		}
	}
	if s[0] == '[' {
		return host != ""
	}
	host = strings.TrimSuffix(host, ".")
	return host != "" && host[0] != '.' && !strings.Contains(host, "..") // no empty label
}

// trimOWS trims optional whitespace (SP and HTAB) from both ends.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// hasToken reports whether any of the comma-separated elements of the
// values equals token, ignoring ASCII case (Connection: keep-alive, Close).
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var elem string
			elem, v, _ = cut(v, ',')
			if equalFold(trimOWS(elem), token) {
				return true
			}
		}
	}
	return false
}

func cut(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// equalFold compares ASCII strings ignoring case; t must be lower case.
func equalFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != t[i] {
			return false
		}
	}
	return true
}
