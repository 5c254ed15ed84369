package gateway

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// readOnlyMode refuses writes, except to allowed paths, and tells the app
// (Handoff-Read-Only: 1) and the user (a banner) that it is on.
type readOnlyMode struct {
	allow      []string
	text       string // the banner's text
	banner     []byte
	retryAfter time.Duration
	until      time.Time // when read-only ends by itself (--for), or zero
}

func newReadOnlyMode(st *appState, ro *ReadOnly) *readOnlyMode {
	text := ro.Banner
	if text == "" {
		text = st.cfg.ReadOnly.Banner
	}
	return &readOnlyMode{allow: st.cfg.ReadOnly.Allow, text: text, banner: bannerHTML(text),
		retryAfter: st.cfg.ReadOnly.RetryAfter.D(), until: ro.Until}
}

func (*readOnlyMode) String() string { return "readonly" }

func (m *readOnlyMode) admit(g *Gateway, w http.ResponseWriter, r *http.Request, a *appRoute) bool {
	if !writes(r.Method) || m.allowed(r.URL.Path) {
		return true
	}
	retry, msg := m.refusal(time.Now())
	g.refuse(w, r, a, http.StatusServiceUnavailable, "read_only", msg, retry, time.Now())
	return false
}

// refusal is the Retry-After and the message of a refused write: the
// banner's text, and when read-only ends if it was switched on for a set
// time, else the configured retry_after.
func (m *readOnlyMode) refusal(now time.Time) (time.Duration, string) {
	msg := strings.TrimSpace(m.text)
	if msg != "" && !strings.HasSuffix(msg, ".") {
		msg += "."
	}
	if !strings.Contains(strings.ToLower(msg), "read-only") {
		msg = strings.TrimSpace("This site is read-only. " + msg)
	}
	if left := m.until.Sub(now); !m.until.IsZero() && left > 0 {
		return left, strings.TrimSpace(msg + " Changes are paused until " + m.until.UTC().Format("15:04 MST") +
			" (in about " + aboutDuration(left) + "); please try again then.")
	}
	return m.retryAfter, strings.TrimSpace(msg + " Changes are paused for a short upgrade; please try again in " +
		aboutDuration(m.retryAfter) + ".")
}

// aboutDuration says d the way a person would: "a minute", "10 minutes",
// "2 hours".
func aboutDuration(d time.Duration) string {
	switch {
	case d < 90*time.Second:
		return "a minute"
	case d < 90*time.Minute:
		return strconv.Itoa(int((d+30*time.Second)/time.Minute)) + " minutes"
	}
	return strconv.Itoa(int((d+30*time.Minute)/time.Hour)) + " hours"
}

// writes reports whether a method changes state on the server.
func writes(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return true
}

// allowed reports whether path is under one of the allowed prefixes.
func (m *readOnlyMode) allowed(path string) bool {
	for _, p := range m.allow {
		if path == p || strings.HasPrefix(path, strings.TrimSuffix(p, "/")+"/") {
			return true
		}
	}
	return false
}

// injectable reports whether the banner can go into this response: a
// successful HTML page, plain or gzip-encoded.
func injectable(resp *response, h http.Header, method string) bool {
	if resp.status != http.StatusOK || method == http.MethodHead {
		return false
	}
	if !strings.HasPrefix(h.Get("Content-Type"), "text/html") {
		return false
	}
	ce := h.Get("Content-Encoding")
	return ce == "" || ce == "gzip"
}

// deliverWithBanner streams the page with the banner after its <body> tag.
// The length changes, so Content-Length goes; a validator would let a browser
// keep the page without (or with a stale) banner, so ETag goes too.
func (g *Gateway) deliverWithBanner(w http.ResponseWriter, x *exchange, banner []byte) (int64, bool) {
	h := w.Header()
	h.Del("Content-Length")
	h.Del("ETag")
	h.Del("Last-Modified")
	allowBanner(h)
	gzipped := h.Get("Content-Encoding") == "gzip"
	w.WriteHeader(x.resp.status)
	var src io.Reader = x.resp.body
	var dst io.Writer = w
	var gz *gzip.Writer
	if gzipped {
		zr, err := gzip.NewReader(x.resp.body)
		if err != nil {
			return 0, false
		}
		src = zr
		gz = gzip.NewWriter(w)
		dst = gz
	}
	inj := &injector{dst: dst, banner: banner}
	n, err := copyBody(inj, src, x, nil)
	if err == nil {
		err = inj.flush()
	}
	if gz != nil && err == nil {
		err = gz.Close()
	}
	return n, err == nil
}

// injector writes through, inserting the banner right after the first
// <body ...> tag. It holds back at most searchLimit bytes while looking.
type injector struct {
	dst    io.Writer
	banner []byte
	held   []byte
	done   bool
}

const searchLimit = 64 << 10

func (in *injector) Write(p []byte) (int, error) {
	if in.done {
		return in.dst.Write(p)
	}
	in.held = append(in.held, p...)
	if at := bodyTagEnd(in.held); at >= 0 {
		out := make([]byte, 0, len(in.held)+len(in.banner))
		out = append(append(append(out, in.held[:at]...), in.banner...), in.held[at:]...)
		in.held, in.done = nil, true
		if _, err := in.dst.Write(out); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	if len(in.held) > searchLimit {
		return len(p), in.flush() // no <body> early on: pass the page through as is
	}
	return len(p), nil
}

func (in *injector) flush() error {
	held := in.held
	in.held, in.done = nil, true
	if len(held) == 0 {
		return nil
	}
	_, err := in.dst.Write(held)
	return err
}

// bodyTagEnd returns the index just after the first complete <body ...> tag.
func bodyTagEnd(b []byte) int {
	lower := asciiLower(b)
	for off := 0; ; {
		i := bytes.Index(lower[off:], []byte("<body"))
		if i < 0 {
			return -1
		}
		i += off
		next := i + len("<body")
		if next < len(lower) && (lower[next] == '>' || lower[next] == ' ' || lower[next] == '\t' || lower[next] == '\n' || lower[next] == '\r') {
			end := bytes.IndexByte(lower[next:], '>')
			if end < 0 {
				return -1
			}
			return next + end + 1
		}
		off = next
	}
}

// asciiLower lower-cases ASCII letters only, so that every index into the
// result is an index into b (bytes.ToLower rewrites invalid UTF-8, which
// changes the length).
func asciiLower(b []byte) []byte {
	out := make([]byte, len(b))
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}
