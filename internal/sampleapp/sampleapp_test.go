package sampleapp

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/websocket"
)

func newServer(t *testing.T, opts Options) string {
	t.Helper()
	srv := httptest.NewServer(Handler(opts))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// get fetches path and returns the response with its body read.
func get(t *testing.T, client *http.Client, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	return resp, body
}

func TestEveryResponseNamesReleaseAndInstance(t *testing.T) {
	addr := newServer(t, Options{Release: "v1"})
	for _, path := range []string{"/", "/gzip", "/healthz", "/fast", "/bytes?n=10", "/slow?ms=0",
		"/status/503", "/sse?n=1&ms=0", "/json", "/items", "/no-such-page", "/ws"} {
		resp, _ := get(t, http.DefaultClient, "http://"+addr+path)
		if got := resp.Header.Get("X-Release"); got != "v1" {
			t.Errorf("%s: X-Release = %q, want v1", path, got)
		}
		if got := resp.Header.Get("X-Instance"); got != addr {
			t.Errorf("%s: X-Instance = %q, want %s", path, got, addr)
		}
	}
}

func TestPageIsACompleteHTMLDocument(t *testing.T) {
	addr := newServer(t, Options{Release: "v7"})
	resp, body := get(t, http.DefaultClient, "http://"+addr+"/")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("Content-Type = %q", ct)
	}
	for _, want := range []string{"<html>", "<head>", "</head>", "<body>", "</body>", "</html>", ">v7<"} {
		if !bytes.Contains(body, []byte(want)) {
			t.Errorf("page lacks %q:\n%s", want, body)
		}
	}
}

func TestGzipPageDecodesToThePage(t *testing.T) {
	addr := newServer(t, Options{Release: "v1"})
	// Without DisableCompression the client would decode for us and hide the encoding.
	raw := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	resp, zipped := get(t, raw, "http://"+addr+"/gzip")
	if ce := resp.Header.Get("Content-Encoding"); ce != "gzip" {
		t.Fatalf("Content-Encoding = %q, want gzip", ce)
	}
	zr, err := gzip.NewReader(bytes.NewReader(zipped))
	if err != nil {
		t.Fatal(err)
	}
	page, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	_, plain := get(t, raw, "http://"+addr+"/")
	if !bytes.Equal(page, plain) {
		t.Fatalf("decoded /gzip differs from /:\n%s\n---\n%s", page, plain)
	}
}

func TestHealthzFollowsUnhealthy(t *testing.T) {
	for _, tc := range []struct {
		unhealthy bool
		want      int
	}{{false, 200}, {true, 503}} {
		addr := newServer(t, Options{Release: "v1", Unhealthy: tc.unhealthy})
		if resp, _ := get(t, http.DefaultClient, "http://"+addr+"/healthz"); resp.StatusCode != tc.want {
			t.Errorf("unhealthy=%v: status %d, want %d", tc.unhealthy, resp.StatusCode, tc.want)
		}
	}
}

func TestPayloadSizes(t *testing.T) {
	addr := newServer(t, Options{Release: "a-rather-long-release-name-that-still-fits"})
	for path, n := range map[string]int{"/fast": FastSize, "/bytes": 65536, "/bytes?n=0": 0, "/bytes?n=100001": 100001} {
		resp, body := get(t, http.DefaultClient, "http://"+addr+path)
		if resp.StatusCode != 200 || len(body) != n || resp.ContentLength != int64(n) {
			t.Errorf("%s: status %d, %d bytes (Content-Length %d), want %d", path, resp.StatusCode, len(body), resp.ContentLength, n)
		}
	}
	if resp, _ := get(t, http.DefaultClient, "http://"+addr+"/bytes?n=-1"); resp.StatusCode != 400 {
		t.Errorf("/bytes?n=-1: status %d, want 400", resp.StatusCode)
	}
	if resp, _ := get(t, http.DefaultClient, "http://"+addr+"/status/500"); resp.StatusCode != 500 {
		t.Errorf("/status/500: status %d", resp.StatusCode)
	}
}

func TestSlowSendsNothingBeforeItsTime(t *testing.T) {
	addr := newServer(t, Options{Release: "v1"})
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := io.WriteString(nc, "GET /slow?ms=400 HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	// The answer cannot come before 400ms after the request was sent, so a
	// read that gives up after 100ms must find nothing, however slow the machine.
	_ = nc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	var b [1]byte
	if n, err := nc.Read(b[:]); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read before the delay: %d bytes, %v; want a timeout and nothing", n, err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(20 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("response after the delay: %v %v", resp, err)
	}
}

