package dashboard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/internal/store"
)

// errStreamEnded ends a stream whose session ended.
var errStreamEnded = errors.New("session ended")

// events serves the page's event stream (text/event-stream), polling the
// API every Options.Poll and sending only what changed:
//
//	event: status   data: the parts of the page (HTML, see fragments) that changed
//	event: log      id: the newest event's ID; data: an <li> per new event, newest first
//	event: expired  the session ended or was logged out: the page goes to /login
//
// and a ": keep-alive" comment after Options.KeepAlive of silence. The log
// resumes after the Last-Event-ID header (a reconnect), else after the
// query's after=ID (the page's newest event), else shows the last events.
func (d *Dashboard) events(w http.ResponseWriter, r *http.Request) {
	s, err := d.auth.identify(r)
	if limited, ok := errors.AsType[*rateLimitedError](err); ok {
		setRetryAfter(w, limited)
		http.Error(w, "429 "+limited.Error(), http.StatusTooManyRequests)
		return
	}
	if err != nil {
		http.Error(w, "401 unauthorized: log in at /login", http.StatusUnauthorized)
		return
	}
	select {
	case d.streams <- struct{}{}:
		defer func() { <-d.streams }()
	default:
		http.Error(w, fmt.Sprintf("503: %d dashboards are open already, the most this server serves", cap(d.streams)), http.StatusServiceUnavailable)
		return
	}
	st := &stream{d: d, w: w, rc: http.NewResponseController(w), session: s, sent: map[string]string{}, lastEvent: resumeAfter(r)}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // nginx in front: do not buffer the stream
	w.WriteHeader(http.StatusOK)
	if err := st.run(r.Context()); err != nil && r.Context().Err() == nil && !errors.Is(err, errStreamEnded) {
		d.opts.Logger.Debug("dashboard event stream ended", "remote", r.RemoteAddr, "error", err)
	}
}

// resumeAfter is the event ID the log resumes after, -1 for "the last ones".
func resumeAfter(r *http.Request) int64 {
	for _, v := range []string{r.Header.Get("Last-Event-ID"), r.URL.Query().Get("after")} {
		if id, err := strconv.ParseInt(v, 10, 64); err == nil && id >= 0 {
			return id
		}
	}
	return -1
}

// stream is one client's event stream.
type stream struct {
	d         *Dashboard
	w         http.ResponseWriter
	rc        *http.ResponseController
	session   *session          // nil for a Bearer request
	sent      map[string]string // fragment id → the HTML last sent
	lastEvent int64
	lastWrite time.Time
}

// run polls and sends until the client leaves, the session ends, a write
// fails or times out, or the dashboard closes.
func (s *stream) run(ctx context.Context) error {
	if err := s.write("retry: 2000\n"); err != nil {
		return err
	}
	if s.lastEvent < 0 {
		if err := s.sendTail(ctx); err != nil {
			return err
		}
	}
	tick := time.NewTicker(s.d.opts.Poll)
	defer tick.Stop()
	for {
		if err := s.poll(ctx); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.d.closing:
			return nil
		case <-tick.C:
		}
	}
}

// poll sends what changed since the last poll.
func (s *stream) poll(ctx context.Context) error {
	if s.session != nil {
		if !s.d.auth.now().Before(s.session.Expires) || s.d.auth.isRevoked(*s.session) {
			s.send("expired", "", "session ended")
			return errStreamEnded
		}
	}
	if err := s.sendStatus(ctx); err != nil {
		return err
	}
	events, err := eventsAfter(ctx, s.d.api, s.lastEvent)
	if err != nil {
		return s.sendProblem(ctx, err)
	}
	if err := s.sendLog(events); err != nil {
		return err
	}
	if time.Since(s.lastWrite) >= s.d.opts.KeepAlive {
		return s.write(": keep-alive\n")
	}
	return nil
}

// sendStatus sends the fragments that differ from those last sent.
func (s *stream) sendStatus(ctx context.Context) error {
	st, err := s.d.api.Status(ctx, "")
	if err != nil {
		return s.sendProblem(ctx, fmt.Errorf("read status: %w", err))
	}
	sv := newStatusView(st)
	sv.Databases = dbView(ctx, s.d.api, time.Now())
	frags, err := fragments(sv)
	if err != nil {
		return err
	}
	return s.sendFragments(frags)
}

// sendProblem shows err on the page in place of the warnings; the stream
// goes on, as the API may answer again (a moment into an upgrade, say).
func (s *stream) sendProblem(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	frags, ferr := fragments(statusView{Problem: err.Error()})
	if ferr != nil {
		return ferr
	}
	return s.sendFragments(slices.DeleteFunc(frags, func(f fragment) bool { return f.id != "alerts" }))
}

func (s *stream) sendFragments(frags []fragment) error {
	var b strings.Builder
	for _, f := range frags {
		if s.sent[f.id] != f.html {
			s.sent[f.id] = f.html
			b.WriteString(f.html)
		}
	}
	if b.Len() == 0 {
		return nil
	}
	return s.send("status", "", b.String())
}

// sendTail sends the log's last events, for a stream with no place to resume.
func (s *stream) sendTail(ctx context.Context) error {
	events, err := tailEvents(ctx, s.d.api, shownEvents)
	if err != nil {
		return s.sendProblem(ctx, err)
	}
	if len(events) == 0 {
		s.lastEvent = 0
	}
	return s.sendLog(events)
}

// sendLog sends events (oldest first) as list items, newest first.
func (s *stream) sendLog(events []store.Event) error {
	if len(events) == 0 {
		return nil
	}
	var b bytes.Buffer
	for _, e := range slices.Backward(events) {
		if err := templates.ExecuteTemplate(&b, "event", e); err != nil {
			return fmt.Errorf("render event %d: %w", e.ID, err)
		}
	}
	s.lastEvent = events[len(events)-1].ID
	return s.send("log", strconv.FormatInt(s.lastEvent, 10), b.String())
}

// send sends one message; data may have several lines.
func (s *stream) send(event, id, data string) error {
	var b strings.Builder
	b.WriteString("event: " + event + "\n")
	if id != "" {
		b.WriteString("id: " + id + "\n")
	}
	for line := range strings.SplitSeq(strings.TrimRight(data, "\n"), "\n") {
		b.WriteString("data: " + strings.TrimRight(line, "\r") + "\n")
	}
	return s.write(b.String())
}

// write writes raw lines and the blank line that ends a message, and
// flushes them, bounded by Options.WriteTimeout.
func (s *stream) write(lines string) error {
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.d.opts.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("set write deadline: %w", err)
	}
	if _, err := io.WriteString(s.w, lines+"\n"); err != nil {
		return fmt.Errorf("write event stream: %w", err)
	}
	if err := s.rc.Flush(); err != nil {
		return fmt.Errorf("flush event stream: %w", err)
	}
	s.lastWrite = time.Now()
	return nil
}
