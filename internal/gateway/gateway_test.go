package gateway

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
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

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// backend is a real HTTP server on 127.0.0.1 that names its release.
func backend(t *testing.T, release string) *httptest.Server {
	t.Helper()
	return backendWith(t, release, nil)
}

// backendWith is backend with its http.Server set up by config first.
func backendWith(t *testing.T, release string, config func(*http.Server)) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Release", release)
		w.Header().Set("X-Seen-Read-Only", r.Header.Get("Handoff-Read-Only"))
		w.Header().Set("X-Seen-XFF", r.Header.Get("X-Forwarded-For"))
		w.Header().Set("X-Seen-Cookie", r.Header.Get("Cookie"))
		w.Header().Set("X-Seen-Connection", r.Header.Get("Connection")+"|"+r.Header.Get("X-Hop"))
		fmt.Fprintf(w, "hello from %s %s %s", release, r.Method, r.URL.RequestURI())
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		time.Sleep(d)
		w.Header().Set("X-Release", release)
		io.WriteString(w, "slow from "+release)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Release", release)
		io.Copy(w, r.Body)
	})
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("ETag", `"v1"`)
		io.WriteString(w, `<!doctype html><html><head><title>x</title></head><body class="a"><p>page of `+release+`</p></body></html>`)
	})
	mux.HandleFunc("/gzpage", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		io.WriteString(zw, `<html><BODY><p>zipped</p></BODY></html>`)
		zw.Close()
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: %d\n\n", i)
			w.(http.Flusher).Flush()
			time.Sleep(150 * time.Millisecond)
		}
	})
	mux.HandleFunc("/upgrade", func(w http.ResponseWriter, r *http.Request) {
		conn, buf, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		buf.Flush()
		line, _ := buf.ReadString('\n')
		buf.WriteString(release + ":" + line)
		buf.Flush()
	})
	s := httptest.NewUnstartedServer(mux)
	if config != nil {
		config(s.Config)
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func addr(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

func testApp(name string) *config.App {
	cfg, err := config.Parse("t.yaml", []byte("apps:\n  "+name+":\n    drain_timeout: 5s\n    hold_max: 2s\n    health: {path: /healthz, interval: 100ms}\n    readonly: {allow: [/login]}\n"))
	if err != nil {
		panic(err)
	}
	return cfg.Apps.Get(name)
}

// newGateway serves a gateway for app "web" on a real listener.
func newGateway(t *testing.T, pools ...Pool) (*Gateway, string) {
	t.Helper()
	g := New(Options{RetryBuffer: 64 << 10})
	t.Cleanup(g.Close)
	if err := g.Configure(config.Apps{testApp("web")}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.SetRoute("web", Route{Pools: pools}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	return g, srv.URL
}

func get(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp, string(b)
}

func TestProxyForwardsAndStripsHopHeaders(t *testing.T) {
	b := backend(t, "v1")
	_, url := newGateway(t, Pool{Release: "v1", Targets: []string{addr(b)}, Weight: 1})
	resp, body := get(t, http.DefaultClient, url+"/a/b%2Fc?q=1", "Connection", "X-Hop", "X-Hop", "secret", "Handoff-Read-Only", "1", "X-Forwarded-For", "10.0.0.1",
		"Cookie", "a=1; handoff_session=secret; b=2")
	if resp.StatusCode != 200 || body != "hello from v1 GET /a/b%2Fc?q=1" {
		t.Fatalf("got %d %q", resp.StatusCode, body)
	}
	if got := resp.Header.Get("X-Seen-Connection"); got != "|" {
		t.Errorf("hop-by-hop headers reached the instance: %q", got)
	}
	if got := resp.Header.Get("X-Seen-Read-Only"); got != "" {
		t.Errorf("a client must not be able to claim read-only: %q", got)
	}
	if got := resp.Header.Get("X-Seen-Cookie"); got != "a=1; b=2" {
		t.Errorf("the dashboard's session cookie reached the app: %q", got)
	}
	if got := resp.Header.Get("X-Seen-XFF"); got != "10.0.0.1, 127.0.0.1" {
		t.Errorf("X-Forwarded-For = %q", got)
	}
	// A body larger than the retry buffer streams through whole.
	big := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	r, err := http.Post(url+"/echo", "application/octet-stream", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if !bytes.Equal(got, big) {
		t.Fatalf("echo of %d bytes came back as %d bytes", len(big), len(got))
	}
	// Chunked upload of unknown length.
	r, err = http.Post(url+"/echo", "text/plain", io.MultiReader(strings.NewReader("a"), strings.NewReader("bc")))
	if err != nil {
		t.Fatal(err)
	}
	got, _ = io.ReadAll(r.Body)
	r.Body.Close()
	if string(got) != "abc" {
		t.Fatalf("chunked echo: %q", got)
	}
}

func TestRetryOnRefusedTarget(t *testing.T) {
	dead := deadAddr(t)
	b := backend(t, "v1")
	g, url := newGateway(t, Pool{Release: "v1", Targets: []string{dead, addr(b)}, Weight: 1})
	for i := range 20 {
		resp, _ := get(t, http.DefaultClient, url+"/")
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: status %d", i, resp.StatusCode)
		}
		// POST too: a refused connection carried nothing, so it is safe.
		r, err := http.Post(url+"/echo", "text/plain", strings.NewReader("x"))
		if err != nil || r.StatusCode != 200 {
			t.Fatalf("POST %d: %v %v", i, err, r)
		}
		r.Body.Close()
	}
	for _, s := range g.Status()[0].Pools[0].Targets {
		if s.Addr == dead && s.Healthy {
			t.Error("a refusing target should be marked down")
		}
	}
}

// TestInstanceClosesIdleConnections: an instance that closes every
// connection once it has answered on it, without saying so (as one with a
// short idle timeout, or one restarting, does to pooled connections). No
// request fails, and none reaches the instance twice: a GET goes out on a
// pooled connection unchecked and, finding it closed, again on a checked
// or new one — once, however many closed ones the pool holds; a POST's
// connection is checked before it is written to. Closed with a FIN and
// with a reset.
func TestInstanceClosesIdleConnections(t *testing.T) {
	for _, reset := range []bool{false, true} {
		t.Run(fmt.Sprintf("reset=%v", reset), func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			var got sync.Map // "METHOD /path" -> count
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						req, err := http.ReadRequest(bufio.NewReader(c))
						if err != nil {
							return
						}
						io.Copy(io.Discard, req.Body)
						if strings.HasPrefix(req.URL.Path, "/burst") {
							time.Sleep(50 * time.Millisecond) // the burst's connections overlap
						}
						n, _ := got.LoadOrStore(req.Method+" "+req.URL.Path, new(atomic.Int32))
						n.(*atomic.Int32).Add(1)
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
						time.Sleep(5 * time.Millisecond) // the gateway pools the connection first
						if reset {
							c.(*net.TCPConn).SetLinger(0)
						}
					}()
				}
			}()
			_, url := newGateway(t, Pool{Release: "v1", Targets: []string{l.Addr().String()}, Weight: 1})
			// A burst leaves eight pooled connections, all of them closed
			// by the time the requests below take them.
			var wg sync.WaitGroup
			for i := range 8 {
				wg.Go(func() {
					resp, err := http.Get(fmt.Sprintf("%s/burst%d", url, i))
					if err != nil {
						t.Errorf("burst %d: %v", i, err)
						return
					}
					resp.Body.Close()
				})
			}
			wg.Wait()
			time.Sleep(20 * time.Millisecond)
			for i := range 20 {
				path := fmt.Sprintf("/%d", i)
				var resp *http.Response
				if i%2 == 0 {
					resp, err = http.Get(url + path)
				} else {
					resp, err = http.Post(url+path, "text/plain", strings.NewReader("x"))
				}
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("request %d: status %d", i, resp.StatusCode)
				}
				time.Sleep(20 * time.Millisecond) // the instance has closed the pooled connection
			}
			got.Range(func(k, v any) bool {
				if n := v.(*atomic.Int32).Load(); n != 1 && !strings.HasPrefix(k.(string), "GET /healthz") {
					t.Errorf("%s reached the instance %d times", k, n)
				}
				return true
			})
		})
	}
}

