package dbproxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// mySession is one client connection to a MySQL/MariaDB endpoint. MySQL
// is request and response (the server says nothing unasked), so one
// goroutine runs it: read a command, gate it if it starts a transaction,
// forward it, forward the response while reading its end and the
// server-status flags there.
type mySession struct {
	e      *Endpoint
	client net.Conn
	cr     *myReader
	cw     *bufio.Writer
	g      *gate // guarded by e.mu
	srv    *myServer
	login  *myLogin
	db     string // the current database (login, COM_INIT_DB, USE)

	idle       bool   // between transactions
	status     uint16 // the last server-status flags
	longData   bool   // COM_STMT_SEND_LONG_DATA sent, its EXECUTE not yet
	stmts      map[uint32]*myStmt
	nextStmtID uint32
}

// myStmt is a prepared statement by the id the client knows: the endpoint
// gives its own ids, so that they survive a move to a server that numbers
// statements differently.
type myStmt struct {
	query  []byte
	server uint32 // the id on the current server session
	params uint16 // its parameters, from the server's answer to the prepare
	// types is the parameter types the client last bound with an execute;
	// rebound says the statement was prepared again on a new server
	// session and has had no execute with types there yet (bindTypes).
	types   []byte
	rebound bool
}

type myServer struct {
	conn   net.Conn // TLS over raw when the endpoint's config says so
	raw    net.Conn // the TCP connection
	thread uint32   // the server's connection id for this session
	r      *myReader
	w      *bufio.Writer
	addr   string
}

func newMyServer(conn net.Conn, addr string) *myServer {
	return &myServer{conn: conn, raw: conn, r: newMyReader(conn), w: bufio.NewWriterSize(conn, 16<<10), addr: addr}
}

// startTLS asks the server for TLS (an SSLRequest: the head of a
// handshake response with CLIENT_SSL, sequence seq), shakes hands, and
// carries on inside the TLS session, where the real handshake response
// follows with sequence seq+1. offers is whether the server's handshake
// offered TLS (CLIENT_SSL).
func (srv *myServer) startTLS(ctx context.Context, e *Endpoint, offers bool, seq byte, caps, maxPacket uint32, charset byte) error {
	if !offers {
		return fmt.Errorf("connect to %s: the server does not offer TLS (tls: in the config wants it)", srv.addr)
	}
	req := binary.LittleEndian.AppendUint32(nil, caps|capSSL)
	req = binary.LittleEndian.AppendUint32(req, maxPacket)
	req = append(req, charset)
	req = append(req, make([]byte, 23)...)
	if _, err := srv.raw.Write(myPacketBytes(seq, req)); err != nil {
		return err
	}
	tc, err := e.startTLS(ctx, srv.raw, srv.addr)
	if err != nil {
		return err
	}
	srv.conn, srv.r, srv.w = tc, newMyReader(tc), bufio.NewWriterSize(tc, 16<<10)
	return nil
}

func (e *Endpoint) serveMySQL(c net.Conn, g *gate) {
	s := &mySession{e: e, client: c, cr: newMyReader(c), cw: bufio.NewWriterSize(c, 16<<10), g: g,
		stmts: map[uint32]*myStmt{}, nextStmtID: 1}
	defer func() {
		if s.srv != nil {
			s.srv.quit()
		}
		e.leave(s.g)
	}()
	c.SetDeadline(time.Now().Add(e.opts.StartupTimeout))
	if err := s.relayLogin(); err != nil {
		e.log.Debug("client login", "error", err)
		return
	}
	c.SetDeadline(time.Time{})
	s.srv.raw.SetDeadline(time.Time{})
	e.started(s.g)
	s.idle = true
	if err := s.serve(); err != nil {
		e.log.Debug("client session ended", "error", err)
	}
}

