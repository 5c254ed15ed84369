package dashboard

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"strconv"
	"time"
)

//go:embed assets
var assets embed.FS

// templates are the page, the login page, and the parts of the page that
// the event stream sends again when they change (parts.html).
var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"iso":     func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"clock":   func(t time.Time) string { return t.Local().Format("15:04:05") },
	"took":    took,
	"percent": percent,
	"rate":    rate,
	"eta":     eta,
}).ParseFS(assets, "assets/*.html"))

// render answers with the named template, rendered whole first so that a
// template error is a 500, not half a page.
func (d *Dashboard) render(w http.ResponseWriter, status int, name string, data any) {
	var b bytes.Buffer
	if err := templates.ExecuteTemplate(&b, name, data); err != nil {
		d.opts.Logger.Error("render dashboard", "template", name, "error", err)
		http.Error(w, "the dashboard could not render this page; see handoff's log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// fragment is one part of the page, whole, with its element's id: the
// event stream sends it again when it changes and the page swaps it in.
type fragment struct {
	id   string
	html string
}

// part is a fragment before it is rendered: its id and template.
type part struct {
	id, tmpl string
	data     any
}

// fragments renders the parts of the page that show sv, in page order.
func fragments(sv statusView) ([]fragment, error) {
	parts := []part{{"node", "node", sv}, {"alerts", "alerts", sv}, {"fleet", "fleet", sv.Fleet}, {"databases", "databases", sv.Databases}}
	for _, a := range sv.Apps {
		parts = append(parts, part{a.StateID(), "app-state", a}, part{a.ModesID(), "app-modes", a})
	}
	parts = append(parts, part{"migrations", "migrations", sv})
	out := make([]fragment, 0, len(parts))
	for _, p := range parts {
		var b bytes.Buffer
		if err := templates.ExecuteTemplate(&b, p.tmpl, p.data); err != nil {
			return nil, fmt.Errorf("render %s: %w", p.id, err)
		}
		out = append(out, fragment{id: p.id, html: b.String()})
	}
	return out, nil
}

// took is how long from start to end; "" until both are known (the page's
// script shows the time of what still runs, so a fragment does not change
// with the clock alone).
func took(start, end time.Time) string {
	if start.IsZero() || end.IsZero() {
		return ""
	}
	d := end.Sub(start)
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}

func percent(rows, total int64) float64 {
	if total <= 0 {
		return 0
	}
	return math.Min(100, float64(rows)*100/float64(total))
}

func rate(perSec float64) string {
	switch {
	case perSec >= 1e6:
		return strconv.FormatFloat(perSec/1e6, 'f', 1, 64) + "M rows/s"
	case perSec >= 1e4:
		return strconv.FormatFloat(perSec/1e3, 'f', 0, 64) + "k rows/s"
	}
	return strconv.FormatFloat(perSec, 'f', 0, 64) + " rows/s"
}

func eta(seconds float64) string {
	if seconds <= 0 || math.IsInf(seconds, 0) || math.IsNaN(seconds) {
		return "—"
	}
	return (time.Duration(seconds) * time.Second).Round(time.Second).String()
}
