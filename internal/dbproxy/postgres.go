package dbproxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// pgSession is one client connection to a Postgres endpoint and the server
// session behind it. Two goroutines run it: the client's (serve: reads the
// client, gates, forwards; it alone opens and replaces server sessions)
// and one pump per server session (reads the server, tracks transaction
// state, forwards).
type pgSession struct {
	e      *Endpoint
	client net.Conn
	cr     *pgReader
	cwMu   sync.Mutex // the client's writer: the pump's and, while no pump runs, serve's
	cw     *bufio.Writer
	gone   chan struct{} // closed when the session ends
	key    uint64        // the client-facing BackendKeyData (pid<<32 | secret)

	startup *pgproto3.StartupMessage
	g       *gate // guarded by e.mu

	mu       sync.Mutex // guards what follows
	srv      *pgServer  // nil: none (lost while idle; opened at the next transaction)
	idle     bool       // between transactions: the next work is gated
	pending  int        // Query, Sync and FunctionCall messages not yet answered by ReadyForQuery
	unsynced bool       // extended-protocol messages sent since the last Sync
	tx       byte       // the last ReadyForQuery status: 'I', 'T' or 'E'
	params   map[string]string
	stmts    map[string][]byte // named prepared statements: their Parse messages
}

// pgServer is one server session.
type pgServer struct {
	conn   net.Conn
	r      *pgReader
	w      *bufio.Writer
	addr   string
	pid    uint32
	secret []byte
	done   chan struct{} // closed when its pump ends
}

// movableParams are the reported settings a client may set and a new
// server session is started with, so that the moved session keeps them.
var movableParams = []string{"application_name", "DateStyle", "IntervalStyle", "TimeZone",
	"client_encoding", "standard_conforming_strings", "search_path"}

func (e *Endpoint) servePG(c net.Conn, g *gate) {
	s := &pgSession{e: e, client: c, cr: newPGReader(c), cw: bufio.NewWriterSize(c, 16<<10), g: g,
		gone: make(chan struct{}), params: map[string]string{}, stmts: map[string][]byte{}}
	defer func() {
		close(s.gone)
		c.Close() // a pump blocked writing to the client lets go
		s.mu.Lock()
		srv := s.srv
		s.srv = nil
		s.mu.Unlock()
		if srv != nil {
			srv.terminate()
			<-srv.done
		}
		e.mu.Lock()
		delete(e.keys, s.key)
		e.mu.Unlock()
		e.leave(s.g)
	}()
	c.SetDeadline(time.Now().Add(e.opts.StartupTimeout))
	if !s.startupMessage() {
		return
	}
	if err := s.login(); err != nil {
		e.log.Debug("client login", "error", err)
		return
	}
	c.SetDeadline(time.Time{})
	e.started(s.g)
	s.mu.Lock()
	s.idle = true
	srv := s.srv
	s.mu.Unlock()
	go s.pump(srv)
	s.serve()
}

// startupMessage reads the client's startup: an SSLRequest or
// GSSENCRequest is answered 'N' (clients talk plaintext to the endpoint on
// loopback), a CancelRequest is passed to the server of the session it
// names. It reports whether a StartupMessage came.
func (s *pgSession) startupMessage() bool {
	be := pgproto3.NewBackend(s.client, s.client)
	for range 3 {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			s.fatal("08P01", "handoff: bad startup message: "+err.Error())
			return false
		}
		switch msg := msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			if _, err := s.client.Write([]byte{'N'}); err != nil {
				return false
			}
		case *pgproto3.CancelRequest:
			s.e.cancelPG(msg)
			return false
		case *pgproto3.StartupMessage:
			if _, ok := msg.Parameters["replication"]; ok {
				s.fatal("0A000", "handoff: replication connections do not go through the database endpoint; connect to the server")
				return false
			}
			if msg.Parameters["user"] == "" {
				s.fatal("28000", "handoff: the startup message names no user")
				return false
			}
			s.startup = &pgproto3.StartupMessage{ProtocolVersion: msg.ProtocolVersion, Parameters: maps.Clone(msg.Parameters)}
			return true
		}
	}
	s.fatal("08P01", "handoff: too many startup messages")
	return false
}

