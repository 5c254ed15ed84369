package sampleapp

import (
	"fmt"
	"net/http"
	"time"
)

// maxEvents bounds /sse's n.
const maxEvents = 100000

// sse sends n server-sent events ms apart, flushing each, then ends the
// response. Each event is "id: i" and "data: <release> <i>/<n>", so the
// client can count them and see that none came from another release.
func (a *app) sse(w http.ResponseWriter, r *http.Request) {
	n, err := intParam(r, "n", 10, 1, maxEvents)
	if err == nil {
		var ms int
		ms, err = intParam(r, "ms", 100, 0, int(maxSlow/time.Millisecond))
		if err == nil {
			a.streamEvents(w, r, n, time.Duration(ms)*time.Millisecond)
			return
		}
	}
	http.Error(w, err.Error(), http.StatusBadRequest)
}

func (a *app) streamEvents(w http.ResponseWriter, r *http.Request, n int, every time.Duration) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	rc := http.NewResponseController(w)
	t := time.NewTimer(0)
	defer t.Stop()
	for i := 1; i <= n; i++ {
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
		fmt.Fprintf(w, "id: %d\ndata: %s %d/%d\n\n", i, a.opts.Release, i, n)
		if err := rc.Flush(); err != nil {
			return
		}
		t.Reset(every)
	}
}
