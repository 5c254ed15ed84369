package gateway

import (
	"bufio"
	"bytes"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/h1"
)

// wireBackend is an instance written at the byte level: it records every
// byte it reads and answers each request it can parse with respond.
type wireBackend struct {
	addr     string
	mu       sync.Mutex
	got      bytes.Buffer
	complete atomic.Int64 // requests read whole, body included
}

func (b *wireBackend) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.got.Write(p)
}

func (b *wireBackend) received() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.got.String()
}

func newWireBackend(t *testing.T, respond func(c net.Conn, r *http.Request, body []byte)) *wireBackend {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &wireBackend{addr: l.Addr().String()}
	var conns sync.WaitGroup
	t.Cleanup(func() { l.Close(); conns.Wait() })
	// The accept loop holds a count of its own, so that a connection's Add
	// never meets a Wait on a zero counter (a race the detector reports).
	conns.Add(1)
	go func() {
		defer conns.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			go func() {
				defer conns.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(io.TeeReader(c, b))
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body, err := io.ReadAll(r.Body)
					if err != nil {
						return
					}
					if r.URL.Path != "/healthz" {
						b.complete.Add(1)
					}
					respond(c, r, body)
				}
			}()
		}
	}()
	return b
}

// okResponse answers with the path it saw.
func okResponse(c net.Conn, r *http.Request, body []byte) {
	msg := r.Method + " " + r.RequestURI
	io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "+strconv.Itoa(len(msg))+"\r\n\r\n"+msg)
}

// frontDoor serves a gateway for app "web" on handoff's own HTTP/1.1
// server, as handoff serve does, with short timeouts.
func frontDoor(t *testing.T, targets ...string) (*Gateway, string) {
	t.Helper()
	g := New(Options{RetryBuffer: 64 << 10, ResponseTimeout: 500 * time.Millisecond})
	t.Cleanup(g.Close)
	if err := g.Configure(config.Apps{testApp("web")}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.SetRoute("web", Route{Pools: []Pool{{Release: "v1", Targets: targets, Weight: 1}}}); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &h1.Server{Handler: g, ReadHeaderTimeout: 5 * time.Second, BodyTimeout: 300 * time.Millisecond}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return g, l.Addr().String()
}

// exchangeRaw writes req on a new connection and reads one response.
func exchangeRaw(t *testing.T, addr, req string) (*http.Response, string, time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no response to %q: %v", req, err)
	}
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body), time.Since(start)
}

// The instance gets the body framed once, by the gateway: Node's and
// gunicorn's parsers refuse a second Content-Length, however equal. Names
// with underscores are dropped: CGI-style servers read them as the
// headers the gateway sets.
func TestForwardedFraming(t *testing.T) {
	b := newWireBackend(t, okResponse)
	_, addr := frontDoor(t, b.addr)
	resp, _, _ := exchangeRaw(t, addr, "POST /form HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"+
		"X_Forwarded_For: 6.6.6.6\r\nHandoff_Read_Only: 0\r\nX-Real: kept\r\n\r\nhello")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := strings.ToLower(b.received())
	if n := strings.Count(got, "\ncontent-length:"); n != 1 {
		t.Errorf("the instance got %d Content-Length fields:\n%s", n, got)
	}
	if strings.Contains(got, "_") || !strings.Contains(got, "x-real: kept") {
		t.Errorf("underscore names must go, others stay:\n%s", got)
	}
}