// login opens the first server session on the current server and relays
// the client's login to it untouched: the server decides who gets in, and
// the endpoint never sees a password it was not configured with.
func (s *pgSession) login() error {
	addr, gen := s.e.current()
	ctx, cancel := context.WithTimeout(context.Background(), s.e.opts.ConnectTimeout)
	defer cancel()
	conn, err := s.e.dialPG(ctx, addr)
	if err != nil {
		s.fatal("08006", "handoff: "+err.Error())
		return err
	}
	// The server's side of the login is bounded as the client's is: a
	// server that accepts and then says nothing (frozen, stopped) must not
	// hold the session, its place under max_connections, and Close.
	conn.SetDeadline(time.Now().Add(s.e.opts.StartupTimeout))
	srv := &pgServer{conn: conn, r: newPGReader(conn), w: bufio.NewWriterSize(conn, 16<<10), addr: addr, done: make(chan struct{})}
	fail := func(err error) error {
		conn.Close()
		close(srv.done)
		return err
	}
	startup, err := s.startup.Encode(nil)
	if err != nil {
		return fail(err)
	}
	if _, err := conn.Write(startup); err != nil {
		return fail(fmt.Errorf("send startup to %s: %w", addr, err))
	}
	if err := s.relayLogin(srv); err != nil {
		return fail(err)
	}
	conn.SetDeadline(time.Time{})
	s.e.mu.Lock()
	s.g.addr, s.g.gen = addr, gen
	s.e.mu.Unlock()
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	return nil
}

// authNeedsAnswer are the authentication requests a client answers
// (cleartext, MD5, GSS, SSPI, SASL, SASL continue).
var authNeedsAnswer = map[uint32]bool{2: true, 3: true, 5: true, 7: true, 8: true, 9: true, 10: true, 11: true}

func (s *pgSession) relayLogin(srv *pgServer) error {
	for {
		m, err := srv.r.next(false)
		if err != nil {
			s.fatal("08006", "handoff: login on the server failed: "+err.Error())
			return err
		}
		if m.body == nil {
			return fmt.Errorf("login: %q message of %d bytes", m.typ, m.size)
		}
		switch m.typ {
		case 'K':
			if len(m.body) < 8 {
				return &errMalformed{"short BackendKeyData"}
			}
			srv.pid = binary.BigEndian.Uint32(m.body)
			srv.secret = append([]byte(nil), m.body[4:]...)
			if err := s.sendKey(); err != nil {
				return err
			}
			continue
		case 'S':
			s.noteParam(m.body)
		case 'Z':
			if len(m.body) >= 1 {
				s.tx = m.body[0]
			}
		}
		if err := s.writeClient(m.raw(), true); err != nil {
			return err
		}
		switch m.typ {
		case 'E':
			return errors.New("the server refused the login")
		case 'Z':
			return nil
		case 'R':
			if len(m.body) >= 4 && authNeedsAnswer[binary.BigEndian.Uint32(m.body)] {
				answer, err := s.cr.next(true)
				if err != nil || answer.typ != 'p' || answer.body == nil {
					s.fatal("08P01", "handoff: expected an authentication answer")
					return fmt.Errorf("login: want an authentication answer: %v", err)
				}
				if _, err := srv.conn.Write(answer.raw()); err != nil {
					return err
				}
			}
		}
	}
}

// sendKey gives the client the endpoint's own BackendKeyData: the
// server's changes when the session moves, the client's key must not.
func (s *pgSession) sendKey() error {
	var b [8]byte
	rand.Read(b[:])
	key := binary.BigEndian.Uint64(b[:])
	s.e.mu.Lock()
	for s.e.keys[key] != nil {
		key++
	}
	s.e.keys[key] = s
	s.key = key
	s.e.mu.Unlock()
	msg, _ := (&pgproto3.BackendKeyData{ProcessID: uint32(key >> 32), SecretKey: b[4:]}).Encode(nil)
	binary.BigEndian.PutUint32(msg[9:], uint32(key))
	return s.writeClient(msg, false)
}

