package dbproxy

import (
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
)

// serveEndpoint starts an endpoint for opts on a loopback port (closed
// with the test) and returns it with its address.
func serveEndpoint(t *testing.T, opts Options) (*Endpoint, string) {
	t.Helper()
	opts.Logger = testLogger(t)
	e, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go e.Serve(l)
	t.Cleanup(func() { e.Close() })
	return e, l.Addr().String()
}

// testLogger sends the endpoint's log to t.Log: shown when a test fails.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}