// A request whose body breaks its framing or stops coming gets its answer
// at once (400) or after the body timeout (408); it never waits on the
// instance, and the instance never gets a whole request from it.
func TestBrokenRequestBodies(t *testing.T) {
	b := newWireBackend(t, okResponse)
	_, addr := frontDoor(t, b.addr)
	chunked := "POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"bad chunk size", chunked + "zz\r\nabc\r\n0\r\n\r\n", 400},
		{"bare LF in chunk line", chunked + "3\nabc\r\n0\r\n\r\n", 400},
		{"chunk longer than its size", chunked + "3\r\nabcdef\r\n0\r\n\r\n", 400},
		{"bad trailer", chunked + "3\r\nabc\r\n0\r\nno colon here\r\n\r\n", 400},
		{"stalled chunked body", chunked + "3\r\nabc\r\n", 408},
		{"stalled body", "POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\nabc", 408},
		{"stalled large body", "POST /s HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\nabc", 408},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := b.complete.Load()
			resp, _, took := exchangeRaw(t, addr, tc.req)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if took > 3*time.Second {
				t.Fatalf("answered after %v", took)
			}
			if !resp.Close {
				t.Error("the connection must close after a broken body")
			}
			if b.complete.Load() != before {
				t.Errorf("the instance got a whole request the client never framed:\n%q", b.received())
			}
		})
	}
}

// An instance that takes a request and says nothing gets it a 504 after
// the response timeout, not a request held for ever.
func TestSilentInstance(t *testing.T) {
	b := newWireBackend(t, func(c net.Conn, r *http.Request, body []byte) {
		time.Sleep(2 * time.Second)
	})
	_, addr := frontDoor(t, b.addr)
	resp, _, took := exchangeRaw(t, addr, "GET /hang HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get("Handoff-Refused") != "upstream_timeout" {
		t.Fatalf("status %d %v, want 504", resp.StatusCode, resp.Header)
	}
	if took < 400*time.Millisecond || took > 1500*time.Millisecond {
		t.Fatalf("answered after %v, want about the 500ms response timeout", took)
	}
}

// A protocol switch waits for the instance's answer no longer than any
// request does.
func TestSilentInstanceUpgrade(t *testing.T) {
	b := newWireBackend(t, func(c net.Conn, r *http.Request, body []byte) {
		time.Sleep(2 * time.Second)
	})
	_, addr := frontDoor(t, b.addr)
	resp, _, took := exchangeRaw(t, addr, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d %v, want 502", resp.StatusCode, resp.Header)
	}
	if took < 400*time.Millisecond || took > 1500*time.Millisecond {
		t.Fatalf("answered after %v, want about the 500ms response timeout", took)
	}
}

// The gateway routes, checks the allow-list and forwards on one path: the
// one the app acts on.
func TestPathRule(t *testing.T) {
	b := newWireBackend(t, okResponse)
	g, addr := frontDoor(t, b.addr)
	if err := g.SetModes("web", Modes{ReadOnly: &ReadOnly{Since: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		method, target string
		status         int
		seen           string // the target the instance got, when forwarded
	}{
		{"POST", "/login", 200, "/login"},
		{"POST", "/login/x", 200, "/login/x"},
		{"POST", "/login/../admin", 503, ""},
		{"POST", "/login/%2e%2e/admin", 503, ""},
		{"POST", "/login/%2E%2e/admin?x=1", 503, ""},
		{"POST", "/login/..%2fadmin", 400, ""},
		{"POST", "/login/..%5Cadmin", 400, ""},
		{"POST", "/login/..;/admin", 400, ""},
		{"POST", "/admin/../login/x", 200, "/login/x"},
		{"GET", "/a/./b/../c?q=%2e", 200, "/a/c?q=%2e"},
		{"GET", "/a/%2e%2e/b/", 200, "/b/"},
		{"GET", "/files/a%2Fb", 200, "/files/a%2Fb"},
		{"GET", "/%7euser/x.js", 200, "/~user/x.js"},
		{"GET", "/..", 400, ""},
		{"GET", "/../../etc/passwd", 400, ""},
		{"GET", "/%2E%2E/%2e%2e/etc/passwd", 400, ""},
		{"GET", "/a/%00b", 400, ""},
		{"GET", "/a/%zzb", 400, ""},
		{"GET", "/a/..", 200, "/"},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			resp, body, _ := exchangeRaw(t, addr, tc.method+" "+tc.target+" HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.seen != "" && body != tc.method+" "+tc.seen {
				t.Fatalf("the instance saw %q, want %q", body, tc.method+" "+tc.seen)
			}
		})
	}
}