// cancelPG passes a client's CancelRequest to the server of the session
// it names, with that server session's own key.
func (e *Endpoint) cancelPG(req *pgproto3.CancelRequest) {
	if len(req.SecretKey) != 4 {
		return
	}
	key := uint64(req.ProcessID)<<32 | uint64(binary.BigEndian.Uint32(req.SecretKey))
	e.mu.Lock()
	s := e.keys[key]
	e.mu.Unlock()
	if s == nil || e.cancelHeld(s.g) {
		return
	}
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.opts.ConnectTimeout)
	defer cancel()
	conn, err := e.dialPG(ctx, srv.addr)
	if err != nil {
		e.log.Warn("cancel request", "error", err)
		return
	}
	defer conn.Close()
	msg, err := (&pgproto3.CancelRequest{ProcessID: srv.pid, SecretKey: srv.secret}).Encode(nil)
	if err == nil {
		conn.Write(msg)
	}
}

// dialPG connects to a Postgres server, with TLS when configured.
func (e *Endpoint) dialPG(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := e.dial(ctx, addr)
	if err != nil || e.opts.TLS == nil {
		return conn, err
	}
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	if _, err := conn.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	var answer [1]byte
	if _, err := io.ReadFull(conn, answer[:]); err != nil || answer[0] != 'S' {
		conn.Close()
		return nil, fmt.Errorf("connect to %s: the server does not accept TLS (tls: on in the config)", addr)
	}
	tc, err := e.startTLS(ctx, conn, addr)
	if err != nil {
		conn.Close()
		return nil, err
	}
	tc.SetDeadline(time.Time{})
	return tc, nil
}

// serve reads the client's messages and forwards them, holding the first
// one of each transaction at the gate.
func (s *pgSession) serve() {
	for {
		s.mu.Lock()
		s.setIdleDeadline()
		s.mu.Unlock()
		m, err := s.cr.next(true)
		if err != nil {
			var bad *errMalformed
			if errors.As(err, &bad) {
				s.fatal("08P01", "handoff: "+err.Error())
			}
			return
		}
		if m.typ == 'X' {
			return
		}
		srv, err := s.gateAndTrack(m)
		if err != nil {
			return
		}
		if srv == nil {
			if err := s.cr.skip(m); err != nil {
				return
			}
			continue
		}
		if err := s.cr.forward(srv.w, m); err != nil {
			return
		}
		if s.cr.r.Buffered() == 0 {
			if err := srv.w.Flush(); err != nil {
				return
			}
		}
	}
}

// startsWork reports whether a message, arriving between transactions,
// starts one (and so waits at the gate). A Flush or a stray COPY message
// does not.
func startsWork(typ byte) bool {
	switch typ {
	case 'H', 'c', 'd', 'f':
		return false
	}
	return true
}

// gateAndTrack admits m's transaction if it starts one (moving the
// session to the current server first if it is on another), then counts
// what m will be answered with. It returns the server to forward to (nil:
// drop m, no server session and nothing to do).
func (s *pgSession) gateAndTrack(m pgMessage) (*pgServer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.idle && startsWork(m.typ) {
		s.mu.Unlock()
		addr, stale, err := s.e.admit(s.g, s.gone)
		if errors.Is(err, errCancelled) {
			// The client (pgx at its query timeout, psql at Ctrl-C) asked to
			// cancel what it sent: it did not run, and the session ends
			// with the error Postgres gives a cancelled statement.
			s.fatal("57014", "handoff: canceling statement due to user request (it was held by a pause and did not run)")
		}
		if err == nil && (stale || s.server() == nil) {
			err = s.move(addr)
		}
		s.mu.Lock()
		if err != nil {
			return nil, err
		}
		s.idle = false
	}
	switch m.typ {
	case 'Q':
		s.pending++
		if m.body != nil {
			s.noteDeallocation(m.body)
		}
	case 'F':
		s.pending++
	case 'S':
		s.pending++
		s.unsynced = false
	case 'P':
		s.unsynced = true
		if m.body != nil {
			if name, _, ok := cstring(m.body); ok && name != "" {
				s.stmts[name] = m.raw()
			}
		}
	case 'C':
		s.unsynced = true
		if len(m.body) >= 2 && m.body[0] == 'S' {
			if name, _, ok := cstring(m.body[1:]); ok {
				delete(s.stmts, name)
			}
		}
	case 'B', 'D', 'E':
		s.unsynced = true
	}
	return s.srv, nil
}

