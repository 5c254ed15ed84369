package h1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Conformance against net/http's client.

func TestKeepAliveReuse(t *testing.T) {
	var accepted atomic.Int32
	ts := startServer(t, echoHandler, func(s *Server) {
		s.ConnState = func(_ net.Conn, st http.ConnState) {
			if st == http.StateNew {
				accepted.Add(1)
			}
		}
	})
	c := ts.client(t)
	for i := range 100 {
		reused := false
		trace := &httptrace.ClientTrace{GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
			"GET", ts.url(fmt.Sprintf("/n/%d?q=1", i)), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("request %d: read body: %v", i, err)
		}
		if want := fmt.Sprintf("GET /n/%d ", i); string(b) != want {
			t.Fatalf("request %d: body %q, want %q", i, b, want)
		}
		if i > 0 && !reused {
			t.Fatalf("request %d did not reuse the connection", i)
		}
		if resp.Header.Get("Date") == "" || resp.ContentLength != int64(len(b)) {
			t.Fatalf("request %d: Date %q, Content-Length %d for %d bytes", i, resp.Header.Get("Date"), resp.ContentLength, len(b))
		}
	}
	if n := accepted.Load(); n != 1 {
		t.Fatalf("server accepted %d connections, want 1", n)
	}
}

// hashHandler answers with the length, framing and SHA-256 of the body.
var hashHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%d %d %v %x", n, r.ContentLength, r.TransferEncoding, h.Sum(nil))
})

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestRequestBodies(t *testing.T) {
	ts := startServer(t, hashHandler)
	c := ts.client(t)
	data := randomBytes(t, 8<<20)
	cases := []struct {
		name string
		body io.Reader
		want string
	}{
		{"content-length", bytes.NewReader(data), fmt.Sprintf("%d %d [] %s", len(data), len(data), sum(data))},
		{"chunked", io.MultiReader(bytes.NewReader(data)), fmt.Sprintf("%d -1 [chunked] %s", len(data), sum(data))},
		{"empty chunked", io.MultiReader(), fmt.Sprintf("0 -1 [chunked] %s", sum(nil))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.Post(ts.url("/"), "application/octet-stream", tc.body)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Fatalf("server saw %q, want %q", b, tc.want)
			}
		})
	}
}

func TestLargeResponses(t *testing.T) {
	data := randomBytes(t, 8<<20)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Has("length") {
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		}
		for p := data; len(p) > 0; p = p[min(len(p), 10000):] {
			w.Write(p[:min(len(p), 10000)])
		}
	}))
	c := ts.client(t)
	for _, q := range []string{"?length", ""} {
		resp, err := c.Get(ts.url("/" + q))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		if sum(b) != sum(data) {
			t.Fatalf("%s: got %d bytes that differ from the %d sent", q, len(b), len(data))
		}
		wantTE := q == ""
		if gotTE := len(resp.TransferEncoding) > 0; gotTE != wantTE {
			t.Fatalf("%s: chunked = %v, want %v", q, gotTE, wantTE)
		}
	}
}

func TestExpectContinue(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			http.Error(w, "too large", http.StatusRequestEntityTooLarge)
			return
		}
		hashHandler(w, r)
	}))
	// The client waits a minute for the 100 Continue: a server that never
	// sends it would fail the test at testTimeout, not pass it late.
	tr := &http.Transport{ExpectContinueTimeout: time.Minute}
	t.Cleanup(tr.CloseIdleConnections)
	c := &http.Client{Transport: tr, Timeout: testTimeout}
	data := randomBytes(t, 100<<10)
	for _, path := range []string{"/read", "/refuse"} {
		got100 := false
		trace := &httptrace.ClientTrace{Got100Continue: func() { got100 = true }}
		req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
			"PUT", ts.url(path), bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Expect", "100-continue")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch path {
		case "/read":
			if !got100 || resp.StatusCode != 200 || !strings.HasSuffix(string(b), sum(data)) {
				t.Fatalf("%s: 100 Continue %v, status %d, body %q", path, got100, resp.StatusCode, b)
			}
		case "/refuse":
			// The body never came, so the connection cannot be reused.
			if got100 || resp.StatusCode != 413 || !resp.Close {
				t.Fatalf("%s: 100 Continue %v, status %d, close %v", path, got100, resp.StatusCode, resp.Close)
			}
		}
	}
}

