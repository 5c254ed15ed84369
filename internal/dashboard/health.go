package dashboard

import (
	"fmt"

	"github.com/handoff-dev/handoff/internal/control"
)

// healthView is one release's numbers as the page draws them: a bar of
// its answers by status class (an SVG, so that the page's strict
// Content-Security-Policy needs no inline style), and its latency.
type healthView struct {
	Release  string
	Requests int64
	Bars     []bar
	Shares   string
	P50, P99 string
	Failed   int64
}

// bar is one status class's part of a release's answers, in a 0–100 box.
type bar struct {
	Class string // 2xx … 5xx
	X, W  float64
	Label string
}

func newHealthViews(rs []control.ReleaseHealth) []healthView {
	var out []healthView
	for _, r := range rs {
		h := healthView{Release: r.Release, Requests: r.Requests, Failed: r.Failed,
			P50: fmt.Sprintf("%gms", r.P50Ms), P99: fmt.Sprintf("%gms", r.P99Ms)}
		x := 0.0
		for _, c := range []struct {
			class string
			share float64
		}{{"2xx", r.Share2xx}, {"3xx", r.Share3xx}, {"4xx", r.Share4xx}, {"5xx", r.Share5xx}} {
			if c.share <= 0 {
				continue
			}
			label := fmt.Sprintf("%s %.1f%%", c.class, 100*c.share)
			h.Bars = append(h.Bars, bar{Class: c.class, X: x, W: 100 * c.share, Label: label})
			x += 100 * c.share
			if h.Shares != "" {
				h.Shares += " · "
			}
			h.Shares += label
		}
		out = append(out, h)
	}
	return out
}
