package h1

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoff-dev/handoff/internal/conncap"
)

// Server serves HTTP/1.0 and HTTP/1.1 on the listeners given to Serve, and
// HTTP/2 to clients that open with its preface (h2c prior knowledge)
// through a standard http.Server. Set the exported fields before the first
// Serve; do not copy a Server after.
type Server struct {
	// Handler serves every request, HTTP/1 and HTTP/2; nil means
	// http.DefaultServeMux.
	Handler http.Handler
	// ReadHeaderTimeout bounds reading a request head: from accept for a
	// new connection, from the first byte on a kept-alive one. Zero means
	// no limit.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a kept-alive
	// connection. Zero means no limit; then Shutdown waits for idle
	// connections until its context ends.
	IdleTimeout time.Duration
	// BodyTimeout bounds the wait for each read of a request body, from
	// when the read finds nothing buffered: a client that stops sending
	// its body makes the handler's read fail with an error that wraps
	// os.ErrDeadlineExceeded. Zero means no limit.
	BodyTimeout time.Duration
	// Conns caps the connections served at once, HTTP/1 and HTTP/2, and
	// those hijacked until their handler closes them (Hijack's net.Conn
	// is then a wrapper that gives the place back at Close), a cap this
	// server may share with others (every listener of handoff serve takes
	// from one). A connection over the cap
	// gets a 503 with "Retry-After: 1" and is closed without its request
	// being read, so that a flood costs a short write rather than a
	// goroutine and buffers each. nil means no cap.
	Conns *conncap.Cap
	// MaxHeaderBytes bounds a request head, request line included; a
	// larger one gets 431. Zero means http.DefaultMaxHeaderBytes.
	MaxHeaderBytes int
	// ErrorLog receives handler panics (Error), handler mistakes (Warn) and
	// refused requests and connection errors (Debug); nil means
	// slog.Default().
	ErrorLog *slog.Logger
	// ConnState, if set, is called as a connection changes state, as with
	// http.Server: New at accept, Active when a request begins, Idle
	// between requests, Hijacked or Closed at the end. HTTP/2 connections
	// report their states too. It runs on the connection's goroutine.
	ConnState func(net.Conn, http.ConnState)

	initOnce sync.Once
	baseCtx  context.Context
	cancel   context.CancelFunc
	draining atomic.Bool
	h2       *h2c

	turnedAway atomic.Int64  // connections refused over the cap
	turning    chan struct{} // bounds the goroutines that turn connections away

	mu        sync.Mutex
	listeners map[*net.Listener]struct{}
	conns     map[*conn]struct{}
	h2conns   map[net.Conn]http.ConnState
	stopping  bool          // Shutdown or Close began: no new listeners or connections
	gone      chan struct{} // closed when the last connection is gone
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.baseCtx, s.cancel = context.WithCancel(context.Background())
		s.listeners = map[*net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		s.h2conns = map[net.Conn]http.ConnState{}
		s.h2 = newH2C(s)
		s.turning = make(chan struct{}, maxTurning)
	})
}

// Serve accepts connections on l, one goroutine each, until Shutdown or
// Close, and then returns http.ErrServerClosed; any other error of Accept
// that is not temporary ends it too. It closes l when it returns.
func (s *Server) Serve(l net.Listener) error {
	s.init()
	if !s.trackListener(&l, true) {
		s.closeLogged("listener", l)
		return http.ErrServerClosed
	}
	defer s.trackListener(&l, false)
	defer s.closeLogged("listener", l)
	var delay time.Duration
	for {
		rwc, err := l.Accept()
		if err != nil {
			if s.isStopping() {
				return http.ErrServerClosed
			}
			if !isTemporary(err) {
				return fmt.Errorf("accept connection: %w", err)
			}
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log().Warn("h1: accept failed; retrying", "error", err, "delay", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if !s.Conns.Take() {
			s.turnAway(rwc)
			continue
		}
		if c := s.track(rwc); c != nil {
			go c.serve()
		}
	}
}

func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Drain makes every response from now on carry "Connection: close" and
// close its connection after it. Idle connections are not closed early:
// each closes at its idle timeout, or after answering (with "Connection:
// close") the one more request its client sends first — so no client
// sends a request on a connection the server is closing. HTTP/2
// connections are told to go away by Shutdown.
func (s *Server) Drain() { s.draining.Store(true) }

// Shutdown drains (see Drain), closes the listeners, and waits until every
// connection, HTTP/1 and HTTP/2, is gone; if ctx ends first it closes the
// rest (see Close) and returns ctx's error. Hijacked connections are not
// waited for.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.Drain()
	err := s.closeListeners()
	h2err := make(chan error, 1)
	go func() { h2err <- s.h2.shutdown(ctx) }()
	select {
	case <-s.allGone():
	case <-ctx.Done():
		if cerr := s.Close(); cerr != nil {
			s.log().Debug("h1: close after shutdown timeout", "error", cerr)
		}
		return ctx.Err()
	}
	select {
	case e := <-h2err:
		err = errors.Join(err, e)
	case <-ctx.Done():
		// The HTTP/2 server polls for its idle connections; ours are all
		// gone, so it is done in substance.
	}
	return err
}

// Close closes the listeners and every connection now, and cancels every
// request's context. Hijacked connections are left to their handlers.
func (s *Server) Close() error {
	s.init()
	s.draining.Store(true)
	err := s.closeListeners()
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		s.closeLogged("connection", c.rwc)
	}
	s.cancel()
	return errors.Join(err, s.h2.close())
}