// relayLogin connects to the current server and relays the handshake and
// the client's login to it untouched, except for the capabilities the
// endpoint does not follow, which it takes out of the server's offer.
// With TLS to the server, the endpoint asks for it itself between the
// handshake and the client's response (the client talks plaintext to the
// endpoint); that SSLRequest takes a sequence number the client does not
// know of, so the login's packets are renumbered by one on their way.
func (s *mySession) relayLogin() error {
	addr, gen := s.e.current()
	ctx, cancel := context.WithTimeout(context.Background(), s.e.opts.ConnectTimeout)
	defer cancel()
	conn, err := s.e.dial(ctx, addr)
	if err != nil {
		s.client.Write(mysqlErrPacket(0, 2003, "HY000", "handoff: "+err.Error()))
		return err
	}
	// Bounded as the client's side is (see pgSession.login); serveMy
	// clears it once the login is through.
	conn.SetDeadline(time.Now().Add(s.e.opts.StartupTimeout))
	srv := newMyServer(conn, addr)
	s.srv = srv
	p, err := srv.r.next(0)
	if err != nil || p.partial {
		return fmt.Errorf("server handshake: %v", err)
	}
	if p.first() == 0xff { // the server refuses (too many connections, host blocked)
		return s.toClient(srv.r, p, true)
	}
	h, err := parseHandshake(p.payload)
	if err != nil {
		return err
	}
	srv.thread = h.thread
	// The client is given a connection id of the endpoint's (see
	// killQuery): the server's changes when the session moves.
	binary.LittleEndian.PutUint32(p.payload[h.threadAt:], s.e.clientID(s.g))
	offersTLS := h.caps&capSSL != 0
	h.restrict()
	if err := s.toClient(srv.r, p, true); err != nil {
		return err
	}
	p, err = s.cr.next(0)
	if err != nil || p.partial {
		return fmt.Errorf("client handshake response: %v", err)
	}
	login, err := parseLogin(p.payload)
	if err != nil {
		s.client.Write(mysqlErrPacket(p.seq()+1, 1043, "08S01", "handoff: "+err.Error()))
		return err
	}
	// A client that asks for what was not offered is told no here, not
	// misread later.
	login.caps &^= capUnsupportedByUs
	s.login, s.db = login, login.db
	var shift byte // the login's sequence numbers at the server are the client's + shift
	if s.e.opts.TLS != nil {
		// A clock of its own: the dial's included the client's answer.
		tctx, tcancel := context.WithTimeout(context.Background(), s.e.opts.ConnectTimeout)
		err := srv.startTLS(tctx, s.e, offersTLS, p.seq(), login.caps, login.maxPacket, login.charset)
		tcancel()
		if err != nil {
			s.client.Write(mysqlErrPacket(p.seq()+1, 2026, "HY000", "handoff: "+err.Error()))
			return err
		}
		shift = 1
		binary.LittleEndian.PutUint32(p.payload, login.caps|capSSL)
	} else {
		binary.LittleEndian.PutUint32(p.payload, login.caps)
	}
	p.head[3] += shift
	if err := srv.r.forward(srv.w, p); err != nil {
		return err
	}
	if err := srv.w.Flush(); err != nil {
		return err
	}
	for {
		p, err := srv.r.next(0)
		if err != nil || p.partial {
			return fmt.Errorf("login: %v", err)
		}
		p.head[3] -= shift
		if err := s.toClient(srv.r, p, true); err != nil {
			return err
		}
		switch {
		case p.first() == 0x00:
			s.status, _ = okStatus(p.payload)
			s.e.mu.Lock()
			s.g.addr, s.g.gen, s.g.thread = addr, gen, srv.thread
			s.e.mu.Unlock()
			return nil
		case p.first() == 0xff:
			return errors.New("the server refused the login")
		case p.first() == 0x01 && len(p.payload) == 2 && p.payload[1] == 0x03:
			continue // caching_sha2_password's fast path: an OK follows
		}
		answer, err := s.cr.next(0)
		if err != nil || answer.partial {
			return fmt.Errorf("login: %v", err)
		}
		answer.head[3] += shift
		if err := srv.r.forwardFrom(srv.w, s.cr, answer); err != nil {
			return err
		}
	}
}

