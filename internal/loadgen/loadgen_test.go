package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/sampleapp"
	"github.com/handoff-dev/handoff/internal/websocket"
)

// serve starts h on 127.0.0.1 and returns its address.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// run runs cfg to its end, which every test bounds by MaxRequests or
// Duration; the context only guards against a hung test.
func run(t *testing.T, cfg Config) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatalf("load did not end by itself:\n%s", res)
	}
	t.Logf("\n%s", res)
	return res
}

func TestEveryKindAgainstTheSampleApp(t *testing.T) {
	addr := serve(t, sampleapp.Handler(sampleapp.Options{Release: "v1"}))
	for _, cfg := range []Config{
		{Fast: 2},
		{Fast: 2, FastPath: "/bytes?n=65536"},
		{Slow: 2, SlowDelay: 10 * time.Millisecond},
		{Uploaders: 2, UploadSize: 100000},
		{Streams: 2, StreamEvents: 3, StreamInterval: 5 * time.Millisecond},
		{WebSockets: 2, WebSocketInterval: time.Millisecond},
	} {
		cfg.Addr, cfg.MaxRequests = addr, 20
		res := run(t, cfg)
		if err := res.Err(); err != nil {
			t.Fatalf("%+v: %v", cfg, err)
		}
		if res.Requests != 20 || res.Releases["v1"] != 20 || res.Instances[addr] != 20 {
			t.Errorf("%+v: %d requests, releases %v, instances %v; want 20 from v1 at %s", cfg, res.Requests, res.Releases, res.Instances, addr)
		}
		// At most one keep-alive connection per client, whatever the kind
		// (a client that the other beat to all 20 requests never connects).
		if res.Connects < 1 || res.Connects > 2 || res.ForcedReconnects != 0 || res.GracefulReconnects != 0 {
			t.Errorf("%+v: %d connects, %d forced, %d graceful; want 1 or 2, 0, 0", cfg, res.Connects, res.ForcedReconnects, res.GracefulReconnects)
		}
		if res.Latency.P50 <= 0 || res.Latency.Max < res.Latency.P99 {
			t.Errorf("%+v: implausible latency %+v", cfg, res.Latency)
		}
	}
}

func TestMixedLoadForADuration(t *testing.T) {
	addr := serve(t, sampleapp.Handler(sampleapp.Options{Release: "v1"}))
	res := run(t, Config{Addr: addr, Duration: 300 * time.Millisecond, Fast: 4, Slow: 2, SlowDelay: 20 * time.Millisecond,
		Uploaders: 2, UploadSize: 10000, Streams: 2, StreamEvents: 2, StreamInterval: 10 * time.Millisecond,
		WebSockets: 2, WebSocketInterval: 10 * time.Millisecond, Rate: 200})
	if err := res.Err(); err != nil {
		t.Fatal(err)
	}
	if res.Requests == 0 || len(res.Kinds) != 5 || res.Kinds[KindFast].Clients != 4 {
		t.Fatalf("kinds: %+v", res.Kinds)
	}
	b, err := json.Marshal(res)
	if err != nil || !strings.Contains(string(b), `"forced_reconnects":0`) {
		t.Fatalf("JSON: %s %v", b, err)
	}
	if s := res.String(); !strings.Contains(s, "websocket") || !strings.Contains(s, "releases:    v1=") {
		t.Fatalf("report lacks rows:\n%s", s)
	}
}

