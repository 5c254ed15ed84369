// Package loadgen is handoff's load generator: it drives keep-alive HTTP,
// slow requests, uploads, server-sent event streams and WebSockets at a
// target, and counts precisely what failed. Tests, the demo and the gateway
// benchmark use it to prove that an upgrade drops nothing.
//
// It never retries. It speaks HTTP/1.1 itself over raw connections instead
// of using net/http's Transport, which silently retries a request that
// fails on a reused keep-alive connection: here such a request is a
// failure, as it would be for a user whose browser did not retry.
//
// Every client is one goroutine with one connection; each counts in its own
// stats, merged when the run is over, so the hot path shares nothing but
// a few atomic counters (the request budget, live progress).
package loadgen

import (
	"errors"
	"fmt"
	"net/http"
	"time"
)

// Kind is a kind of client, and of the requests it makes.
type Kind string

// The kinds of client.
const (
	// KindFast sends GET FastPath back to back on one keep-alive connection.
	KindFast Kind = "fast"
	// KindSlow sends GET /slow?ms=SlowDelay back to back.
	KindSlow Kind = "slow"
	// KindUpload PUTs UploadSize bytes to /upload and checks the echoed sha256.
	KindUpload Kind = "upload"
	// KindStream reads /sse streams of StreamEvents events, one after another,
	// and checks that every event arrived.
	KindStream Kind = "stream"
	// KindWebSocket keeps one WebSocket to /ws and makes an echo round trip
	// every WebSocketInterval, checking each echo.
	KindWebSocket Kind = "websocket"
	// KindWrite POSTs a small JSON item to /items, as a user saving a form
	// does; the answer must be 201.
	KindWrite Kind = "write"
)

// kinds lists the kinds in report order.
var kinds = []Kind{KindFast, KindSlow, KindUpload, KindWrite, KindStream, KindWebSocket}

// Config describes a load: its target, its mix of clients and its bounds.
// The zero value of every optional field has a sensible default.
type Config struct {
	// Addr is the target's host:port.
	Addr string
	// Host is the Host header; default Addr.
	Host string
	// Header is sent with every request and WebSocket handshake.
	Header http.Header

	// Fast clients request FastPath (default "/fast").
	Fast     int
	FastPath string
	// Slow clients request /slow?ms=SlowDelay (default 1s).
	Slow      int
	SlowDelay time.Duration
	// Uploaders PUT UploadSize bytes (default 64 KiB) to /upload.
	Uploaders  int
	UploadSize int
	// Writers POST {"name": …} to /items.
	Writers int
	// Streams read /sse?n=StreamEvents&ms=StreamInterval (default 10 × 100ms).
	Streams        int
	StreamEvents   int
	StreamInterval time.Duration
	// WebSockets echo WebSocketSize bytes (default 64) over /ws every
	// WebSocketInterval (default 100ms).
	WebSockets        int
	WebSocketInterval time.Duration
	WebSocketSize     int

	// Duration ends the run after this long; 0 means until Stop or
	// MaxRequests.
	Duration time.Duration
	// MaxRequests ends the run after this many requests over all clients;
	// 0 means no limit.
	MaxRequests int64
	// Rate limits each HTTP client to this many requests (or streams) per
	// second; 0 means back to back. WebSockets follow WebSocketInterval.
	Rate float64
	// Cookies gives each client a cookie jar: it sends back the cookies it
	// was given, as a browser does (sticky pinning by cookie relies on it).
	Cookies bool
	// Timeout bounds each request, on top of the time its kind asks the
	// server to take (SlowDelay, a stream's events); default 10s. A request
	// that exceeds it is a failure.
	Timeout time.Duration
	// Record, when set, is called for every finished request, from many
	// goroutines at once: it must be safe for concurrent use, and fast.
	Record func(Record)
}

// Record is one finished request, as given to Config.Record.
type Record struct {
	Kind       Kind
	Start, End time.Time
	// Status is the response's status code (101 for WebSocket round trips),
	// 0 when none was read.
	Status int
	// Release and Instance are the response's X-Release and X-Instance.
	Release, Instance string
	// Err is why the request failed, nil when it did not.
	Err error
	// Reused says the request went on a connection that had already served one.
	Reused bool
}

// clients returns how many clients of kind k the config asks for.
func (c *Config) clients(k Kind) int {
	switch k {
	case KindFast:
		return c.Fast
	case KindSlow:
		return c.Slow
	case KindUpload:
		return c.Uploaders
	case KindStream:
		return c.Streams
	case KindWebSocket:
		return c.WebSockets
	case KindWrite:
		return c.Writers
	}
	return 0
}

// withDefaults validates c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	if c.Addr == "" {
		return c, errors.New("load config: no target address")
	}
	total := 0
	for _, k := range kinds {
		if n := c.clients(k); n < 0 {
			return c, fmt.Errorf("load config: %d %s clients", n, k)
		} else {
			total += n
		}
	}
	if total == 0 {
		return c, errors.New("load config: no clients")
	}
	if c.Duration < 0 || c.MaxRequests < 0 || c.Rate < 0 {
		return c, errors.New("load config: negative duration, request count or rate")
	}
	setDefault(&c.Host, c.Addr)
	setDefault(&c.FastPath, "/fast")
	setDefault(&c.SlowDelay, time.Second)
	setDefault(&c.UploadSize, 64<<10)
	setDefault(&c.StreamEvents, 10)
	setDefault(&c.StreamInterval, 100*time.Millisecond)
	setDefault(&c.WebSocketInterval, 100*time.Millisecond)
	setDefault(&c.WebSocketSize, 64)
	setDefault(&c.Timeout, 10*time.Second)
	c.WebSocketSize = max(c.WebSocketSize, 8) // room for the sequence number
	return c, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
