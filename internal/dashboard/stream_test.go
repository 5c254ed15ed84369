package dashboard

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/gateway"
)

// sse is a client's view of an event stream.
type sse struct {
	t      *testing.T
	resp   *http.Response
	r      *bufio.Reader
	cancel context.CancelFunc
}

// message is one server-sent event.
type message struct {
	event, id, data string
}

func (s *testServer) stream(t *testing.T, path string, headers ...string) *sse {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+path, nil)
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	st := &sse{t: t, resp: resp, r: bufio.NewReader(resp.Body), cancel: cancel}
	t.Cleanup(st.close)
	return st
}

func (s *sse) close() {
	s.cancel()
	s.resp.Body.Close()
}

// next reads the next message (comments and retry: lines skipped), failing
// the test after 5s.
func (s *sse) next() (message, error) {
	s.t.Helper()
	type result struct {
		m   message
		err error
	}
	done := make(chan result, 1)
	go func() {
		var m message
		var data []string
		for {
			line, err := s.r.ReadString('\n')
			if err != nil {
				done <- result{m, err}
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "":
				if m.event != "" {
					m.data = strings.Join(data, "\n")
					done <- result{m, nil}
					return
				}
			case strings.HasPrefix(line, "event: "):
				m.event = line[len("event: "):]
			case strings.HasPrefix(line, "id: "):
				m.id = line[len("id: "):]
			case strings.HasPrefix(line, "data: "):
				data = append(data, line[len("data: "):])
			}
		}
	}()
	select {
	case r := <-done:
		return r.m, r.err
	case <-time.After(5 * time.Second):
		s.t.Fatal("no event within 5s")
		return message{}, nil
	}
}

// expect reads the next message, failing unless it is of kind event.
func (s *sse) expect(event string) message {
	s.t.Helper()
	m, err := s.next()
	if err != nil {
		s.t.Fatalf("read the stream, want %q: %v", event, err)
	}
	if m.event != event {
		s.t.Fatalf("got event %q, want %q:\n%s", m.event, event, m.data)
	}
	return m
}

// TestStream: the stream sends the page's parts, then only those that
// change, and new event-log entries with their IDs.
func TestStream(t *testing.T) {
	api := newFakeAPI()
	api.appendEvent("web", "deploy", "cli", "old news")
	s := newTestServer(t, api)
	cookie := s.login(t, "alice")

	st := s.stream(t, "/events?after=1", cookie)
	if ct := st.resp.Header.Get("Content-Type"); st.resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("GET /events: %s, %s", st.resp.Status, ct)
	}
	first := st.expect("status")
	for _, want := range []string{`id="node"`, `id="app-web-state"`, `id="app-web-modes"`, `id="app-jobs-state"`, "web-v2-0", `id="migrations"`} {
		if !strings.Contains(first.data, want) {
			t.Errorf("the first status event lacks %s", want)
		}
	}

	// A mode changes: only the app's switches are sent again.
	api.setStatus(func(st *control.Status) {
		st.Apps[0].Mode = "maintenance"
		st.Apps[0].Modes.Maintenance = &gateway.Maintenance{Since: time.Now()}
	})
	m := st.expect("status")
	if !strings.Contains(m.data, `id="app-web-modes"`) || !strings.Contains(m.data, `id="sw-web-maintenance" class="switch" role="switch" aria-checked="true"`) {
		t.Errorf("the switch did not turn on in the stream:\n%s", m.data)
	}
	if strings.Contains(m.data, `id="app-web-state"`) || strings.Contains(m.data, `id="app-jobs`) {
		t.Errorf("parts that did not change were sent again:\n%s", m.data)
	}

	// An event: sent as a log entry, with its ID; "old news" (ID 1) is not.
	api.appendEvent("web", "mode", "alice (dashboard)", "web: maintenance on")
	m = st.expect("log")
	if m.id != "2" || !strings.Contains(m.data, "web: maintenance on") || strings.Contains(m.data, "old news") {
		t.Errorf("log event: id %s\n%s", m.id, m.data)
	}

	// A reconnect resumes after Last-Event-ID, not the query's after=.
	api.appendEvent("web", "mode", "", "third")
	again := s.stream(t, "/events?after=0", cookie, "Last-Event-ID: 2")
	again.expect("status")
	if m := again.expect("log"); m.id != "3" || strings.Contains(m.data, "maintenance on") {
		t.Errorf("resumed log: id %s\n%s", m.id, m.data)
	}

	// MaxStreams is 2: a third is refused while both are open.
	if third := s.stream(t, "/events", cookie); third.resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a stream beyond MaxStreams: %s, want 503", third.resp.Status)
	}

	// Close (the server's Shutdown) ends the streams.
	s.dash.Close()
	for _, c := range []*sse{st, again} {
		for {
			if _, err := c.next(); err != nil {
				break // the stream ended (keep-alives may come first)
			}
		}
	}
}

// TestStreamWithoutPlaceToResume: a stream with no after= starts with the
// log's last events.
func TestStreamWithoutPlaceToResume(t *testing.T) {
	api := newFakeAPI()
	for range 70 {
		api.appendEvent("web", "instance", "supervisor", "something")
	}
	s := newTestServer(t, api)
	st := s.stream(t, "/events", "Authorization: Bearer "+testToken)
	m := st.expect("log")
	if n := strings.Count(m.data, "<li "); m.id != "70" || n != shownEvents {
		t.Errorf("the first log event has id %s and %d entries; want 70 and %d", m.id, n, shownEvents)
	}
	st.expect("status")
}

// TestStreamProblem: when the API fails, the stream says so on the page
// and goes on; the message goes when the API answers again.
func TestStreamProblem(t *testing.T) {
	api := newFakeAPI()
	s := newTestServer(t, api)
	st := s.stream(t, "/events?after=0", "Authorization: Bearer "+testToken)
	st.expect("status")
	api.setStatus(func(*control.Status) {})
	api.mu.Lock()
	api.statusErr = errors.New("handoff is handing over to a new process")
	api.mu.Unlock()
	if m := st.expect("status"); !strings.Contains(m.data, `<div id="alerts"`) || !strings.Contains(m.data, "handing over") || strings.Contains(m.data, "app-web") {
		t.Errorf("the problem event:\n%s", m.data)
	}
	api.mu.Lock()
	api.statusErr = nil
	api.mu.Unlock()
	if m := st.expect("status"); !strings.Contains(m.data, `<div id="alerts"`) || strings.Contains(m.data, "handing over") {
		t.Errorf("the problem did not go:\n%s", m.data)
	}
}

// TestStreamSessionEnds: a logged-out session's stream tells the page so
// and ends.
func TestStreamSessionEnds(t *testing.T) {
	s := newTestServer(t, newFakeAPI())
	cookie := s.login(t, "alice")
	st := s.stream(t, "/events?after=0", cookie)
	st.expect("status")
	csrf := s.csrf(t, cookie)
	s.do(t, "POST", "/logout", "csrf="+csrf, cookie, "Content-Type: application/x-www-form-urlencoded")
	for {
		m, err := st.next()
		if err != nil {
			t.Fatalf("the stream ended without an expired event: %v", err)
		}
		if m.event == "expired" {
			break
		}
	}
	if _, err := st.next(); err == nil {
		t.Error("the stream goes on after its session ended")
	}
}