// deadAddr returns an address on which nothing listens.
func deadAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

func TestStreamingIsFlushed(t *testing.T) {
	b := backend(t, "v1")
	_, url := newGateway(t, Pool{Release: "v1", Targets: []string{addr(b)}, Weight: 1})
	resp, err := http.Get(url + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || line != "data: 0\n" {
		t.Fatalf("first event: %q %v", line, err)
	}
	if time.Since(start) > 250*time.Millisecond {
		t.Errorf("the first event waited for the stream to end (%s)", time.Since(start))
	}
}

func TestUpgradeTunnel(t *testing.T) {
	b := backend(t, "v1")
	_, url := newGateway(t, Pool{Release: "v1", Targets: []string{addr(b)}, Weight: 1})
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", err, resp)
	}
	fmt.Fprintf(conn, "ping\n")
	line, err := br.ReadString('\n')
	if err != nil || line != "v1:ping\n" {
		t.Fatalf("through the tunnel: %q %v", line, err)
	}
}

func TestReadOnly(t *testing.T) {
	b := backend(t, "v1")
	g, url := newGateway(t, Pool{Release: "v1", Targets: []string{addr(b)}, Weight: 1})
	if err := g.SetModes("web", Modes{ReadOnly: &ReadOnly{Since: time.Now(), Banner: "Upgrading <now>"}}); err != nil {
		t.Fatal(err)
	}
	r, err := http.Post(url+"/items", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	msg, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 503 || r.Header.Get("Retry-After") == "" || !strings.Contains(string(msg), `"error":"read_only"`) {
		t.Fatalf("a write in read-only: %d %q %s", r.StatusCode, r.Header.Get("Retry-After"), msg)
	}
	req, _ := http.NewRequest(http.MethodDelete, url+"/items/1", nil)
	req.Header.Set("Accept", "text/html")
	r, _ = http.DefaultClient.Do(req)
	msg, _ = io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != 503 || !strings.Contains(string(msg), "read-only") || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("a browser's write in read-only: %d %s", r.StatusCode, msg)
	}
	r, _ = http.Post(url+"/login", "text/plain", strings.NewReader("pw"))
	r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("an allowed path must still write: %d", r.StatusCode)
	}
	resp, body := get(t, http.DefaultClient, url+"/page", "Accept", "text/html", "If-None-Match", `"v1"`)
	if resp.StatusCode != 200 {
		t.Fatalf("page: %d", resp.StatusCode)
	}
	if !strings.Contains(body, `<body class="a"><div id="handoff-banner"`) || !strings.Contains(body, "Upgrading &lt;now&gt;") {
		t.Fatalf("banner not injected after <body>: %s", body)
	}
	if resp.Header.Get("ETag") != "" || (resp.Header.Get("Content-Length") != "" && resp.Header.Get("Content-Length") != fmt.Sprint(len(body))) {
		t.Errorf("an injected page must drop ETag and the old Content-Length: %v", resp.Header)
	}
	resp, _ = get(t, http.DefaultClient, url+"/")
	if resp.Header.Get("X-Seen-Read-Only") != "1" {
		t.Errorf("the instance should see Handoff-Read-Only: 1")
	}
	// gzip: fetch raw and decompress ourselves.
	tr := &http.Transport{DisableCompression: true}
	resp, body = get(t, &http.Client{Transport: tr}, url+"/gzpage")
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Fatalf("gzip page lost its encoding: %v", resp.Header)
	}
	zr, err := gzip.NewReader(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil || !strings.Contains(string(plain), `<BODY><div id="handoff-banner"`) {
		t.Fatalf("gzip banner: %s %v", plain, err)
	}
	// Off again: writes pass.
	if err := g.SetModes("web", Modes{}); err != nil {
		t.Fatal(err)
	}
	r, _ = http.Post(url+"/items", "application/json", strings.NewReader("{}"))
	r.Body.Close()
	if r.StatusCode != 200 {
		t.Fatalf("after read-only off: %d", r.StatusCode)
	}
}

