package sampleapp

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/websocket"
)

// startServe runs Serve on 127.0.0.1:0 and returns its address, the cancel
// that plays SIGTERM, and Serve's result.
func startServe(t *testing.T) (string, context.CancelFunc, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, ServeOptions{Options: Options{Release: "v1"}}) }()
	return ln.Addr().String(), cancel, done
}

func waitServe(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after shutdown")
	}
}

func TestShutdownFinishesAStreamInFlight(t *testing.T) {
	addr, stop, done := startServe(t)
	resp, err := http.Get("http://" + addr + "/sse?n=5&ms=50")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	readEvents(t, br, 1) // the stream is surely in flight now
	stop()
	if got := readEvents(t, br, 4); got[3] != "v1 5/5" {
		t.Fatalf("last event = %q", got[3])
	}
	waitServe(t, done)
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Fatal("still accepting connections after shutdown")
	}
}

func TestShutdownClosesWebSocketsWithGoingAway(t *testing.T) {
	addr, stop, done := startServe(t)
	c, _, err := websocket.Dial(context.Background(), addr, "", "/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if err := c.WriteMessage(websocket.OpBinary, []byte{1}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.ReadMessage(); err != nil {
		t.Fatal(err) // the echo: the handler is surely running now
	}
	stop()
	var ce *websocket.CloseError
	if _, _, err := c.ReadMessage(); !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("read after shutdown = %v, want close 1001", err)
	}
	waitServe(t, done)
}

func TestStartDelayEndsEarlyOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ListenAndServe(ctx, ServeOptions{Listen: "127.0.0.1:0", StartDelay: time.Hour}); err != nil {
		t.Fatalf("ListenAndServe = %v, want nil", err)
	}
}