func (s *pgSession) server() *pgServer {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

func (s *pgSession) noteDeallocation(body []byte) {
	query, _, _ := cstring(body)
	names, all := deallocation(query)
	if all {
		clear(s.stmts)
	}
	for _, n := range names {
		delete(s.stmts, n)
	}
}

// pump reads one server session and forwards to the client.
func (s *pgSession) pump(srv *pgServer) {
	defer close(srv.done)
	for {
		m, err := srv.r.next(false)
		if err != nil {
			s.lost(srv, err)
			return
		}
		if m.body != nil {
			switch m.typ {
			case 'Z':
				if len(m.body) != 1 {
					s.lost(srv, &errMalformed{"ReadyForQuery of " + strconv.Itoa(len(m.body)) + " bytes"})
					return
				}
				s.ready(m.body[0])
			case 'S':
				s.mu.Lock()
				s.noteParam(m.body)
				s.mu.Unlock()
			case 'E':
				s.mu.Lock()
				idle := s.idle
				s.mu.Unlock()
				// The server ends a session the client is not using
				// (idle_session_timeout, pg_terminate_backend, a shutdown):
				// the client keeps its connection and its next transaction
				// opens a new server session (lost), so this is not the
				// client's error to see.
				if e := fatalIfIdle(idle, m.body); e != nil {
					s.e.log.Info("the server ends a session between transactions", "server", srv.addr, "error", e.Code+" "+e.Message)
					continue
				}
			}
		}
		s.cwMu.Lock()
		err = srv.r.forward(s.cw, m)
		if err == nil && srv.r.r.Buffered() == 0 {
			err = s.cw.Flush()
		}
		s.cwMu.Unlock()
		if err != nil {
			s.client.Close() // the client is gone: serve ends too
			return
		}
	}
}

// ready counts a ReadyForQuery: when every request is answered and no
// transaction is open, the session is between transactions.
func (s *pgSession) ready(status byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tx = status
	s.pending = max(s.pending-1, 0)
	if s.pending == 0 && !s.unsynced && status == 'I' && !s.idle {
		s.idle = true
		s.e.settle(s.g)
		s.setIdleDeadline() // serve is in its read already: its deadline changes under it
	}
}

// setIdleDeadline gives the client's reads the idle timeout between
// transactions, and none inside one. s.mu is held, so that serve and the
// pump (ready) cannot set them out of order.
func (s *pgSession) setIdleDeadline() {
	if s.idle {
		s.client.SetReadDeadline(time.Now().Add(s.e.opts.IdleTimeout))
	} else {
		s.client.SetReadDeadline(time.Time{})
	}
}

// lost handles a server session that ended under its pump. Between
// transactions the client keeps its connection (the next transaction opens
// a new server session); inside one the client is told and let go.
func (s *pgSession) lost(srv *pgServer, err error) {
	s.mu.Lock()
	if s.srv != srv {
		s.mu.Unlock()
		return // replaced or ended on purpose
	}
	s.srv = nil
	idle := s.idle
	s.mu.Unlock()
	srv.conn.Close()
	if idle {
		s.e.log.Info("server session ended between transactions; the next transaction opens a new one", "server", srv.addr, "error", err)
		return
	}
	s.fatal("08006", fmt.Sprintf("handoff: the server %s ended the session inside a transaction: %v", srv.addr, err))
	s.client.Close()
}

func (s *pgSession) noteParam(body []byte) {
	name, rest, ok := cstring(body)
	if !ok {
		return
	}
	if value, _, ok := cstring(rest); ok {
		s.params[name] = value
	}
}

// move replaces the session's server session with a new one on addr, at
// a transaction boundary: the old one is ended, the new one opened with
// the client's startup parameters and the settings it has changed since,
// logged in with the endpoint's credentials, and given the client's named
// prepared statements again.
func (s *pgSession) move(addr string) error {
	s.mu.Lock()
	old := s.srv
	s.srv = nil
	s.mu.Unlock()
	if old != nil {
		old.terminate()
		<-old.done
	}
	srv, err := s.open(addr)
	if err != nil {
		s.e.moveFailed()
		s.e.log.Warn("session could not move; its client is disconnected", "server", addr, "error", err)
		s.fatal("08006", fmt.Sprintf("handoff: could not open a session on %s for this connection: %v", addr, err))
		return err
	}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	s.e.moveTo(s.g, addr, 0)
	go s.pump(srv)
	return nil
}

func (s *pgSession) open(addr string) (*pgServer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.e.opts.ConnectTimeout)
	defer cancel()
	user := s.startup.Parameters["user"]
	password, err := s.e.opts.Password(user)
	if err != nil {
		return nil, fmt.Errorf("password of %s: %w", user, err)
	}
	host, port, _ := net.SplitHostPort(addr)
	cfg, err := pgconn.ParseConfig("sslmode=disable")
	if err != nil {
		return nil, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("port of %s: %w", addr, err)
	}
	cfg.Host, cfg.Port, cfg.User, cfg.Password = host, uint16(p), user, password
	cfg.Database = s.startup.Parameters["database"]
	if cfg.Database == "" {
		cfg.Database = user
	}
	cfg.TLSConfig, cfg.Fallbacks = nil, nil
	cfg.ConnectTimeout = s.e.opts.ConnectTimeout
	cfg.DialFunc = func(ctx context.Context, _, addr string) (net.Conn, error) { return s.e.dialPG(ctx, addr) }
	cfg.RuntimeParams = map[string]string{}
	for k, v := range s.startup.Parameters {
		if k != "user" && k != "database" {
			cfg.RuntimeParams[k] = v
		}
	}
	s.mu.Lock()
	for _, k := range movableParams {
		if v, ok := s.params[k]; ok {
			cfg.RuntimeParams[k] = v
		}
	}
	s.mu.Unlock()
	if s.startup.ProtocolVersion == pgproto3.ProtocolVersion32 {
		cfg.MinProtocolVersion, cfg.MaxProtocolVersion = "3.2", "3.2"
	} else {
		cfg.MinProtocolVersion, cfg.MaxProtocolVersion = "3.0", "3.0"
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	// pgconn starts a background reader when a write seems slow (15 ms of
	// wall time: a busy host does that to the login's first write); one
	// that got its answer before it was told to stop reads again, and that
	// read, still waiting on the connection after Hijack, took the
	// server's next answer — the re-prepare's, or the client's first
	// query's, which hung (seen under CI's load). SyncConn ends it (a ping
	// through pgconn when one is under way) before the connection is ours.
	if err := pc.SyncConn(ctx); err != nil {
		pc.Close(ctx)
		return nil, err
	}
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(ctx)
		return nil, err
	}
	srv := &pgServer{conn: hc.Conn, r: newPGReader(hc.Conn), w: bufio.NewWriterSize(hc.Conn, 16<<10),
		addr: addr, pid: hc.PID, secret: hc.SecretKey, done: make(chan struct{})}
	if err := s.prepareAgain(srv); err != nil {
		srv.conn.Close()
		return nil, err
	}
	return srv, s.tellParams(hc.ParameterStatuses)
}