func TestMaintenanceAndGlobalModes(t *testing.T) {
	b := backend(t, "v1")
	g, url := newGateway(t, Pool{Release: "v1", Targets: []string{addr(b)}, Weight: 1})
	if err := g.SetModes("", Modes{Maintenance: &Maintenance{Since: time.Now(), RetryAfter: config.Duration(90 * time.Second)}}); err != nil {
		t.Fatal(err)
	}
	resp, body := get(t, http.DefaultClient, url+"/", "Accept", "text/html")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "90" || !strings.Contains(body, "back in a minute") {
		t.Fatalf("maintenance: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if st := g.Status()[0]; st.Mode != "maintenance" {
		t.Errorf("status mode %q", st.Mode)
	}
	g.SetModes("", Modes{})
	resp, _ = get(t, http.DefaultClient, url+"/")
	if resp.StatusCode != 200 {
		t.Fatalf("after maintenance: %d", resp.StatusCode)
	}
}

func TestPauseHoldsThenResumes(t *testing.T) {
	b := backend(t, "v1")
	g, url := newGateway(t, Pool{Release: "v1", Targets: []string{addr(b)}, Weight: 1})
	if err := g.SetModes("web", Modes{Pause: &Pause{Since: time.Now(), Max: config.Duration(10 * time.Second)}}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	var ok atomic.Int32
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := http.Post(url+"/echo", "text/plain", strings.NewReader("held"))
			if err == nil {
				if b, _ := io.ReadAll(r.Body); r.StatusCode == 200 && string(b) == "held" {
					ok.Add(1)
				}
				r.Body.Close()
			}
		}()
	}
	waitFor(t, func() bool { return g.Status()[0].Held == n })
	if ok.Load() != 0 {
		t.Fatal("requests went through a pause")
	}
	if err := g.SetModes("web", Modes{}); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if ok.Load() != n {
		t.Fatalf("%d of %d held requests completed after resume", ok.Load(), n)
	}
}