// ConnStats counts a server's connections. Hijacked ones are no longer
// the server's and are not counted.
type ConnStats struct {
	New, Active, Idle int // HTTP/1 connections by http.ConnState
	HTTP2             int // HTTP/2 connections, whatever their state
	// TurnedAway counts connections refused over the cap since the start.
	TurnedAway int64
}

// Total is the number of connections.
func (st ConnStats) Total() int { return st.New + st.Active + st.Idle + st.HTTP2 }

// ConnStats returns the current connection counts, for status pages.
func (s *Server) ConnStats() ConnStats {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	st := ConnStats{HTTP2: len(s.h2conns), TurnedAway: s.turnedAway.Load()}
	for c := range s.conns {
		switch http.ConnState(c.state.Load()) {
		case http.StateNew:
			st.New++
		case http.StateActive:
			st.Active++
		case http.StateIdle:
			st.Idle++
		}
	}
	return st
}

// ConnCount returns the number of connections the server holds.
func (s *Server) ConnCount() int {
	s.init()
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns) + len(s.h2conns)
}

func (s *Server) handler() http.Handler {
	if s.Handler != nil {
		return s.Handler
	}
	return http.DefaultServeMux
}

func (s *Server) log() *slog.Logger {
	if s.ErrorLog != nil {
		return s.ErrorLog
	}
	return slog.Default()
}

func (s *Server) maxHeaderBytes() int {
	if s.MaxHeaderBytes > 0 {
		return s.MaxHeaderBytes
	}
	return http.DefaultMaxHeaderBytes
}

// closeLogged closes what; a failure is logged, as nothing else can be
// done about it.
func (s *Server) closeLogged(what string, c io.Closer) {
	if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		s.log().Debug("h1: close "+what, "error", err)
	}
}

func (s *Server) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

func (s *Server) trackListener(l *net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.listeners, l)
		return true
	}
	if s.stopping {
		return false
	}
	s.listeners[l] = struct{}{}
	return true
}

// closeListeners stops every Serve; no connection is accepted after.
func (s *Server) closeListeners() error {
	s.mu.Lock()
	s.stopping = true
	ls := make([]net.Listener, 0, len(s.listeners))
	for l := range s.listeners {
		ls = append(ls, *l)
	}
	s.mu.Unlock()
	var errs []error
	for _, l := range ls {
		if err := l.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, fmt.Errorf("close listener %s: %w", l.Addr(), err))
		}
	}
	return errors.Join(errs...)
}

// track registers a new connection, or closes it if the server stops.
func (s *Server) track(rwc net.Conn) *conn {
	c := newConn(s, rwc)
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		c.cancel()
		s.closeLogged("connection", rwc)
		s.Conns.Give()
		return nil
	}
	s.conns[c] = struct{}{}
	s.mu.Unlock()
	c.setState(http.StateNew)
	return c
}

// forget unregisters a connection that closed and gives its place in
// the cap back.
func (s *Server) forget(c *conn, st http.ConnState) {
	s.untrack(c, st)
	s.Conns.Give()
}

// untrack unregisters a connection that closed or was hijacked. The hook
// runs first, so that when Shutdown returns every hook has run.
func (s *Server) untrack(c *conn, st http.ConnState) {
	c.setState(st)
	s.mu.Lock()
	delete(s.conns, c)
	s.noteGoneLocked()
	s.mu.Unlock()
}

func (s *Server) noteGoneLocked() {
	if s.gone != nil && len(s.conns)+len(s.h2conns) == 0 {
		close(s.gone)
		s.gone = nil
	}
}

// allGone returns a channel closed when no connection is left.
func (s *Server) allGone() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns)+len(s.h2conns) == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	if s.gone == nil {
		s.gone = make(chan struct{})
	}
	return s.gone
}

// maxTurning bounds the connections being turned away at once; past it a
// connection is closed with no answer, as an accept backlog overflow would.
const maxTurning = 64

// turnAway answers a connection over the cap with a 503 and closes it
// with a short lingering close, on a goroutine of its own so that accepting
// goes on.
func (s *Server) turnAway(rwc net.Conn) {
	s.turnedAway.Add(1)
	select {
	case s.turning <- struct{}{}:
	default:
		s.closeLogged("connection", rwc)
		return
	}
	go func() {
		defer func() { <-s.turning }()
		defer s.closeLogged("connection", rwc)
		_ = rwc.SetDeadline(time.Now().Add(lingerTimeout))
		if _, err := rwc.Write(errTooManyConns.response()); err != nil {
			return
		}
		if cw, ok := rwc.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
			_, _ = io.CopyN(io.Discard, rwc, lingerMax)
		}
	}()
}
