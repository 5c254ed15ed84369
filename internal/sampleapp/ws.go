package sampleapp

import (
	"errors"
	"net/http"

	"github.com/handoff-dev/handoff/internal/websocket"
)

// echoSocket echoes every message with its opcode until the client closes,
// or until the server shuts down: then it closes with 1001 (going away), as
// a real app does, so that clients reconnect rather than see a dead socket.
func (a *app) echoSocket(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Upgrade(w, r)
	if err != nil {
		return // Upgrade has answered the client
	}
	a.sockets.Add(1)
	defer a.sockets.Done()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-a.stop:
			_ = c.CloseWithCode(websocket.CloseGoingAway, "server shutting down")
		case <-done:
		}
	}()
	echo(c)
	_ = c.Close()
}

// echo answers messages until reading fails; a write refused because our
// close is already out just waits for the client's close.
func echo(c *websocket.Conn) {
	for {
		op, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		if err := c.WriteMessage(op, msg); err != nil && !errors.Is(err, websocket.ErrClosed) {
			return
		}
	}
}