func TestPauseTimesOutWith503(t *testing.T) {
	b := backend(t, "v1")
	g, url := newGateway(t, Pool{Release: "v1", Targets: []string{addr(b)}, Weight: 1})
	g.SetModes("web", Modes{Pause: &Pause{Since: time.Now(), Max: config.Duration(200 * time.Millisecond)}})
	resp, _ := get(t, http.DefaultClient, url+"/")
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("past max: %d %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if g.Status()[0].Held != 0 {
		t.Error("a timed-out request is still counted as held")
	}
}

func TestHoldBound(t *testing.T) {
	b := backend(t, "v1")
	g := New(Options{HoldRequests: 2})
	t.Cleanup(g.Close)
	g.Configure(config.Apps{testApp("web")})
	g.SetRoute("web", Route{Pools: []Pool{{Release: "v1", Targets: []string{addr(b)}, Weight: 1}}})
	srv := httptest.NewServer(g)
	defer srv.Close()
	g.SetModes("web", Modes{Pause: &Pause{Since: time.Now(), Max: config.Duration(5 * time.Second)}})
	for range 2 {
		go http.Get(srv.URL + "/")
	}
	waitFor(t, func() bool { return g.Status()[0].Held == 2 })
	resp, _ := get(t, http.DefaultClient, srv.URL+"/")
	if resp.StatusCode != 503 {
		t.Fatalf("past the hold bound: %d", resp.StatusCode)
	}
	g.SetModes("web", Modes{})
}