func TestResponseTrailers(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/declared" {
			w.Header().Set("Trailer", "X-Sum")
		}
		w.WriteHeader(200)
		io.WriteString(w, "short body")
		w.Header().Set("X-Sum", "declared-value")
		w.Header().Set(http.TrailerPrefix+"X-Late", "late-value")
	}))
	c := ts.client(t)
	for path, want := range map[string]http.Header{
		"/declared": {"X-Sum": {"declared-value"}, "X-Late": {"late-value"}},
		"/late":     {"X-Late": {"late-value"}},
	} {
		resp, err := c.Get(ts.url(path))
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || string(b) != "short body" {
			t.Fatalf("%s: body %q, %v", path, b, err)
		}
		if fmt.Sprint(resp.Trailer) != fmt.Sprint(want) {
			t.Fatalf("%s: trailers %v, want %v", path, resp.Trailer, want)
		}
	}
}

func TestRequestTrailers(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		declared := fmt.Sprint(r.Trailer)
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprintf(w, "%s|%s|%v", declared, b, r.Trailer)
	}))
	c := ts.client(t)
	pr, pw := io.Pipe()
	req, err := http.NewRequest("POST", ts.url("/"), pr)
	if err != nil {
		t.Fatal(err)
	}
	req.Trailer = http.Header{"X-Req": nil}
	go func() {
		io.WriteString(pw, "payload")
		req.Trailer.Set("X-Req", "sent-after")
		pw.Close()
	}()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := "map[X-Req:[]]|payload|map[X-Req:[sent-after]]"; string(b) != want {
		t.Fatalf("server saw %q, want %q", b, want)
	}
}

// TestStreamingFlush checks that each Flush reaches the client while the
// handler still runs: the handler waits for the client to have read the
// first part before it writes the second.
func TestStreamingFlush(t *testing.T) {
	next := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		io.WriteString(w, "first\n")
		if err := http.NewResponseController(w).Flush(); err != nil {
			t.Errorf("flush: %v", err)
		}
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "second\n")
	}))
	resp, err := ts.client(t).Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil || line != "first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(next)
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("rest %q, %v", rest, err)
	}
	if len(resp.TransferEncoding) == 0 {
		t.Fatal("a flushed response without a length is not chunked")
	}
}

func TestEarlyHints(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "done")
	}))
	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
		return nil
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", ts.url("/"), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if fmt.Sprint(hints) != "[103 </style.css>; rel=preload]" || string(b) != "done" || resp.Header.Get("Link") != "" {
		t.Fatalf("hints %q, body %q, final Link %q", hints, b, resp.Header.Get("Link"))
	}
}

func TestHead(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/declared" {
			w.Header().Set("Content-Length", "1234")
		}
		io.WriteString(w, "0123456789")
	}))
	c := dialRaw(t, ts.addr)
	for path, want := range map[string]string{"/declared": "1234", "/written": "10"} {
		c.send("HEAD " + path + " HTTP/1.1\r\nHost: test\r\n\r\n")
		resp, body := c.response("HEAD")
		if got := resp.Header.Get("Content-Length"); got != want || body != "" {
			t.Fatalf("%s: Content-Length %q, body %q; want %q and no body", path, got, body, want)
		}
	}
	// Had a HEAD response carried a body, this would read it as a response.
	if resp, body := c.get("/after"); resp.StatusCode != 200 || body != "0123456789" {
		t.Fatalf("GET after HEAD: %d %q", resp.StatusCode, body)
	}
}

// TestConcurrentBodyRead reads the request body on another goroutine while
// the handler writes and flushes its response, as the gateway does with a
// large upload; EnableFullDuplex keeps the server from reading the body
// away when the head goes out.
func TestConcurrentBodyRead(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := http.NewResponseController(w).EnableFullDuplex(); err != nil {
			t.Errorf("EnableFullDuplex: %v", err)
		}
		done := make(chan string, 1)
		go func() {
			h := sha256.New()
			io.Copy(h, r.Body)
			done <- hex.EncodeToString(h.Sum(nil))
		}()
		for i := range 3 {
			fmt.Fprintf(w, "part %d\n", i)
			w.(http.Flusher).Flush()
		}
		io.WriteString(w, <-done)
	}))
	data := randomBytes(t, 4<<20)
	resp, err := ts.client(t).Post(ts.url("/"), "application/octet-stream", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if want := "part 0\npart 1\npart 2\n" + sum(data); string(b) != want {
		t.Fatalf("got %q, want %q", b, want)
	}
}