// Only WebSocket is tunneled. An Upgrade to h2c, to an instance that
// would switch, goes on as a plain request without it: else the client
// would hold an HTTP/2 connection to the instance itself, past read-only
// mode and every header the gateway sets.
func TestOnlyWebSocketIsTunneled(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	b := newWireBackend(t, func(c net.Conn, r *http.Request, body []byte) {
		if r.URL.Path == "/" { // not a health check
			mu.Lock()
			seen = append(seen, r.Header.Get("Upgrade")+"|"+r.Header.Get("Http2-Settings"))
			mu.Unlock()
		}
		if r.Header.Get("Upgrade") != "" {
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: "+r.Header.Get("Upgrade")+"\r\n\r\n")
			return
		}
		okResponse(c, r, body)
	})
	g, addr := frontDoor(t, b.addr)
	if err := g.SetModes("web", Modes{ReadOnly: &ReadOnly{Since: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	for _, up := range []string{"h2c", "websocket, h2c", "foo"} {
		resp, body, _ := exchangeRaw(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: "+up+"\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n")
		if resp.StatusCode != http.StatusOK || body != "GET /" {
			t.Errorf("Upgrade: %s: %d %q, want the instance's plain 200", up, resp.StatusCode, body)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range seen {
		if s != "|" {
			t.Errorf("the instance saw Upgrade|HTTP2-Settings %q, want neither", s)
		}
	}
	if len(seen) != 3 {
		t.Errorf("the instance saw %d requests, want 3", len(seen))
	}
}

// TRACE is refused, whatever mode the app is in: the instance would echo
// the client's cookies and credentials to whatever script asked.
func TestTraceRefused(t *testing.T) {
	b := newWireBackend(t, okResponse)
	_, addr := frontDoor(t, b.addr)
	resp, body, _ := exchangeRaw(t, addr, "TRACE / HTTP/1.1\r\nHost: a\r\nCookie: session=secret\r\n\r\n")
	if resp.StatusCode != http.StatusMethodNotAllowed || strings.Contains(body, "secret") {
		t.Fatalf("status %d %q, want 405 and no echo", resp.StatusCode, body)
	}
	if resp, body, _ := exchangeRaw(t, addr, "OPTIONS / HTTP/1.1\r\nHost: a\r\n\r\n"); resp.StatusCode != 200 || body != "OPTIONS /" {
		t.Fatalf("OPTIONS: status %d %q, want the instance's 200", resp.StatusCode, body)
	}
}

func TestHostWithTrailingDot(t *testing.T) {
	a, def := &appRoute{name: "a"}, &appRoute{name: "default"}
	s := &snapshot{byHost: map[string]*appRoute{"example.com": a}, def: def}
	for _, h := range []string{"example.com", "Example.COM.", "example.com.:8080", "example.com:80"} {
		if got := s.route(h); got != a {
			t.Errorf("route(%q) = %s, want a", h, got.name)
		}
	}
	if got := s.route("example.com.."); got != def {
		t.Errorf("route(example.com..) = %s, want the default", got.name)
	}
}

// An Upgrade request with a body is refused: the tunnel would announce
// the body and never send it.
func TestUpgradeWithBody(t *testing.T) {
	b := newWireBackend(t, okResponse)
	_, addr := frontDoor(t, b.addr)
	resp, _, took := exchangeRaw(t, addr, "GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nContent-Length: 5\r\n\r\nhello")
	if resp.StatusCode != http.StatusBadRequest || took > 2*time.Second {
		t.Fatalf("status %d after %v, want 400 at once", resp.StatusCode, took)
	}
}

// What an instance sends is checked before the client gets it: a broken
// or hostile head is a 502, forbidden trailers are dropped, and a body
// that breaks before anything was sent is a 502 too.
func TestInstanceResponses(t *testing.T) {
	many := strings.Repeat("X-Many: 1\r\n", 600)
	for _, tc := range []struct {
		name, resp string
		status     int
		body       string
		check      func(t *testing.T, resp *http.Response)
	}{
		{"NUL in a value", "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 0\r\n\r\n", 502, "", nil},
		{"bad name", "HTTP/1.1 200 OK\r\nX A: b\r\nContent-Length: 0\r\n\r\n", 502, "", nil},
		{"101 without Upgrade", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n", 502, "", func(t *testing.T, resp *http.Response) {
			if resp.Header.Get("Upgrade") != "" {
				t.Errorf("the 502 carries the 101's Upgrade: %v", resp.Header)
			}
		}},
		{"status 999", "HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n", 502, "", nil},
		{"status 099", "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n", 502, "", nil},
		{"too many fields", "HTTP/1.1 200 OK\r\n" + many + "Content-Length: 0\r\n\r\n", 502, "", nil},
		{"gzip transfer coding", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz", 502, "", nil},
		{"gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\n", 502, "", nil},
		{"identity overrides length", "HTTP/1.1 200 OK\r\nTransfer-Encoding: identity\r\nContent-Length: 2\r\n\r\nuntil close", 200, "until close", nil},
		{"head cut short", "HTTP/1.1 200 OK\r\nContent-Len", 502, "", nil},
		{"body cut short", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", 502, "", nil},
		{"trailers filtered", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n3\r\nabc\r\n0\r\n" +
			"X-Sum: 1\r\nContent-Length: 99\r\nSet-Cookie: evil=1\r\n\r\n", 200, "abc", func(t *testing.T, resp *http.Response) {
			if resp.Trailer.Get("X-Sum") != "1" || resp.Trailer.Get("Set-Cookie") != "" || resp.Trailer.Get("Content-Length") != "" {
				t.Errorf("trailers %v: want X-Sum only", resp.Trailer)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newWireBackend(t, func(c net.Conn, r *http.Request, body []byte) {
				io.WriteString(c, tc.resp)
				c.Close()
			})
			_, addr := frontDoor(t, b.addr)
			resp, body, _ := exchangeRaw(t, addr, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.status == 200 && body != tc.body {
				t.Fatalf("body %q, want %q", body, tc.body)
			}
			if tc.check != nil {
				tc.check(t, resp)
			}
		})
	}
}

// A request's trailer goes on to the instance after the last chunk, less
// the fields a trailer may not carry.
func TestRequestTrailerForwarded(t *testing.T) {
	b := newWireBackend(t, okResponse)
	_, addr := frontDoor(t, b.addr)
	resp, _, _ := exchangeRaw(t, addr, "POST /t HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum, Set-Cookie\r\n\r\n"+
		"5;ext=1\r\nhello\r\n0\r\nX-Checksum: abc\r\nSet-Cookie: a=b\r\n\r\n")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	got := b.received()
	if !strings.Contains(got, "\r\nTrailer: X-Checksum\r\n") || !strings.Contains(got, "0\r\nX-Checksum: abc\r\n\r\n") || strings.Contains(got, "a=b") {
		t.Fatalf("the instance got:\n%q", got)
	}
}

// An instance that sends a body after a HEAD answer (bare WSGI and PSGI
// servers do) does not get its next request read against those bytes.
func TestHeadAnswerWithBody(t *testing.T) {
	b := newWireBackend(t, func(c net.Conn, r *http.Request, body []byte) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
		if r.Method == "HEAD" {
			time.Sleep(50 * time.Millisecond) // after the gateway has taken the head
		}
		io.WriteString(c, "hello")
	})
	_, addr := frontDoor(t, b.addr)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i, method := range []string{"HEAD", "GET", "HEAD", "GET"} {
		io.WriteString(c, method+" / HTTP/1.1\r\nHost: a\r\n\r\n")
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		want := "hello"
		if method == "HEAD" {
			want = ""
		}
		if resp.StatusCode != http.StatusOK || string(body) != want {
			t.Fatalf("request %d (%s): %d %q", i, method, resp.StatusCode, body)
		}
	}
}

func TestCleanHost(t *testing.T) {
	for in, want := range map[string]string{"example.com.": "example.com", "example.com.:8080": "example.com:8080",
		"example.com": "example.com", "[::1]:80": "[::1]:80", "a.b": "a.b"} {
		r := &http.Request{Host: in}
		if cleanHost(r); r.Host != want {
			t.Errorf("cleanHost(%q) = %q, want %q", in, r.Host, want)
		}
	}
}

// A request that finds every instance refusing (they are starting again,
// after a restart of handoff serve) waits for one to pass its health
// check, within hold_max, instead of failing with 502.
func TestWaitsForAnInstanceToComeUp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens yet
	_, gw := frontDoor(t, addr)
	go func() {
		time.Sleep(400 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "up") })}
		go srv.Serve(l)
		t.Cleanup(func() { srv.Close() })
	}()
	resp, body, took := exchangeRaw(t, gw, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != http.StatusOK || body != "up" {
		t.Fatalf("status %d %q after %v, want the instance's answer once it is up", resp.StatusCode, body, took)
	}
	if took < 350*time.Millisecond || took > 1900*time.Millisecond {
		t.Fatalf("answered after %v: want after the instance came up, within hold_max (2s)", took)
	}
}

// Every instance fails a request at once, in a way that allows a retry
// (each closes the connection before answering), and recovers a moment
// later: the request is held until an instance passes a health check made
// after the failures, then answered, instead of running through its
// attempts within a millisecond and failing with 502 on the strength of
// health verdicts older than the failures. The glitch ends with the first
// health check after both instances failed the request.
func TestRetriesAfterEveryInstanceFailedAtOnce(t *testing.T) {
	var cut, checks atomic.Int32
	var over atomic.Bool // the glitch is over
	respond := func(c net.Conn, r *http.Request, body []byte) {
		switch {
		case r.URL.Path == "/healthz":
			checks.Add(1)
			if cut.Load() >= 2 { // both instances failed the request
				over.Store(true)
			}
		case !over.Load():
			cut.Add(1)
			c.Close()
			return
		}
		okResponse(c, r, body)
	}
	a, b := newWireBackend(t, respond), newWireBackend(t, respond)
	_, gw := frontDoor(t, a.addr, b.addr)
	// Just after a round of checks (every 100 ms), so that none comes
	// between the two rounds of attempts of the request.
	waitFor(t, func() bool { return checks.Load() >= 2 })
	n := checks.Load()
	waitFor(t, func() bool { return checks.Load() > n })
	resp, body, took := exchangeRaw(t, gw, "GET /page HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp.StatusCode != http.StatusOK || body != "GET /page" {
		t.Fatalf("status %d %q after %v (%d attempts cut): want the answer once an instance passed a check", resp.StatusCode, body, took, cut.Load())
	}
	t.Logf("answered after %v; %d attempts cut", took, cut.Load())
	if cut.Load() < 2 {
		t.Fatalf("only %d attempts were cut: the test did not make every instance fail", cut.Load())
	}
}

// A client that leaves while its response is being written is logged as
// 499, not as the instance's 200 with the bytes it never got.
func TestClientThatLeavesIsLogged499(t *testing.T) {
	var logs syncLog
	g := New(Options{RetryBuffer: 64 << 10, AccessLog: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	t.Cleanup(g.Close)
	if err := g.Configure(config.Apps{testApp("web")}); err != nil {
		t.Fatal(err)
	}
	b := newWireBackend(t, func(c net.Conn, r *http.Request, body []byte) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 50000000\r\n\r\n")
		chunk := make([]byte, 64<<10)
		for i := 0; i < 700; i++ {
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	})
	if _, err := g.SetRoute("web", Route{Pools: []Pool{{Release: "v1", Targets: []string{b.addr}, Weight: 1}}}); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &h1.Server{Handler: g}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: a\r\n\r\n")
	buf := make([]byte, 1024)
	c.Read(buf) // the head has come
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	waitFor(t, func() bool { return strings.Contains(logs.String(), "path=/big") })
	if line := logs.String(); !strings.Contains(line, "status=499") {
		t.Fatalf("the access log: %s", line)
	}
}

// syncLog is a log the gateway's goroutines write and the test reads.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}
func (l *syncLog) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.buf.String() }
