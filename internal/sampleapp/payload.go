package sampleapp

import (
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// FastSize is the length of /fast's body.
const FastSize = 100

// Bounds on query parameters, so that a typo cannot tie an instance up.
const (
	maxBytes    = 1 << 30
	maxSlow     = 10 * time.Minute
	defaultSlow = time.Second
)

// pattern is what /bytes repeats: printable, so a dump is readable.
var pattern = func() []byte {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}()

// fastBody is exactly FastSize bytes naming the release.
func fastBody(release string) []byte {
	b := []byte("fast response from release " + release + " ")
	for len(b) < FastSize-1 {
		b = append(b, '.')
	}
	return append(b[:FastSize-1], '\n')
}

func (a *app) healthz(w http.ResponseWriter, r *http.Request) {
	if a.opts.Unhealthy {
		http.Error(w, "unhealthy", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

func (a *app) fast(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Content-Type"] = textPlain
	h["Content-Length"] = fastLength
	_, _ = w.Write(a.fastBytes)
}

// Shared header values for the hot endpoints; net/http only reads them.
var (
	textPlain  = []string{"text/plain; charset=utf-8"}
	fastLength = []string{strconv.Itoa(FastSize)}
)

func (a *app) sized(w http.ResponseWriter, r *http.Request) {
	n, err := intParam(r, "n", len(pattern), 0, maxBytes)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(n))
	for n > 0 {
		k := min(n, len(pattern))
		if _, err := w.Write(pattern[:k]); err != nil {
			return // the client went away
		}
		n -= k
	}
}

// slow waits before it writes anything, so that a proxy that has sent the
// request on could still retry it elsewhere up to the moment it answers.
func (a *app) slow(w http.ResponseWriter, r *http.Request) {
	ms, err := intParam(r, "ms", int(defaultSlow/time.Millisecond), 0, int(maxSlow/time.Millisecond))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	t := time.NewTimer(time.Duration(ms) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
		return // the client went away; nobody is left to answer
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "slow response after %dms from release %s\n", ms, a.opts.Release)
}

func (a *app) status(w http.ResponseWriter, r *http.Request) {
	code, err := strconv.Atoi(r.PathValue("code"))
	if err != nil || code < 200 || code > 599 {
		http.Error(w, "status code must be 200..599", http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	fmt.Fprintf(w, "status %d from release %s\n", code, a.opts.Release)
}

// intParam reads an integer query parameter in [lo, hi], def when absent.
func intParam(r *http.Request, name string, def, lo, hi int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("parameter %s must be an integer in %d..%d", name, lo, hi)
	}
	return n, nil
}