// closingServer answers every request with a keep-alive response, then
// closes the connection without having said Connection: close — what a
// careless drain or upgrade does.
func closingServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Release: v1\r\n\r\nok")
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestUnannouncedCloseIsAForcedReconnectAndAFailure(t *testing.T) {
	var mu sync.Mutex
	var reused []bool
	res := run(t, Config{Addr: closingServer(t), Fast: 1, MaxRequests: 4, Record: func(r Record) {
		mu.Lock()
		defer mu.Unlock()
		reused = append(reused, r.Reused)
	}})
	// Request 1 succeeds; 2 goes on the reused, dead connection and fails
	// (no retry); 3 dials anew and succeeds; 4 fails like 2.
	if res.Requests != 4 || res.Failures != 2 || res.ForcedReconnects != 2 || res.GracefulReconnects != 0 || res.Connects != 2 {
		t.Fatalf("requests %d failures %d forced %d graceful %d connects %d; want 4 2 2 0 2",
			res.Requests, res.Failures, res.ForcedReconnects, res.GracefulReconnects, res.Connects)
	}
	if fmt.Sprint(reused) != "[false true false true]" {
		t.Fatalf("Reused per request = %v", reused)
	}
	if res.Status[200] != 2 || !strings.HasPrefix(res.Errors[0].Error, "fast: read response: ") {
		t.Fatalf("status %v errors %v", res.Status, res.Errors)
	}
}

func TestAnnouncedCloseIsAGracefulReconnect(t *testing.T) {
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	}))
	res := run(t, Config{Addr: addr, Fast: 1, MaxRequests: 5})
	if res.Failures != 0 || res.GracefulReconnects != 5 || res.ForcedReconnects != 0 || res.Connects != 5 {
		t.Fatalf("failures %d graceful %d forced %d connects %d; want 0 5 0 5",
			res.Failures, res.GracefulReconnects, res.ForcedReconnects, res.Connects)
	}
}

func TestServerErrorsFailButClientErrorsDoNot(t *testing.T) {
	addr := serve(t, sampleapp.Handler(sampleapp.Options{Release: "v1"}))
	res := run(t, Config{Addr: addr, Fast: 1, FastPath: "/status/500", MaxRequests: 5})
	if res.Failures != 5 || res.Status[500] != 5 || res.Errors[0].Error != "fast: status 500" || res.Connects != 1 {
		t.Fatalf("failures %d status %v errors %v connects %d", res.Failures, res.Status, res.Errors, res.Connects)
	}
	res = run(t, Config{Addr: addr, Fast: 1, FastPath: "/status/404", MaxRequests: 5})
	if res.Failures != 0 || res.Status[404] != 5 {
		t.Fatalf("404s: failures %d status %v", res.Failures, res.Status)
	}
}

func TestCookiesRoundTripWhenAsked(t *testing.T) {
	var carried atomic.Int64
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c, err := r.Cookie("pin"); err == nil && c.Value == "v2" {
			carried.Add(1)
		} else {
			http.SetCookie(w, &http.Cookie{Name: "pin", Value: "v2"})
		}
		http.SetCookie(w, &http.Cookie{Name: "gone", MaxAge: -1})
	}))
	for _, cookies := range []bool{true, false} {
		carried.Store(0)
		run(t, Config{Addr: addr, Fast: 1, MaxRequests: 5, Cookies: cookies})
		want := map[bool]int64{true: 4, false: 0}[cookies]
		if got := carried.Load(); got != want {
			t.Errorf("Cookies=%v: %d requests carried the cookie, want %d", cookies, got, want)
		}
	}
}

func TestWrongBodiesAreFailures(t *testing.T) {
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if r.URL.Path == "/upload" {
			_, _ = io.WriteString(w, "3 not-the-hash\n")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: 1\n\ndata: 2\n\n") // then end, 3 short
	}))
	// One kind per run: a shared request budget would let one client take it all.
	streams := run(t, Config{Addr: addr, Streams: 1, StreamEvents: 5, StreamInterval: time.Millisecond, MaxRequests: 3})
	uploads := run(t, Config{Addr: addr, Uploaders: 1, MaxRequests: 3})
	for _, res := range []Result{streams, uploads} {
		if res.Failures != 3 || res.ForcedReconnects != 0 {
			t.Fatalf("failures %d forced %d, want 3 0", res.Failures, res.ForcedReconnects)
		}
	}
	if e := streams.Kinds[KindStream].Errors; len(e) != 1 || e[0].Error != "read body: stream cut short: 2 of 5 events" {
		t.Errorf("stream errors %v", e)
	}
	if e := uploads.Kinds[KindUpload].Errors; len(e) != 1 || !strings.Contains(e[0].Error, "wrong upload echo") {
		t.Errorf("upload errors %v", e)
	}
}

