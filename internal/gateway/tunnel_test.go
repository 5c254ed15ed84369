package gateway

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/websocket"
)

// wsEcho is a WebSocket echo backend.
func wsEcho(t *testing.T) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Upgrade(w, r)
		if err != nil {
			return
		}
		for {
			op, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if c.WriteMessage(op, msg) != nil {
				return
			}
		}
	}))
	t.Cleanup(s.Close)
	return s
}

// TestWebSocketOutlivesSwitchThenGetsClose: a WebSocket on a replaced
// instance keeps working through the drain, and at the drain deadline gets
// a Close frame (1001) — a goodbye in the protocol, not a cut connection.
func TestWebSocketOutlivesSwitchThenGetsClose(t *testing.T) {
	old, next := wsEcho(t), wsEcho(t)
	g := New(Options{})
	t.Cleanup(g.Close)
	app := testApp("web")
	app.DrainTimeout = config.Duration(500 * time.Millisecond)
	g.Configure(config.Apps{app})
	g.SetRoute("web", Route{Pools: []Pool{{Release: "v1", Targets: []string{addr(old)}, Weight: 1}}})
	srv := httptest.NewServer(g)
	defer srv.Close()

	ctx := context.Background()
	c, _, err := websocket.Dial(ctx, strings.TrimPrefix(srv.URL, "http://"), "x", "/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echo := func() error {
		if err := c.WriteMessage(websocket.OpText, []byte("hi")); err != nil {
			return err
		}
		_, msg, err := c.ReadMessage()
		if err == nil && string(msg) != "hi" {
			t.Fatalf("echo: %q", msg)
		}
		return err
	}
	if err := echo(); err != nil {
		t.Fatal(err)
	}
	d, _ := g.SetRoute("web", Route{Pools: []Pool{{Release: "v2", Targets: []string{addr(next)}, Weight: 1}}})
	if err := echo(); err != nil {
		t.Fatalf("the WebSocket should stay open while its instance drains: %v", err)
	}
	rep, _ := d.Wait(ctx)
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseGoingAway {
		t.Fatalf("at the drain deadline the client should get Close 1001, got %v (drain %+v)", err, rep)
	}
}

// TestWebSocketInstanceDiesClientGetsClose: when the instance behind a
// WebSocket dies without closing it, the client gets Close 1012 (service
// restart) rather than a cut connection, and reconnects.
func TestWebSocketInstanceDiesClientGetsClose(t *testing.T) {
	dying := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Upgrade(w, r)
		if err != nil {
			return
		}
		c.ReadMessage()
		c.NetConn().Close() // a crash: no Close frame
	}))
	defer dying.Close()
	_, url := newGateway(t, Pool{Release: "v1", Targets: []string{addr(dying)}, Weight: 1})
	c, _, err := websocket.Dial(context.Background(), strings.TrimPrefix(url, "http://"), "x", "/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WriteMessage(websocket.OpText, []byte("hi"))
	c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _, err = c.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.CloseServiceRestart {
		t.Fatalf("want Close 1012 when the instance dies, got %v", err)
	}
}
