package gateway

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// ServeHTTP is the hot path: route, mode, pick, proxy.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	switch r.Method {
	case http.MethodConnect: // HTTP/2's CONNECT; HTTP/1's is refused by the server
		g.refuse(w, r, nil, http.StatusMethodNotAllowed, "bad_request", "CONNECT is not served here.", 0, start)
		return
	case http.MethodTrace:
		// TRACE echoes the request back, cookies and credentials included,
		// to any script that can read the answer (cross-site tracing).
		// nginx refuses it too; no app needs it through a gateway.
		g.refuse(w, r, nil, http.StatusMethodNotAllowed, "bad_request", "TRACE is not served here.", 0, start)
		return
	}
	cleanHost(r)
	if err := cleanPath(r); err != nil {
		g.refuse(w, r, nil, http.StatusBadRequest, "bad_request", "The request path is not allowed: "+err.Error()+".", 0, start)
		return
	}
	a := g.snap.Load().route(r.Host)
	if a == nil {
		g.refuse(w, r, nil, http.StatusNotFound, "no_app", "No app is configured for host "+r.Host+".", 0, start)
		return
	}
	upgrade := isUpgrade(r)
	if upgrade && hasBody(r) {
		// The tunnel sends no body; a length announced upstream would
		// leave the instance waiting for it.
		g.refuse(w, r, a, http.StatusBadRequest, "bad_request", "A request that switches protocols may not carry a body.", 0, start)
		return
	}
	if !a.mode.admit(g, w, r, a) {
		return
	}
	if upgrade {
		g.tunnel(w, r, a, start)
		return
	}
	g.forward(w, r, a, start)
}

// maxStale bounds how often one request re-reads a snapshot that changed
// under it.
const maxStale = 4

// acquire picks a target and counts the request on it. A target found
// draining means the snapshot went stale between the load and the pick: the
// request then re-reads the snapshot, so it never lands on a drained target.
func (g *Gateway) acquire(r *http.Request, a *appRoute, p *pool, tried []*Target) (*appRoute, *Target, *pool) {
	for range maxStale {
		t, tp := a.pick(p, tried)
		if t != nil {
			t.inflight.Add(1)
			if !t.draining.Load() {
				return a, t, tp
			}
			t.inflight.Add(-1)
		}
		fresh := g.snap.Load().apps[a.name]
		if fresh == nil || fresh == a || len(fresh.pools) == 0 {
			break
		}
		a, p = fresh, fresh.samePool(p)
	}
	return a, nil, p
}

// samePool finds the pool of p's release in a newer snapshot, or its first.
func (a *appRoute) samePool(p *pool) *pool {
	for _, q := range a.pools {
		if q.release == p.release {
			return q
		}
	}
	return a.pools[0]
}

// forward proxies r to one of the app's instances, retrying on another when
// the first fails before answering and the request allows it.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, a *appRoute, start time.Time) {
	if len(a.pools) == 0 {
		g.refuse(w, r, a, http.StatusServiceUnavailable, "no_instance", "The app has no instances yet.", 5*time.Second, start)
		return
	}
	p, pinned := a.choosePool(r)
	o := outbound{readOnly: a.readOnly != nil}
	var banner []byte
	if a.readOnly != nil {
		banner = a.readOnly.banner
		stripConditionals(r)
	}
	var body *replayBody
	if hasBody(r) {
		body = newReplayBody(r.Body, g.opts.RetryBuffer)
	}
	var tried []*Target
	var failures []string // every failed attempt's target and error, for the log
	waited, sent := false, false
	for attempt := 1; attempt <= maxAttempts; attempt++ {
		var t *Target
		a, t, p = g.acquire(r, a, p, tried)
		if t == nil && !waited && g.awaitInstance(r, a, start) {
			// Every instance refused: they are starting (handoff serve
			// after a restart) or restarting. The request waited for one
			// to pass its health check, and goes on from the start.
			waited, tried, attempt = true, nil, 0
			continue
		}
		if t == nil {
			break
		}
		if !sent && g.heldBehind(w, r, a, t) {
			return
		}
		sent = true
		x, err := g.roundTrip(r, t, body, o)
		if err != nil {
			t.inflight.Add(-1)
			failures = append(failures, fmt.Sprintf("%s after %s: %v", t.Addr, time.Since(start).Round(time.Microsecond), err))
			ae := err.(*attemptError)
			if ae.status != 0 {
				if ae.status == http.StatusGatewayTimeout { // the instance's fault, not the client's
					p.stats.fail(ae.status, time.Since(start))
				}
				g.answerFailed(w, r, a, ae, start)
				return
			}
			if ae.down {
				t.markDown(ae.err)
			}
			if !ae.retry {
				break
			}
			tried = append(tried, t)
			g.metrics.retries.Inc()
			if attempt == maxAttempts && !waited && g.awaitInstance(r, a, start) {
				waited, tried, attempt = true, nil, 0 // as above
			}
			continue
		}
		if !pinned && len(a.pools) > 1 {
			w.Header().Add("Set-Cookie", pinCookie(a.cookie, p.release))
		}
		n, ok := g.deliver(w, x, banner, r.Method)
		status := x.resp.status
		if x.clientGone {
			status = 499 // the client left before the response was written
		}
		x.finish(ok) // x is the connection's, and the connection may now serve another request
		t.inflight.Add(-1)
		g.served(r, a, p, t, status, n, attempt, start)
		if !ok {
			// The response was cut after it began: abort the client's
			// connection so that it cannot mistake the part for the whole.
			panic(http.ErrAbortHandler)
		}
		return
	}
	if r.Context().Err() != nil {
		g.served(r, a, p, nil, 499, 0, len(tried), start) // the client left first
		return
	}
	msg := "The app's instances did not answer."
	p.stats.fail(http.StatusBadGateway, time.Since(start))
	if failures != nil {
		g.log.Warn("request failed on every instance tried", "app", a.name, "path", r.URL.Path,
			"waited", waited, "failures", failures)
	}
	g.refuse(w, r, a, http.StatusBadGateway, "bad_gateway", msg, 0, start)
}

