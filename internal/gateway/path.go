package gateway

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// The path rule: the gateway routes, checks read-only's allow-list, and
// forwards on one and the same path, so that what it checked is what the
// app acts on.
//
//   - Percent-encoded unreserved characters are decoded (RFC 3986 §6.2.2.2:
//     "%2e" is "."), so that encoded dots are dots.
//   - Dot segments are removed (RFC 3986 §5.2.4): "/a/b/../c" becomes
//     "/a/c", and the instance receives "/a/c".
//   - A segment that would become a dot segment if the app split paths on
//     an encoded slash or a backslash ("..%2f", "%5c..", "\..") is refused
//     with 400: some servers and frameworks decode before they route, and
//     the gateway cannot know which.
//   - Refused too, as nginx refuses them: ".." above the root, "%00", and a
//     "%" not followed by two hex digits.
//
// Everything else passes as the client wrote it, so that an app that
// reads its raw path (an encoded slash in a resource name) still can.
var (
	errDotSegment  = errors.New("a dot segment hidden behind an encoded slash or a backslash")
	errAboveRoot   = errors.New(`".." above the root`)
	errBadEscape   = errors.New(`a "%" not followed by two hex digits`)
	errEncodedNull = errors.New(`"%00" in the path`)
)

// cleanPath applies the path rule to r, rewriting its URL and target when
// the path changes. It leaves "*" (OPTIONS) alone.
func cleanPath(r *http.Request) error {
	if r.RequestURI == "*" {
		return nil
	}
	raw := r.URL.EscapedPath()
	clean, err := normalizePath(raw)
	if err != nil {
		return err
	}
	if clean == raw && (r.RequestURI == "" || r.RequestURI[0] == '/') {
		return nil
	}
	target := clean
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		target += "?" + r.URL.RawQuery
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return err
	}
	r.URL, r.RequestURI = u, target
	return nil
}

// normalizePath returns the escaped path raw with encoded unreserved
// characters decoded and dot segments removed, or an error for a dot
// segment hidden behind an encoded slash or a backslash.
func normalizePath(raw string) (string, error) {
	if raw == "" || raw[0] != '/' {
		raw = "/" + raw // an absolute-form target may have no path
	}
	if !strings.ContainsAny(raw, "%\\;") && !strings.Contains(raw, "/.") {
		return raw, nil // the common path: nothing to decode, no dot segment
	}
	segs := strings.Split(raw[1:], "/")
	out := make([]string, 0, len(segs))
	for i, seg := range segs {
		seg, err := decodeUnreserved(seg)
		if err != nil {
			return "", err
		}
		last := i == len(segs)-1
		switch seg {
		case ".":
			if last {
				out = append(out, "")
			}
			continue
		case "..":
			if len(out) == 0 {
				return "", errAboveRoot
			}
			out = out[:len(out)-1]
			if last {
				out = append(out, "")
			}
			continue
		}
		if hidesDotSegment(seg) {
			return "", errDotSegment
		}
		out = append(out, seg)
	}
	return "/" + strings.Join(out, "/"), nil
}

// hidesDotSegment reports whether seg, split on "%2F", "%5C" or "\", has a
// "." or ".." piece, also once a ";parameter" is cut off (Tomcat reads
// "..;x" as "..").
func hidesDotSegment(seg string) bool {
	if !strings.Contains(seg, ".") {
		return false
	}
	s := strings.NewReplacer("%2F", "/", "%5C", "/", "\\", "/").Replace(seg)
	for _, p := range strings.Split(s, "/") {
		p, _, _ = strings.Cut(p, ";")
		if p == "." || p == ".." {
			return true
		}
	}
	return false
}

// decodeUnreserved decodes the percent-encoded unreserved characters of s
// (letters, digits, "-", ".", "_", "~") and upper-cases the hex digits of
// the escapes it keeps.
func decodeUnreserved(s string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+2 >= len(s) {
			return "", errBadEscape
		}
		v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
		if err != nil {
			return "", errBadEscape
		}
		c := byte(v)
		switch {
		case c == 0:
			return "", errEncodedNull
		case isUnreserved(c):
			b.WriteByte(c)
		default:
			b.WriteByte('%')
			b.WriteString(strings.ToUpper(s[i+1 : i+3]))
		}
		i += 2
	}
	return b.String(), nil
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// cleanHost removes a fully qualified name's trailing dot from r.Host, so
// that the app sees the Host it is configured for ("example.com." is
// example.com), as nginx's $host does.
func cleanHost(r *http.Request) {
	if !strings.HasSuffix(r.Host, ".") && !strings.Contains(r.Host, ".:") {
		return // no trailing dot, with or without a port (and no error to allocate)
	}
	host, port, err := net.SplitHostPort(r.Host)
	if err != nil {
		host, port = r.Host, ""
	}
	if !strings.HasSuffix(host, ".") {
		return
	}
	host = strings.TrimSuffix(host, ".")
	if port != "" {
		host = net.JoinHostPort(host, port)
	}
	r.Host = host
}