// forwardFrom writes p, read by from, to w and flushes w.
func (*myReader) forwardFrom(w *bufio.Writer, from *myReader, p myPacket) error {
	if err := from.forward(w, p); err != nil {
		return err
	}
	return w.Flush()
}

// toClient forwards a server packet to the client.
func (s *mySession) toClient(r *myReader, p myPacket, flush bool) error {
	if err := r.forward(s.cw, p); err != nil {
		return err
	}
	if flush {
		return s.cw.Flush()
	}
	return nil
}

// myCommandKnown lists the commands the endpoint follows; others are
// refused (replication, COM_CHANGE_USER: their sessions cannot be moved).
func myCommandKnown(cmd byte) bool {
	switch cmd {
	case myCmdQuit, myCmdInitDB, myCmdQuery, myCmdFieldList, myCmdStatistics, myCmdProcessKill, myCmdPing,
		myCmdStmtPrepare, myCmdStmtExecute, myCmdStmtSendLong, myCmdStmtClose, myCmdStmtReset,
		myCmdSetOption, myCmdStmtFetch, myCmdResetConnection:
		return true
	}
	return false
}

func (s *mySession) serve() error {
	for {
		if s.idle {
			s.client.SetReadDeadline(time.Now().Add(s.e.opts.IdleTimeout))
		} else {
			s.client.SetReadDeadline(time.Time{})
		}
		head, err := s.cr.r.Peek(4)
		if err != nil {
			return err
		}
		if head[3] != 0 {
			// Not the start of a command: refused before its length is
			// believed (an HTTP request's "GET " reads as 5 MB).
			s.client.Write(mysqlErrPacket(1, 1047, "08S01", "handoff: malformed command packet"))
			return fmt.Errorf("malformed command: sequence %d", head[3])
		}
		keep := 0
		if b, err := s.cr.r.Peek(5); err == nil && b[4] == myCmdStmtPrepare {
			keep = myPrepareMax
		}
		p, err := s.cr.next(keep)
		if err != nil {
			return err
		}
		if p.seq() != 0 || p.size == 0 {
			s.client.Write(mysqlErrPacket(1, 1047, "08S01", "handoff: malformed command packet"))
			return fmt.Errorf("malformed command: seq %d, %d bytes", p.seq(), p.size)
		}
		cmd := p.first()
		if cmd == myCmdQuit {
			return nil
		}
		if !myCommandKnown(cmd) {
			if err := s.cr.skip(p); err != nil {
				return err
			}
			s.client.Write(mysqlErrPacket(1, 1047, "08S01", fmt.Sprintf("handoff: command 0x%02x is not supported through the database endpoint", cmd)))
			return fmt.Errorf("unsupported command 0x%02x", cmd)
		}
		if err := s.command(p, cmd); err != nil {
			return err
		}
	}
}