// served records a proxied request in the metrics and the access log.
func (g *Gateway) served(r *http.Request, a *appRoute, p *pool, t *Target, status int, n int64, attempts int, start time.Time) {
	d := time.Since(start)
	p.served[class(status)].Inc()
	p.stats.observe(status, d)
	a.latency.Observe(d.Seconds())
	if !g.opts.AccessLog {
		return
	}
	addr := ""
	if t != nil {
		addr = t.Addr
	}
	g.log.LogAttrs(r.Context(), slog.LevelInfo, "request",
		slog.String("app", a.name), slog.String("method", r.Method), slog.String("path", r.URL.Path),
		slog.Int("status", status), slog.Int64("bytes", n), slog.Duration("duration", d),
		slog.String("release", p.release), slog.String("target", addr), slog.Int("attempts", attempts),
		slog.String("remote", clientIP(r)))
}

// class maps a status code to its metrics slot (1xx..5xx; 0 for odd codes).
func class(status int) int {
	if c := status / 100; c >= 1 && c <= 5 {
		return c
	}
	return 0
}

var classLabel = [6]string{"other", "1xx", "2xx", "3xx", "4xx", "5xx"}

// stripConditionals makes the instance send a page's full body, so that a
// browser's cached copy from before read-only cannot hide the banner.
func stripConditionals(r *http.Request) {
	if wantsHTML(r) {
		r.Header.Del("If-None-Match")
		r.Header.Del("If-Modified-Since")
	}
}

// answerFailed answers a request that failed for a reason with its own
// status: the client's body broke (400) or stalled (408), the instance
// did not answer in time (504), or the gateway is out of file descriptors
// (503). None is retried: the instance may have acted on the request, or
// another would fail the same way.
func (g *Gateway) answerFailed(w http.ResponseWriter, r *http.Request, a *appRoute, ae *attemptError, start time.Time) {
	var code, msg string
	retryAfter := time.Duration(0)
	switch ae.status {
	case http.StatusServiceUnavailable:
		code, msg, retryAfter = "no_descriptors", "The gateway is overloaded. Please try again in a moment.", time.Second
	case http.StatusRequestTimeout:
		code, msg = "body_timeout", "The request body stopped arriving."
	case http.StatusGatewayTimeout:
		code, msg = "upstream_timeout", "The app's instance did not answer in time."
		g.log.Warn("instance did not answer within the response timeout", "app", a.name, "path", r.URL.Path, "error", ae.err)
	default:
		code, msg = "bad_request_body", "The request body was malformed or cut short."
	}
	w.Header().Set("Connection", "close")
	g.refuse(w, r, a, ae.status, code, msg, retryAfter, start)
}

// instancePoll is how often a request waiting for an instance looks again.
const instancePoll = 50 * time.Millisecond

// awaitInstance holds a request that found no instance able to take it
// until one of the app's targets passes a health check made after the
// wait began, for at most the app's hold_max from the request's start: it
// reports whether one did. A restart of handoff serve (instances starting
// again) or of every instance at once then delays requests instead of
// failing them.
//
// Only a verdict newer than the failures counts. A request whose every
// attempt failed in a way that allows a retry (a connection closed before
// any answer) may have met a moment in which every instance failed at once,
// while each still counts as healthy from its last check: a second round
// at once would fail the same way within the same millisecond. The wait
// costs about one health.interval, and only requests that would otherwise
// fail pay it.
func (g *Gateway) awaitInstance(r *http.Request, a *appRoute, start time.Time) bool {
	since := time.Now()
	deadline := start.Add(a.holdMax)
	for time.Now().Before(deadline) {
		if fresh := g.snap.Load().apps[a.name]; fresh != nil && fresh.passedSince(since) {
			return true
		}
		select {
		case <-r.Context().Done():
			return false
		case <-time.After(min(instancePoll, time.Until(deadline))):
		}
	}
	return false
}

// passedSince reports whether a target of the app that may take a request
// passed a health check after since.
func (a *appRoute) passedSince(since time.Time) bool {
	for _, p := range a.pools {
		for _, t := range p.targets {
			if t.healthy.Load() && !t.draining.Load() && t.passedAfter(since) {
				return true
			}
		}
	}
	return false
}