func TestSwitchDrainsInFlightOnOld(t *testing.T) {
	old, next := backend(t, "v1"), backend(t, "v2")
	g, url := newGateway(t, Pool{Release: "v1", Targets: []string{addr(old)}, Weight: 1})
	done := make(chan string)
	go func() {
		resp, err := http.Get(url + "/slow?d=600ms")
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- string(b)
	}()
	waitFor(t, func() bool { return g.Status()[0].Pools[0].Targets[0].Inflight == 1 })
	d, err := g.SetRoute("web", Route{Pools: []Pool{{Release: "v2", Targets: []string{addr(next)}, Weight: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	resp, _ := get(t, http.DefaultClient, url+"/")
	if resp.Header.Get("X-Release") != "v2" {
		t.Fatalf("new requests should go to v2 at once, got %q", resp.Header.Get("X-Release"))
	}
	if got := <-done; got != "slow from v1" {
		t.Fatalf("in-flight request on the old target: %q", got)
	}
	rep, err := d.Wait(context.Background())
	if err != nil || rep.Cut != 0 || len(rep.Targets) != 1 {
		t.Fatalf("drain: %+v %v", rep, err)
	}
}

func TestDrainDeadlineCuts(t *testing.T) {
	old, next := backend(t, "v1"), backend(t, "v2")
	g := New(Options{})
	t.Cleanup(g.Close)
	app := testApp("web")
	app.DrainTimeout = config.Duration(200 * time.Millisecond)
	g.Configure(config.Apps{app})
	g.SetRoute("web", Route{Pools: []Pool{{Release: "v1", Targets: []string{addr(old)}, Weight: 1}}})
	srv := httptest.NewServer(g)
	defer srv.Close()
	go http.Get(srv.URL + "/slow?d=3s")
	waitFor(t, func() bool { return g.Status()[0].Pools[0].Targets[0].Inflight == 1 })
	d, _ := g.SetRoute("web", Route{Pools: []Pool{{Release: "v2", Targets: []string{addr(next)}, Weight: 1}}})
	rep, _ := d.Wait(context.Background())
	if rep.Cut != 1 || rep.Duration > 2*time.Second {
		t.Fatalf("drain past its deadline: %+v", rep)
	}
}

func TestCanaryPinsClients(t *testing.T) {
	v1, v2 := backend(t, "v1"), backend(t, "v2")
	_, url := newGateway(t,
		Pool{Release: "v1", Targets: []string{addr(v1)}, Weight: 50},
		Pool{Release: "v2", Targets: []string{addr(v2)}, Weight: 50})
	seen := map[string]int{}
	for range 40 {
		jar := newJar()
		c := &http.Client{Jar: jar}
		first, _ := get(t, c, url+"/")
		rel := first.Header.Get("X-Release")
		seen[rel]++
		for range 5 {
			r, _ := get(t, c, url+"/")
			if r.Header.Get("X-Release") != rel {
				t.Fatalf("a pinned client moved from %s to %s", rel, r.Header.Get("X-Release"))
			}
		}
	}
	if seen["v1"] == 0 || seen["v2"] == 0 {
		t.Fatalf("50/50 canary sent every new client to one release: %v", seen)
	}
}

func TestUnknownHostAndNoInstances(t *testing.T) {
	g := New(Options{})
	t.Cleanup(g.Close)
	cfg, _ := config.Parse("t.yaml", []byte("apps:\n  web:\n    hosts: [example.com]\n"))
	g.Configure(cfg.Apps)
	srv := httptest.NewServer(g)
	defer srv.Close()
	resp, body := get(t, http.DefaultClient, srv.URL+"/")
	if resp.StatusCode != 404 || !strings.Contains(body, "no_app") {
		t.Fatalf("unknown host: %d %s", resp.StatusCode, body)
	}
	req, _ := http.NewRequest("GET", srv.URL+"/", nil)
	req.Host = "EXAMPLE.com:8080"
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != 503 || r.Header.Get("Retry-After") == "" {
		t.Fatalf("app without instances: %d", r.StatusCode)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// jar is a minimal cookie jar: enough to be a browser for pinning.
type jar struct {
	mu sync.Mutex
	c  map[string]*http.Cookie
}

func newJar() *jar { return &jar{c: map[string]*http.Cookie{}} }

func (j *jar) SetCookies(_ *neturl, cs []*http.Cookie) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for _, c := range cs {
		j.c[c.Name] = c
	}
}

func (j *jar) Cookies(*neturl) []*http.Cookie {
	j.mu.Lock()
	defer j.mu.Unlock()
	var out []*http.Cookie
	for _, c := range j.c {
		out = append(out, c)
	}
	return out
}

// openConns makes the gateway at url open n connections to its target:
// n slow requests at once, each on a client of its own.
func openConns(t *testing.T, url string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			c := &http.Client{Transport: &http.Transport{}}
			resp, err := c.Get(url + "/slow?d=200ms")
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		})
	}
	wg.Wait()
}

// TestWarmedConnectionsClosedWhileIdle: the connections a switch warms
// may be closed by the instance before any request uses them — Go's
// server gives a new connection ReadHeaderTimeout for its first request,
// nginx client_header_timeout — and are then as stale as a used one: a
// GET that finds one closed goes out again on a checked or new connection
// to the same instance, without counting as a failed attempt. (They were
// taken for new connections, so a request that met them moved on to the
// next instance, and after a burst had used up the live ones, every
// instance "failed": TestReleasesUnderLoad's crash phase got 502s so.)
func TestWarmedConnectionsClosedWhileIdle(t *testing.T) {
	old := backend(t, "v1")
	next := backendWith(t, "v2", func(s *http.Server) { s.ReadHeaderTimeout = 100 * time.Millisecond })
	g, url := newGateway(t, Pool{Release: "v1", Targets: []string{addr(old)}, Weight: 1})
	openConns(t, url, 5) // five connections to v1: five are warmed to v2
	if _, err := g.SetRoute("web", Route{Pools: []Pool{{Release: "v2", Targets: []string{addr(next)}, Weight: 1}}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // v2 closes the warmed connections, unused
	for i := range 5 {
		resp, body := get(t, http.DefaultClient, url+"/")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Release") != "v2" {
			t.Fatalf("request %d: %d %q", i, resp.StatusCode, body)
		}
	}
	if n := testutil.ToFloat64(g.metrics.retries); n != 0 {
		t.Errorf("%v requests moved on to another attempt: a warmed connection closed while idle was taken for the instance's failure", n)
	}
}

// TestSwitchWarmsNewTargets checks that a switch finds keep-alive
// connections to the new target already open, as many as the old one had,
// so that its clients' first requests do not all wait for a connect.
func TestSwitchWarmsNewTargets(t *testing.T) {
	old, next := backend(t, "v1"), backend(t, "v2")
	g, url := newGateway(t, Pool{Release: "v1", Targets: []string{addr(old)}, Weight: 1})
	openConns(t, url, 5) // five connections to v1
	g.mu.Lock()
	before := len(g.targets[addr(old)].conns)
	g.mu.Unlock()
	if before != 5 {
		t.Fatalf("%d connections to the old target, want 5", before)
	}
	if _, err := g.SetRoute("web", Route{Pools: []Pool{{Release: "v2", Targets: []string{addr(next)}, Weight: 1}}}); err != nil {
		t.Fatal(err)
	}
	g.mu.Lock()
	nt := g.targets[addr(next)]
	g.mu.Unlock()
	nt.mu.Lock()
	idle := len(nt.idle)
	nt.mu.Unlock()
	if idle != 5 {
		t.Fatalf("%d idle connections to the new target right after the switch, want 5", idle)
	}
	if resp, _ := get(t, http.DefaultClient, url+"/"); resp.Header.Get("X-Release") != "v2" {
		t.Fatalf("served by %q after the switch, want v2", resp.Header.Get("X-Release"))
	}
	nt.mu.Lock()
	defer nt.mu.Unlock()
	if len(nt.conns) != 5 {
		t.Errorf("%d connections to the new target after a request, want the 5 warmed ones reused", len(nt.conns))
	}
}