// command gates, forwards and answers one command.
func (s *mySession) command(p myPacket, cmd byte) error {
	if cmd == myCmdStmtClose && (s.idle || s.srv == nil) {
		// Closing a statement starts nothing; on a server session that is
		// out of date (or gone) it is done by forgetting the statement.
		id := binary.LittleEndian.Uint32(append(p.payload[1:], 0, 0, 0, 0))
		st := s.stmts[id]
		delete(s.stmts, id)
		if st == nil || s.srv == nil || s.stale() {
			return s.cr.skip(p)
		}
		binary.LittleEndian.PutUint32(p.payload[1:], st.server)
		return s.cr.forward(s.srv.w, p)
	}
	if s.idle {
		addr, stale, err := s.e.admit(s.g, nil)
		if err != nil {
			return err
		}
		if stale || !s.srv.alive() {
			if err := s.move(addr); err != nil {
				return err
			}
		}
		s.idle = false
	}
	if cmd >= myCmdStmtExecute && cmd <= myCmdStmtFetch && cmd != myCmdSetOption && len(p.payload) >= 5 {
		id := binary.LittleEndian.Uint32(p.payload[1:])
		server := uint32(0xffffffff) // an id the server does not know: it says so
		if st := s.stmts[id]; st != nil {
			server = st.server
			if cmd == myCmdStmtExecute {
				bindTypes(&p, st)
			}
		}
		binary.LittleEndian.PutUint32(p.payload[1:], server)
		if cmd == myCmdStmtClose {
			delete(s.stmts, id)
		}
	}
	if cmd == myCmdQuery && !p.partial {
		if q, ok := s.killQuery(p.payload[1:]); ok {
			p.setPayload(append(p.payload[:1:1], q...))
		}
	}
	var query []byte
	if cmd == myCmdStmtPrepare || cmd == myCmdQuery || cmd == myCmdInitDB {
		if p.partial {
			query = nil
		} else {
			query = bytes.Clone(p.payload[1:])
		}
	}
	if err := s.forwardCommand(p); err != nil {
		return err
	}
	var err error
	switch cmd {
	case myCmdStmtClose:
		// no answer
	case myCmdStmtSendLong:
		s.longData = true
	case myCmdStmtPrepare:
		err = s.prepareResponse(query)
	case myCmdQuery, myCmdStmtExecute:
		var ok bool
		ok, err = s.results()
		s.longData = false
		if db, use := noteUse(query); ok && use && cmd == myCmdQuery {
			s.db = db
		}
	case myCmdStmtFetch:
		err = s.rows()
	case myCmdFieldList:
		err = s.columns()
	default:
		err = s.single(cmd, query)
	}
	if err != nil {
		return err
	}
	if err := s.cw.Flush(); err != nil {
		return err
	}
	if s.status&(statusInTrans|statusCursorExists) == 0 && !s.longData {
		s.idle = true
		s.e.settle(s.g)
	}
	return nil
}

// stale reports whether the session's server is no longer the current one.
func (s *mySession) stale() bool {
	s.e.mu.Lock()
	defer s.e.mu.Unlock()
	return s.g.gen != s.e.gen || s.g.addr != s.e.addr
}

// forwardCommand sends a client's command, all its packets, to the server.
func (s *mySession) forwardCommand(p myPacket) error {
	for {
		if err := s.cr.forward(s.srv.w, p); err != nil {
			return err
		}
		if p.size < myMaxPayload {
			break
		}
		var err error
		if p, err = s.cr.next(0); err != nil {
			return err
		}
	}
	return s.srv.w.Flush()
}

// packet reads one logical server packet and forwards it to the client
// (continuation packets too); it returns the first physical packet, whose
// payload (or first bytes) tells what it is.
func (s *mySession) packet() (myPacket, error) {
	p, err := s.srv.r.next(0)
	if err != nil {
		return p, s.serverLost(err)
	}
	first := p
	first.payload = bytes.Clone(p.payload)
	for {
		if err := s.toClient(s.srv.r, p, false); err != nil {
			return p, err
		}
		if p.size < myMaxPayload {
			return first, nil
		}
		if p, err = s.srv.r.next(0); err != nil {
			return p, s.serverLost(err)
		}
	}
}

// serverLost tells the client that its server session ended inside a
// command (nothing else can be done for it).
func (s *mySession) serverLost(err error) error {
	s.cw.Flush()
	s.client.Write(mysqlErrPacket(0, 2013, "HY000", "handoff: lost the server session during a command: "+err.Error()))
	return fmt.Errorf("server session lost: %w", err)
}

