package gateway

import (
	"encoding/json"
	"html"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// refuse answers a request at the gateway: JSON for programs, a short HTML
// page for browsers, always with a machine-readable code.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, a *appRoute, status int, code, msg string, retryAfter time.Duration, start time.Time) {
	h := w.Header()
	setRetryAfter(w, retryAfter)
	h.Set("Cache-Control", "no-store")
	h.Set("Handoff-Refused", code)
	if g.closing.Load() {
		h.Set("Connection", "close")
	}
	if wantsHTML(r) {
		h.Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		w.Write([]byte(refusalPage(status, msg)))
	} else {
		h.Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(map[string]string{"error": code, "message": msg})
	}
	name := ""
	if a != nil {
		name = a.name
		a.refused[class(status)].Inc()
	}
	if g.opts.AccessLog {
		g.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("app", name), slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", status), slog.String("refused", code), slog.Duration("duration", time.Since(start)),
			slog.String("remote", clientIP(r)))
	}
}

func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	if d > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(d)))
	}
}

// wantsHTML reports whether the client asked for HTML (a browser) rather
// than JSON or anything (a program).
func wantsHTML(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

func refusalPage(status int, msg string) string {
	return `<!doctype html><html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">` +
		`<title>` + strconv.Itoa(status) + ` ` + http.StatusText(status) + `</title></head>` +
		`<body style="font:16px/1.5 system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em">` +
		`<h1 style="font-size:1.4em">` + html.EscapeString(http.StatusText(status)) + `</h1><p>` + html.EscapeString(msg) + `</p></body></html>`
}

const defaultMaintenancePage = `<!doctype html>
<html><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>Back in a minute</title></head>
<body style="font:17px/1.5 system-ui,sans-serif;max-width:36em;margin:5em auto;padding:0 1em;color:#222">
<h1 style="font-size:1.5em">We'll be back in a minute</h1>
<p>This site is down for a short upgrade. Nothing you saved is lost; please try again shortly.</p>
</body></html>
`