// prepareAgain sends the client's named prepared statements to a new
// server session, each with its own Sync so that one that fails (its
// table dropped meanwhile) leaves the others; the failed one is forgotten
// and the client's use of it fails as it would have on the old server.
func (s *pgSession) prepareAgain(srv *pgServer) error {
	s.mu.Lock()
	names := slices.Sorted(maps.Keys(s.stmts))
	msgs := make([][]byte, len(names))
	for i, n := range names {
		msgs[i] = s.stmts[n]
	}
	s.mu.Unlock()
	if len(names) == 0 {
		return nil
	}
	srv.conn.SetDeadline(time.Now().Add(s.e.opts.ConnectTimeout))
	defer srv.conn.SetDeadline(time.Time{})
	// The answers are read by another goroutine so that a long list of
	// statements cannot deadlock the two sides' socket buffers.
	errc := make(chan error, 1)
	failed := map[string]bool{}
	go func() {
		for i, n := range names {
			for {
				m, err := srv.r.next(false)
				if err != nil {
					errc <- fmt.Errorf("%d of %d statements answered: %w", i, len(names), err)
					return
				}
				if err := srv.r.skip(m); err != nil {
					errc <- err
					return
				}
				if m.typ == 'E' {
					failed[n] = true
				}
				if m.typ == 'Z' {
					break
				}
			}
		}
		errc <- nil
	}()
	for _, msg := range msgs {
		srv.w.Write(msg)
		srv.w.Write([]byte{'S', 0, 0, 0, 4})
	}
	if err := srv.w.Flush(); err != nil {
		return fmt.Errorf("prepare statements again: %w", err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("prepare statements again: %w", err)
	}
	if len(failed) > 0 {
		s.e.log.Info("prepared statements that could not be prepared again are forgotten", "count", len(failed))
		s.mu.Lock()
		for n := range failed {
			delete(s.stmts, n)
		}
		s.mu.Unlock()
	}
	return nil
}

// tellParams sends the client the settings the new server reports
// differently (server_version after a major-version move, say): drivers
// take ParameterStatus at any time.
func (s *pgSession) tellParams(params map[string]string) error {
	s.mu.Lock()
	var msgs []byte
	for _, k := range slices.Sorted(maps.Keys(params)) {
		if s.params[k] != params[k] {
			s.params[k] = params[k]
			msgs, _ = (&pgproto3.ParameterStatus{Name: k, Value: params[k]}).Encode(msgs)
		}
	}
	s.mu.Unlock()
	if len(msgs) == 0 {
		return nil
	}
	return s.writeClient(msgs, false)
}

func (s *pgSession) writeClient(b []byte, flush bool) error {
	s.cwMu.Lock()
	defer s.cwMu.Unlock()
	if _, err := s.cw.Write(b); err != nil {
		return err
	}
	if flush {
		return s.cw.Flush()
	}
	return nil
}

// fatal tells the client why its connection ends, as the server would.
func (s *pgSession) fatal(code, msg string) {
	b, _ := (&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: code, Message: msg}).Encode(nil)
	s.client.SetWriteDeadline(time.Now().Add(time.Second))
	s.writeClient(b, true)
}