// results reads a COM_QUERY or COM_STMT_EXECUTE response: OK, ERR, a LOCAL
// INFILE request, or result sets, as many as SERVER_MORE_RESULTS_EXISTS
// says. ok reports that it ended without an error.
func (s *mySession) results() (ok bool, err error) {
	for {
		p, err := s.packet()
		if err != nil {
			return false, err
		}
		switch p.first() {
		case 0x00:
			st, ok := okStatus(p.payload)
			if ok {
				s.status = st
			}
			if !ok || st&statusMoreResults == 0 {
				return ok, nil
			}
			continue
		case 0xff:
			return false, nil // an error keeps the transaction state as it was
		case 0xfb:
			if err := s.localInfile(); err != nil {
				return false, err
			}
			continue
		}
		cols, _, ok := lenenc(p.payload)
		if !ok {
			return false, fmt.Errorf("result set: bad column count")
		}
		for range cols {
			if _, err := s.packet(); err != nil {
				return false, err
			}
		}
		p, err = s.packet()
		if err != nil {
			return false, err
		}
		if st, ok := eofStatus(p.payload); ok && st&statusCursorExists != 0 {
			s.status = st
			return true, nil // rows come by COM_STMT_FETCH
		}
		if err := s.rows(); err != nil {
			return false, err
		}
		if s.status&statusMoreResults == 0 {
			return true, nil
		}
	}
}

// rows forwards rows up to the EOF (or ERR) that ends them.
func (s *mySession) rows() error {
	for {
		p, err := s.packet()
		if err != nil {
			return err
		}
		if p.first() == 0xff {
			return nil
		}
		if isEOF(p) {
			if st, ok := eofStatus(p.payload); ok {
				s.status = st
			}
			return nil
		}
	}
}

// columns forwards column definitions up to their EOF (COM_FIELD_LIST).
func (s *mySession) columns() error {
	for {
		p, err := s.packet()
		if err != nil {
			return err
		}
		if p.first() == 0xff || isEOF(p) {
			return nil
		}
	}
}

// localInfile relays LOAD DATA LOCAL INFILE's file from the client, up to
// its empty packet.
func (s *mySession) localInfile() error {
	if err := s.cw.Flush(); err != nil {
		return err
	}
	for {
		p, err := s.cr.next(0)
		if err != nil {
			return err
		}
		if err := s.cr.forward(s.srv.w, p); err != nil {
			return err
		}
		if p.size == 0 {
			return s.srv.w.Flush()
		}
	}
}

// single reads a one-packet response (OK, ERR, EOF or a string).
func (s *mySession) single(cmd byte, query []byte) error {
	p, err := s.packet()
	if err != nil {
		return err
	}
	var st uint16
	var ok bool
	switch p.first() {
	case 0x00:
		st, ok = okStatus(p.payload)
	case 0xfe:
		st, ok = eofStatus(p.payload)
	}
	if ok {
		s.status = st
	}
	if p.first() == 0x00 {
		switch cmd {
		case myCmdInitDB:
			s.db = string(query)
		case myCmdResetConnection:
			clear(s.stmts)
		}
	}
	return nil
}

// prepareResponse forwards a COM_STMT_PREPARE response, giving the
// statement the endpoint's own id.
func (s *mySession) prepareResponse(query []byte) error {
	p, err := s.srv.r.next(0)
	if err != nil {
		return s.serverLost(err)
	}
	if p.first() != 0x00 || len(p.payload) < 9 {
		return s.toClient(s.srv.r, p, false)
	}
	serverID := binary.LittleEndian.Uint32(p.payload[1:])
	cols, params := binary.LittleEndian.Uint16(p.payload[5:]), binary.LittleEndian.Uint16(p.payload[7:])
	id := s.nextStmtID
	s.nextStmtID++
	if query != nil {
		s.stmts[id] = &myStmt{query: query, server: serverID, params: params}
	}
	binary.LittleEndian.PutUint32(p.payload[1:], id)
	if err := s.toClient(s.srv.r, p, false); err != nil {
		return err
	}
	for _, n := range []uint16{params, cols} {
		if n == 0 {
			continue
		}
		for range int(n) + 1 { // the definitions and their EOF
			if _, err := s.packet(); err != nil {
				return err
			}
		}
	}
	return nil
}