func TestUploadAnswersLengthAndHash(t *testing.T) {
	addr := newServer(t, Options{Release: "v1"})
	body := bytes.Repeat([]byte("0123456789"), 10000)
	for _, method := range []string{"PUT", "POST"} {
		req, _ := http.NewRequest(method, "http://"+addr+"/upload", bytes.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("%d %x\n", len(body), sha256.Sum256(body)); string(got) != want {
			t.Errorf("%s /upload = %q, want %q", method, got, want)
		}
	}
}

// readEvents reads n server-sent events and returns their data lines.
func readEvents(t *testing.T, br *bufio.Reader, n int) []string {
	t.Helper()
	var data []string
	for len(data) < n {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d events: %v", len(data), err)
		}
		if d, ok := strings.CutPrefix(line, "data: "); ok {
			data = append(data, strings.TrimSpace(d))
		}
	}
	return data
}

func TestSSEFlushesEachEvent(t *testing.T) {
	addr := newServer(t, Options{Release: "v1"})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The second event is a minute away: reading the first proves it was flushed alone.
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+addr+"/sse?n=2&ms=60000", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	if got := readEvents(t, bufio.NewReader(resp.Body), 1); got[0] != "v1 1/2" {
		t.Fatalf("first event = %q", got[0])
	}
}

func TestItemsAndJSON(t *testing.T) {
	addr := newServer(t, Options{Release: "v1"})
	resp, err := http.Post("http://"+addr+"/items", "application/json", strings.NewReader(`{"name":"book"}`))
	if err != nil {
		t.Fatal(err)
	}
	var it Item
	if err := json.NewDecoder(resp.Body).Decode(&it); err != nil || resp.StatusCode != 201 || it.Name != "book" || it.ID != 1 {
		t.Fatalf("POST /items: %d %+v %v", resp.StatusCode, it, err)
	}
	resp.Body.Close()
	if resp, err = http.Post("http://"+addr+"/items", "application/json", strings.NewReader(`nope`)); err != nil || resp.StatusCode != 400 {
		t.Fatalf("POST /items with a bad body: %v %v", resp, err)
	}
	resp.Body.Close()
	_, body := get(t, http.DefaultClient, "http://"+addr+"/items")
	var list []Item
	if err := json.Unmarshal(body, &list); err != nil || len(list) != 1 || list[0] != it {
		t.Fatalf("GET /items = %s (%v)", body, err)
	}
	_, body = get(t, http.DefaultClient, "http://"+addr+"/json")
	var info map[string]string
	if err := json.Unmarshal(body, &info); err != nil || info["release"] != "v1" || info["instance"] != addr {
		t.Fatalf("GET /json = %s (%v)", body, err)
	}
}

func TestWebSocketEchoes(t *testing.T) {
	addr := newServer(t, Options{Release: "v1"})
	c, resp, err := websocket.Dial(context.Background(), addr, "", "/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if resp.Header.Get("X-Release") != "v1" {
		t.Errorf("101 lacks X-Release: %v", resp.Header)
	}
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if err := c.WriteMessage(websocket.OpText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if op, msg, err := c.ReadMessage(); err != nil || op != websocket.OpText || string(msg) != "hello" {
		t.Fatalf("echo = %v %q %v", op, msg, err)
	}
}

// TestItemsInADatabase: release v1 (schema 1) writes title and
// legacy_title; after the migration's expand and backfill, release v2
// (schema 2) reads title_lower — what the demo's migration is about.
func TestItemsInADatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	setup, err := openStore(path, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer setup.close()
	if _, err := setup.db.Exec(`CREATE TABLE items (id INTEGER PRIMARY KEY, title TEXT NOT NULL, legacy_title TEXT)`); err != nil {
		t.Fatal(err)
	}
	v1 := httptest.NewServer(withStore(t, Options{Release: "v1", DB: path, Schema: 1}))
	defer v1.Close()
	post := func(url, name string) {
		resp, err := http.Post(url+"/items", "application/json", strings.NewReader(`{"name":"`+name+`"}`))
		if err != nil || resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST /items: %v %v", err, resp)
		}
		resp.Body.Close()
	}
	post(v1.URL, "Hello World")
	setup.db.Exec(`ALTER TABLE items ADD COLUMN title_lower TEXT`)
	setup.db.Exec(`UPDATE items SET title_lower = lower(title) WHERE title_lower IS NULL`)
	v2 := httptest.NewServer(withStore(t, Options{Release: "v2", DB: path, Schema: 2}))
	defer v2.Close()
	post(v2.URL, "Second ONE")
	resp, err := http.Get(v2.URL + "/items")
	if err != nil {
		t.Fatal(err)
	}
	var items []Item
	json.NewDecoder(resp.Body).Decode(&items)
	resp.Body.Close()
	if len(items) != 2 || items[0].Name != "second one" || items[1].Name != "hello world" {
		t.Fatalf("v2 reads title_lower: %+v", items)
	}
}

func withStore(t *testing.T, opts Options) http.Handler {
	a := newApp(opts)
	db, err := openStore(opts.DB, opts.Schema)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.close() })
	a.db = db
	return a
}