func TestTimeoutIsAFailure(t *testing.T) {
	release := make(chan struct{})
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	res := run(t, Config{Addr: addr, Fast: 1, MaxRequests: 1, Timeout: 50 * time.Millisecond})
	if res.Failures != 1 || res.Errors[0].Error != "fast: read response: timeout" {
		t.Fatalf("failures %d errors %v", res.Failures, res.Errors)
	}
}

func TestStopLetsRequestsInFlightFinish(t *testing.T) {
	arrived := make(chan struct{}, 1)
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		time.Sleep(50 * time.Millisecond)
	}))
	r, err := Start(context.Background(), Config{Addr: addr, Fast: 1})
	if err != nil {
		t.Fatal(err)
	}
	<-arrived
	res := r.Stop()
	if res.Requests < 1 || res.Failures != 0 {
		t.Fatalf("requests %d failures %d; want the in-flight request finished", res.Requests, res.Failures)
	}
	if again := r.Stop(); again.Requests != res.Requests {
		t.Fatal("a second Stop changed the result")
	}
}

func TestRateSpacesRequests(t *testing.T) {
	addr := serve(t, sampleapp.Handler(sampleapp.Options{Release: "v1"}))
	res := run(t, Config{Addr: addr, Fast: 1, MaxRequests: 5, Rate: 50})
	if res.Elapsed < 80*time.Millisecond {
		t.Fatalf("5 requests at 50/s took %v, want at least 80ms", res.Elapsed)
	}
}

// socketServer echoes `echoes` messages per WebSocket, then ends it with
// end.
func socketServer(t *testing.T, echoes int, end func(*websocket.Conn)) string {
	return serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Release", "v1")
		c, err := websocket.Upgrade(w, r)
		if err != nil {
			return
		}
		for range echoes {
			op, msg, err := c.ReadMessage()
			if err != nil || c.WriteMessage(op, msg) != nil {
				return
			}
		}
		end(c)
	}))
}

func TestWebSocketCloseFrameIsAGracefulReconnect(t *testing.T) {
	addr := socketServer(t, 3, func(c *websocket.Conn) { _ = c.CloseWithCode(websocket.CloseGoingAway, "") })
	res := run(t, Config{Addr: addr, WebSockets: 1, WebSocketInterval: time.Millisecond, MaxRequests: 7})
	// Slots 1-3 echo; 4 finds the close (no request); 5-7 echo on a new socket.
	if res.Requests != 6 || res.Failures != 0 || res.GracefulReconnects != 1 || res.Connects != 2 || res.Releases["v1"] != 6 {
		t.Fatalf("requests %d failures %d graceful %d connects %d releases %v; want 6 0 1 2 v1=6",
			res.Requests, res.Failures, res.GracefulReconnects, res.Connects, res.Releases)
	}
}

func TestWebSocketCutIsAForcedReconnectAndAFailure(t *testing.T) {
	addr := socketServer(t, 2, func(c *websocket.Conn) { _ = c.NetConn().Close() })
	res := run(t, Config{Addr: addr, WebSockets: 1, WebSocketInterval: time.Millisecond, MaxRequests: 3})
	if res.Requests != 3 || res.Failures != 1 || res.ForcedReconnects != 1 {
		t.Fatalf("requests %d failures %d forced %d; want 3 1 1", res.Requests, res.Failures, res.ForcedReconnects)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{{Fast: 1}, {Addr: "127.0.0.1:1"}, {Addr: "127.0.0.1:1", Fast: -1}} {
		if _, err := Start(context.Background(), cfg); err == nil {
			t.Errorf("Start(%+v) succeeded", cfg)
		}
	}
}
