package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// h2c is the standard http.Server that serves the connections opening
// with the HTTP/2 preface (prior knowledge, no TLS). The HTTP/1 side hands
// them over through a listener fed by a channel; the server's goroutine
// starts with the first one.
type h2c struct {
	s     *Server
	srv   *http.Server
	ln    *chanListener
	start sync.Once
}

func newH2C(s *Server) *h2c {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	h := &h2c{s: s, ln: newChanListener()}
	h.srv = &http.Server{
		Handler:        s.handler(),
		IdleTimeout:    s.IdleTimeout,
		MaxHeaderBytes: s.MaxHeaderBytes,
		Protocols:      &protos,
		ErrorLog:       slog.NewLogLogger(s.log().Handler(), slog.LevelDebug),
		BaseContext:    func(net.Listener) context.Context { return s.baseCtx },
		ConnState:      s.h2State,
	}
	return h
}

// handToH2 passes a connection that opened with the HTTP/2 preface, the
// bytes read so far included, to the HTTP/2 server. It moves from the
// HTTP/1 connections to the HTTP/2 ones at once, so that Shutdown never
// sees it missing.
func (s *Server) handToH2(c *conn) {
	nc := &h2Conn{Conn: c.rwc, br: c.br}
	if c.readDeadline {
		c.setReadDeadline(time.Time{}) // the HTTP/2 server keeps its own
	}
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		return // closed by the caller as an HTTP/1 connection
	}
	delete(s.conns, c)
	s.h2conns[c.rwc] = http.StateActive
	s.mu.Unlock()
	c.detached = true
	h := s.h2
	h.start.Do(func() {
		go func() {
			if err := h.srv.Serve(h.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log().Error("h1: HTTP/2 server stopped", "error", err)
			}
		}()
	})
	if !h.ln.hand(nc) {
		s.closeLogged("connection", c.rwc)
		s.h2State(nc, http.StateClosed)
	}
}

// h2State tracks the HTTP/2 server's connections, reporting them to the
// ConnState hook as the connections the hook saw accepted.
func (s *Server) h2State(nc net.Conn, st http.ConnState) {
	if h, ok := nc.(*h2Conn); ok {
		nc = h.Conn
	}
	if hook := s.ConnState; hook != nil && st != http.StateNew {
		hook(nc, st) // first, as for HTTP/1 connections (see forget)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.h2conns[nc]; !ok {
		return
	}
	switch st {
	case http.StateClosed, http.StateHijacked:
		delete(s.h2conns, nc)
		s.noteGoneLocked()
		s.Conns.Give() // taken when the connection was accepted as HTTP/1
	default:
		s.h2conns[nc] = st
	}
}

// shutdown sends GOAWAY to the HTTP/2 connections and waits for them.
func (h *h2c) shutdown(ctx context.Context) error {
	if err := h.ln.Close(); err != nil {
		return err
	}
	if err := h.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("shut down HTTP/2 server: %w", err)
	}
	return nil
}

func (h *h2c) close() error {
	if err := h.ln.Close(); err != nil {
		return err
	}
	if err := h.srv.Close(); err != nil {
		return fmt.Errorf("close HTTP/2 server: %w", err)
	}
	return nil
}

// h2Conn is a connection handed to the HTTP/2 server: the bytes the HTTP/1
// side buffered are read first.
type h2Conn struct {
	net.Conn
	br *bufio.Reader
}

func (c *h2Conn) Read(p []byte) (int, error) {
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(p)
		}
		c.br = nil
	}
	return c.Conn.Read(p)
}

// chanListener is a net.Listener whose connections come from hand.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

// hand passes c to Accept; it reports false once the listener is closed.
func (l *chanListener) hand(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops Accept; it may be called more than once.
func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return h2cAddr{} }

type h2cAddr struct{}

func (h2cAddr) Network() string { return "h2c" }
func (h2cAddr) String() string  { return "h2c" }
