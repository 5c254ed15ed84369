package sampleapp

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"html"
	"net/http"
	"strconv"
)

// renderPage is the HTML page: a complete <html><head>…</head><body>…</body>
// document, so the gateway's banner injection has real tags to find.
func (a *app) renderPage(r *http.Request) []byte {
	rel, inst := html.EscapeString(a.opts.Release), html.EscapeString(a.instance(r))
	return fmt.Appendf(nil, `<!DOCTYPE html>
<html>
<head>
<meta charset="utf-8">
<title>handoff sample app — release %s</title>
<style>body { font-family: sans-serif; margin: 3em; }</style>
</head>
<body>
<h1>handoff sample app</h1>
<p>Release <strong id="release">%s</strong>, served by instance <code id="instance">%s</code>.</p>
</body>
</html>
`, rel, rel, inst)
}

func (a *app) page(w http.ResponseWriter, r *http.Request) {
	body := a.renderPage(r)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	_, _ = w.Write(body)
}

// gzipPage sends the page gzip-encoded whatever the request accepts: it
// exists to test that the gateway decodes before it injects a banner.
func (a *app) gzipPage(w http.ResponseWriter, r *http.Request) {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	_, _ = zw.Write(a.renderPage(r)) // writes to a bytes.Buffer do not fail
	_ = zw.Close()
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Encoding", "gzip")
	h.Set("Vary", "Accept-Encoding")
	h.Set("Content-Length", strconv.Itoa(b.Len()))
	_, _ = w.Write(b.Bytes())
}