// noteUse follows "USE db" sent as a query.
func noteUse(query []byte) (string, bool) {
	f := strings.Fields(strings.TrimRight(string(query), "; \t\r\n"))
	if len(f) != 2 || !strings.EqualFold(f[0], "use") {
		return "", false
	}
	db := f[1]
	if len(db) >= 2 && db[0] == '`' && db[len(db)-1] == '`' {
		db = strings.ReplaceAll(db[1:len(db)-1], "``", "`")
	}
	return db, true
}

// alive reports whether the server session is still there (not closed
// by the server between transactions: wait_timeout, a restart).
func (srv *myServer) alive() bool {
	if srv == nil {
		return false
	}
	if srv.r.r.Buffered() > 0 {
		return false // the server said something unasked: it is closing
	}
	sc, ok := srv.raw.(syscall.Conn) // under TLS too: bytes waiting are an alert, the session ends
	if !ok {
		return true
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	alive := false
	// One non-blocking peek: nothing to read (EAGAIN) is a live idle
	// session; EOF or bytes nobody asked for is one that ends.
	err = raw.Read(func(fd uintptr) bool {
		var b [1]byte
		_, _, rerr := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		alive = rerr == syscall.EAGAIN || rerr == syscall.EWOULDBLOCK
		return true
	})
	return err == nil && alive
}

func (srv *myServer) quit() {
	srv.conn.SetWriteDeadline(time.Now().Add(time.Second))
	srv.w.Write(myPacketBytes(0, []byte{myCmdQuit}))
	srv.w.Flush()
	srv.conn.Close()
}

// move opens a new server session on addr for this client at a
// transaction boundary, logged in with the endpoint's credentials as the
// client's user, in its current database and character set, with its
// prepared statements prepared again under the ids the client knows.
func (s *mySession) move(addr string) error {
	if s.srv != nil {
		s.srv.quit()
		s.srv = nil
	}
	srv, err := s.open(addr)
	if err != nil {
		s.e.moveFailed()
		s.e.log.Warn("session could not move; its client is disconnected", "server", addr, "error", err)
		s.client.Write(mysqlErrPacket(1, 2013, "HY000", fmt.Sprintf("handoff: could not open a session on %s for this connection: %v", addr, err)))
		return err
	}
	s.srv = srv
	s.e.moveTo(s.g, addr, srv.thread)
	return nil
}

func (s *mySession) open(addr string) (*myServer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.e.opts.ConnectTimeout)
	defer cancel()
	conn, err := s.e.dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	deadline, _ := ctx.Deadline()
	conn.SetDeadline(deadline)
	srv := newMyServer(conn, addr)
	if err := s.loginAs(ctx, srv); err != nil {
		conn.Close()
		return nil, err
	}
	if err := s.restore(srv); err != nil {
		conn.Close()
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return srv, nil
}

// loginAs logs in to a new server session as the client's user, inside
// TLS when the endpoint's config says so.
func (s *mySession) loginAs(ctx context.Context, srv *myServer) error {
	p, err := srv.r.next(0)
	if err != nil || p.partial {
		return fmt.Errorf("server handshake: %v", err)
	}
	if p.first() == 0xff {
		return fmt.Errorf("server refuses: %s", errText(p.payload))
	}
	h, err := parseHandshake(bytes.Clone(p.payload))
	if err != nil {
		return err
	}
	srv.thread = h.thread
	password, err := s.e.opts.Password(s.login.user)
	if err != nil {
		return fmt.Errorf("password of %s: %w", s.login.user, err)
	}
	auth, err := scramblePassword(h.plugin, password, h.scramble)
	if err != nil {
		return err
	}
	caps := s.login.caps&h.caps&^capUnsupportedByUs | capProtocol41 | capSecureConnection | capPluginAuth
	caps &^= capConnectWithDB | capPluginAuthLenenc
	if s.db != "" {
		caps |= capConnectWithDB
	}
	resp := binary.LittleEndian.AppendUint32(nil, caps)
	resp = binary.LittleEndian.AppendUint32(resp, s.login.maxPacket)
	resp = append(resp, s.login.charset)
	resp = append(resp, make([]byte, 23)...)
	resp = append(append(resp, s.login.user...), 0)
	resp = append(append(resp, byte(len(auth))), auth...)
	if s.db != "" {
		resp = append(append(resp, s.db...), 0)
	}
	resp = append(append(resp, h.plugin...), 0)
	if caps&capConnectAttrs != 0 {
		if s.login.attrs != nil {
			resp = append(resp, s.login.attrs...)
		} else {
			resp = appendLenenc(resp, 0)
		}
	}
	seq := p.seq() + 1
	if s.e.opts.TLS != nil {
		if err := srv.startTLS(ctx, s.e, h.caps&capSSL != 0, seq, caps, s.login.maxPacket, s.login.charset); err != nil {
			return err
		}
		binary.LittleEndian.PutUint32(resp, caps|capSSL)
		seq++
	}
	if _, err := srv.conn.Write(myPacketBytes(seq, resp)); err != nil {
		return err
	}
	plugin := h.plugin
	for range 4 {
		p, err := srv.r.next(0)
		if err != nil || p.partial {
			return fmt.Errorf("login: %v", err)
		}
		switch {
		case p.first() == 0x00:
			return nil
		case p.first() == 0xff:
			return fmt.Errorf("login as %s: %s", s.login.user, errText(p.payload))
		case p.first() == 0xfe: // auth switch: another plugin, another scramble
			name, rest, _ := cstring(p.payload[1:])
			plugin = name
			auth, err := scramblePassword(plugin, password, bytes.TrimRight(rest, "\x00"))
			if err != nil {
				return err
			}
			if _, err := srv.conn.Write(myPacketBytes(p.seq()+1, auth)); err != nil {
				return err
			}
		case p.first() == 0x01 && len(p.payload) == 2 && p.payload[1] == 0x03:
			continue // fast auth done, an OK follows
		case p.first() == 0x01 && len(p.payload) == 2 && p.payload[1] == 0x04:
			return fmt.Errorf("login as %s: caching_sha2_password wants its full authentication (TLS or RSA), which the endpoint does not do; log in once directly to fill the server's cache, or use mysql_native_password", s.login.user)
		default:
			return fmt.Errorf("login as %s: unexpected packet 0x%02x", s.login.user, p.first())
		}
	}
	return fmt.Errorf("login as %s: too many authentication rounds", s.login.user)
}

// restore gives a new server session what the endpoint saw of the old
// one: autocommit off, and the prepared statements.
func (s *mySession) restore(srv *myServer) error {
	if s.status&statusAutocommit == 0 {
		if err := srv.roundTrip(append([]byte{myCmdQuery}, "SET autocommit = 0"...)); err != nil {
			return fmt.Errorf("set autocommit: %w", err)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(s.stmts)) {
		st := s.stmts[id]
		if _, err := srv.conn.Write(myPacketBytes(0, append([]byte{myCmdStmtPrepare}, st.query...))); err != nil {
			return err
		}
		p, err := srv.r.next(0)
		if err != nil || p.partial {
			return fmt.Errorf("prepare again: %v", err)
		}
		if p.first() != 0x00 || len(p.payload) < 9 {
			s.e.log.Info("a prepared statement could not be prepared again; it is forgotten", "error", errText(p.payload))
			delete(s.stmts, id)
			continue
		}
		st.server, st.rebound = binary.LittleEndian.Uint32(p.payload[1:]), true
		cols, params := binary.LittleEndian.Uint16(p.payload[5:]), binary.LittleEndian.Uint16(p.payload[7:])
		for _, n := range []uint16{params, cols} {
			if n == 0 {
				continue
			}
			for range int(n) + 1 {
				q, err := srv.r.next(0)
				if err != nil {
					return err
				}
				if err := srv.r.skip(q); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// killStatement is KILL [HARD|SOFT] [CONNECTION|QUERY] id, alone (KILL
// QUERY ID, which names a query, is not one).
var killStatement = regexp.MustCompile(`(?i)^\s*KILL\s+((?:(?:HARD|SOFT)\s+)?(?:(?:CONNECTION|QUERY)\s+)?)(\d+)\s*;?\s*$`)

// killQuery translates a KILL of a connection id the endpoint gave a
// client (clientID) into the server's id of that session — the client
// learned it from its handshake (mysql_thread_id: the mysql client's
// Ctrl-C, Connector/J's query timeout), and the server's changes when the
// session moves. A session that is gone, or on another server than this
// one's (mid-switchover), becomes id 0, which no server session has: the
// server answers "Unknown thread id" and kills nothing, where the stale
// number could have named another client's session. An id below
// myThreadBase is the server's own (CONNECTION_ID()) and goes as it is.
func (s *mySession) killQuery(q []byte) ([]byte, bool) {
	m := killStatement.FindSubmatch(q)
	if m == nil {
		return nil, false
	}
	id, err := strconv.ParseUint(string(m[2]), 10, 32)
	if err != nil || id < myThreadBase {
		return nil, false
	}
	var thread uint32
	s.e.mu.Lock()
	if g := s.e.threads[uint32(id)]; g != nil && s.srv != nil && g.addr == s.srv.addr {
		thread = g.thread
	}
	s.e.mu.Unlock()
	return fmt.Appendf(nil, "KILL %s%d", m[1], thread), true
}

// bindTypes keeps the parameter types a COM_STMT_EXECUTE binds (its
// new-params-bound flag 1), and gives them to the first execute of a
// statement prepared again on a new server session (restore) when that
// execute has none: libmysqlclient, mysqlnd and Connector/C send the types
// only on the first execute after binding, to the server the client was
// on, and a statement fresh on another server refuses an execute without
// them (1210, "Incorrect arguments to mysqld_stmt_execute").
func bindTypes(p *myPacket, st *myStmt) {
	if st.params == 0 || p.partial {
		return
	}
	// Command, statement id, flags, iteration count, then the null bitmap.
	flag := 10 + (int(st.params)+7)/8
	n := 2 * int(st.params)
	if len(p.payload) <= flag {
		return
	}
	switch p.payload[flag] {
	case 1:
		if len(p.payload) >= flag+1+n {
			st.types = append(st.types[:0], p.payload[flag+1:flag+1+n]...)
			st.rebound = false
		}
	case 0:
		if !st.rebound || len(st.types) != n || len(p.payload)+n >= myMaxPayload {
			return
		}
		payload := make([]byte, 0, len(p.payload)+n)
		payload = append(append(append(payload, p.payload[:flag]...), 1), st.types...)
		p.setPayload(append(payload, p.payload[flag+1:]...))
		st.rebound = false
	}
}

// roundTrip sends a command that is answered by OK or ERR.
func (srv *myServer) roundTrip(payload []byte) error {
	if _, err := srv.conn.Write(myPacketBytes(0, payload)); err != nil {
		return err
	}
	p, err := srv.r.next(0)
	if err != nil {
		return err
	}
	if p.first() != 0x00 {
		return errors.New(errText(p.payload))
	}
	return nil
}

func errText(payload []byte) string {
	if len(payload) > 9 && payload[0] == 0xff && payload[3] == '#' {
		return string(payload[9:])
	}
	if len(payload) > 3 && payload[0] == 0xff {
		return string(payload[3:])
	}
	return fmt.Sprintf("packet 0x%02x", append(payload, 0)[0])
}