// terminate ends a server session politely (Terminate), then closes it.
func (srv *pgServer) terminate() {
	srv.conn.SetWriteDeadline(time.Now().Add(time.Second))
	srv.w.Write([]byte{'X', 0, 0, 0, 4})
	srv.w.Flush()
	srv.conn.Close()
}

// refusePG answers a client over max_connections after reading its
// startup (answering an SSLRequest 'N' first), as Postgres does.
func refusePG(c net.Conn) {
	be := pgproto3.NewBackend(c, c)
	for range 2 {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		switch msg.(type) {
		case *pgproto3.SSLRequest, *pgproto3.GSSEncRequest:
			c.Write([]byte{'N'})
			continue
		}
		break
	}
	b, _ := (&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "53300",
		Message: "handoff: too many connections to this database endpoint (max_connections)"}).Encode(nil)
	c.Write(b)
}

// fatalIfIdle decodes an ErrorResponse's body, for a session between
// transactions, when it is of severity FATAL or PANIC (the server ends
// the session with it); nil otherwise.
func fatalIfIdle(idle bool, body []byte) *pgproto3.ErrorResponse {
	if !idle {
		return nil
	}
	var e pgproto3.ErrorResponse
	if e.Decode(body) != nil {
		return nil
	}
	sev := e.SeverityUnlocalized // 9.6 and later; Severity may be translated
	if sev == "" {
		sev = e.Severity
	}
	if sev != "FATAL" && sev != "PANIC" {
		return nil
	}
	return &e
}
