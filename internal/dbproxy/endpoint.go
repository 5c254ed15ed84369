package dbproxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"
)

// Kind is the wire protocol an endpoint speaks.
type Kind string

// The kinds of database endpoint.
const (
	Postgres Kind = "postgres"
	MySQL    Kind = "mysql"
)

// Defaults of the Options left zero.
const (
	DefaultMaxConnections = 1000
	DefaultConnectTimeout = 5 * time.Second
	DefaultStartupTimeout = 30 * time.Second
	DefaultHoldMax        = 30 * time.Second
	DefaultIdleTimeout    = time.Hour
)

// Options configure an Endpoint.
type Options struct {
	// Name is the endpoint's name in logs, status and metrics.
	Name string
	Kind Kind
	// Primary is the server (host:port) sessions go to until Repoint.
	Primary string
	// Password returns the password the endpoint logs in with as user when
	// it opens a session on its own (a session moved to a new server). The
	// client's own login, at connect, is relayed to the server untouched.
	// Nil: no password (trust).
	Password func(user string) (string, error)
	// TLS, when set, is used for every connection to the server (the
	// server must accept it; its ServerName defaults to the host dialled);
	// nil is plaintext. Clients always talk
	// plaintext to the endpoint (it listens on loopback).
	TLS *tls.Config
	// MaxConnections caps client connections; one over it gets the
	// protocol's "too many connections" error. Default 1000.
	MaxConnections int
	// ConnectTimeout bounds dialling and logging in to a server.
	ConnectTimeout time.Duration
	// StartupTimeout bounds a client's connect: its startup message and
	// its login relayed to the server.
	StartupTimeout time.Duration
	// HoldMax is the longest the endpoint stays paused: past it, it
	// resumes by itself (a switchover that died must not hold the app's
	// database forever). Default 30s.
	HoldMax time.Duration
	// IdleTimeout closes a client connection idle between transactions
	// for this long (pools reconnect); in a transaction it is the
	// server's idle_in_transaction_session_timeout that decides.
	IdleTimeout time.Duration
	Logger      *slog.Logger
}

// Endpoint is one database endpoint: a listener's client connections and
// the server they go to.
type Endpoint struct {
	opts Options
	log  *slog.Logger

	mu   sync.Mutex
	addr string // the current server
	gen  uint64 // bumped by each Repoint; a session on an older one moves
	// holders hold the pause (0: Pause and Resume of the endpoint itself);
	// the endpoint is paused while any does.
	holders  map[uint64]bool
	holderID uint64        // the last Holder's
	since    time.Time     // when the pause began
	resumed  chan struct{} // closed by Resume
	drained  chan struct{} // closed when no transaction is open while paused
	autoRes  *time.Timer   // HoldMax
	open     int           // sessions in a transaction or with a request in flight
	held     int
	starting int
	conns    int
	moved    uint64 // sessions moved to another server
	failed   uint64 // sessions closed because a move failed
	keys     map[uint64]*pgSession
	threads  map[uint32]*gate // MySQL: sessions by the connection id their client was given
	lastID   uint32           // the last such id
	lns      []net.Listener
	active   map[net.Conn]*gate
	closed   bool
	draining bool // Shutdown: sessions are closed as they get between transactions
	wg       sync.WaitGroup
}

// New returns an endpoint for opts; it listens once Serve is called.
func New(opts Options) (*Endpoint, error) {
	if opts.Kind != Postgres && opts.Kind != MySQL {
		return nil, fmt.Errorf("database endpoint %s: unknown kind %q (want postgres or mysql)", opts.Name, opts.Kind)
	}
	if err := checkAddr(opts.Primary); err != nil {
		return nil, fmt.Errorf("database endpoint %s: primary: %w", opts.Name, err)
	}
	if opts.MaxConnections <= 0 {
		opts.MaxConnections = DefaultMaxConnections
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = DefaultConnectTimeout
	}
	if opts.StartupTimeout <= 0 {
		opts.StartupTimeout = DefaultStartupTimeout
	}
	if opts.HoldMax <= 0 {
		opts.HoldMax = DefaultHoldMax
	}
	if opts.IdleTimeout <= 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.Password == nil {
		opts.Password = func(string) (string, error) { return "", nil }
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Endpoint{opts: opts, log: log.With("database", opts.Name), addr: opts.Primary,
		keys: map[uint64]*pgSession{}, threads: map[uint32]*gate{}, active: map[net.Conn]*gate{}, holders: map[uint64]bool{}}, nil
}

func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("want host:port, got %q", addr)
	}
	return nil
}

// Name is the endpoint's name.
func (e *Endpoint) Name() string { return e.opts.Name }

// Serve accepts client connections on l until l is closed or the endpoint
// is closed.
func (e *Endpoint) Serve(l net.Listener) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return net.ErrClosed
	}
	e.lns = append(e.lns, l)
	e.mu.Unlock()
	var delay time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if isTemporary(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		g := e.track(c)
		if g == nil {
			e.refuse(c)
			continue
		}
		e.wg.Add(1)
		go func() {
			defer e.wg.Done()
			defer e.untrack(c)
			switch e.opts.Kind {
			case Postgres:
				e.servePG(c, g)
			case MySQL:
				e.serveMySQL(c, g)
			}
		}()
	}
}

// isTemporary keeps accepting after EMFILE and the like: a full
// descriptor table is temporary, a closed listener is not.
func isTemporary(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	type temporary interface{ Temporary() bool }
	var t temporary
	return errors.As(err, &t) && t.Temporary()
}

// track counts a new client connection and gives it its gate; nil: over
// MaxConnections, or closed.
func (e *Endpoint) track(c net.Conn) *gate {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed || e.draining || e.conns >= e.opts.MaxConnections {
		return nil
	}
	e.conns++
	g := &gate{conn: c, state: stateStarting}
	e.starting++
	e.active[c] = g
	return g
}

func (e *Endpoint) untrack(c net.Conn) {
	c.Close()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.conns--
	delete(e.active, c)
}

// refuse answers a client over MaxConnections with the protocol's own
// "too many connections" error, so that its driver says why.
func (e *Endpoint) refuse(c net.Conn) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		switch e.opts.Kind {
		case Postgres:
			refusePG(c)
		case MySQL:
			c.Write(mysqlErrPacket(0, 1040, "08004", "handoff: too many connections to this database endpoint (max_connections)"))
		}
	}()
}

// QuietBeforeClose is how long a connection must have been idle between
// transactions before Shutdown closes it. pgx's pool and its database/sql
// driver ping a connection idle for more than a second before they use it
// (go-sql-driver/mysql checks every one), so a connection closed after
// this long is replaced by the client's pool without an error; one closed
// sooner could be in use again before the client noticed.
const QuietBeforeClose = 2 * time.Second

// Shutdown stops accepting and closes each client connection once it has
// been idle between transactions for QuietBeforeClose (the client's pool
// opens another — to the successor, after an upgrade). When ctx ends,
// what is left is closed at its next transaction boundary, however short
// its idleness (a transaction is never cut if it ends within
// BoundaryGrace); then the rest is cut. The error counts what was not
// closed quietly.
func (e *Endpoint) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	e.draining = true
	for _, l := range e.lns {
		l.Close()
	}
	e.mu.Unlock()
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	quiet, late := QuietBeforeClose, 0
	var grace <-chan time.Time
	done := ctx.Done()
	for {
		e.mu.Lock()
		n := e.conns
		for c, g := range e.active {
			if g.state == stateIdle && time.Since(g.idleSince) >= quiet {
				c.Close()
			}
		}
		e.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-done:
			quiet, late, done = 0, n, nil
			grace = time.After(BoundaryGrace)
		case <-grace:
			e.Close()
			return fmt.Errorf("shut down database endpoint %s: %d connections closed without a quiet pause, %d of them inside a transaction: %w", e.opts.Name, late, n, context.Cause(ctx))
		case <-t.C:
		}
	}
	if late > 0 {
		e.Close()
		return fmt.Errorf("shut down database endpoint %s: %d connections closed at a transaction boundary without a quiet pause: %w", e.opts.Name, late, context.Cause(ctx))
	}
	return e.Close()
}

// BoundaryGrace is how long Shutdown waits, once its ctx has ended, for
// the transactions still open to end before it cuts them.
const BoundaryGrace = 5 * time.Second

// Close stops accepting and closes every client connection.
func (e *Endpoint) Close() error {
	e.mu.Lock()
	e.closed = true
	for _, l := range e.lns {
		l.Close()
	}
	for c := range e.active {
		c.Close()
	}
	if e.pausedLocked() {
		e.resumeLocked()
	}
	e.mu.Unlock()
	e.wg.Wait()
	return nil
}

// Pause holds every connection's next transaction (a client message that
// would start one is not forwarded) and returns once no transaction is
// open on the current server, or ctx ends (then it returns ctx's error
// and stays paused: the caller decides to Resume). Past HoldMax the
// endpoint resumes by itself.
func (e *Endpoint) Pause(ctx context.Context) error { return e.pause(ctx, 0) }

// Holder is one party's share of the endpoint's pause: its Pause and
// Resume are those of the endpoint, counted apart from any other's. Two
// parties may hold one endpoint at once — on a fleet node, the hold for a
// switchover another node runs, which a missed release leaves in place
// until its bound, and a switchover begun after it — and one's Resume
// must not lift the other's pause. The endpoint resumes once every holder
// that paused it has resumed, or at HoldMax, which ends every holder's
// pause: a holder's Resume after that ends nothing (a later pause is
// somebody else's).
type Holder struct {
	*Endpoint
	id uint64
}

// Holder returns a new holder of the endpoint's pause.
func (e *Endpoint) Holder() *Holder {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.holderID++
	return &Holder{Endpoint: e, id: e.holderID}
}

// Pause is Endpoint.Pause, as this holder's.
func (h *Holder) Pause(ctx context.Context) error { return h.pause(ctx, h.id) }

// Resume ends this holder's share of the pause; the endpoint resumes when
// no other holder has one.
func (h *Holder) Resume() { h.resume(h.id) }

func (e *Endpoint) pause(ctx context.Context, holder uint64) error {
	e.mu.Lock()
	if !e.pausedLocked() {
		e.since = time.Now()
		e.resumed = make(chan struct{})
		resumed := e.resumed
		e.autoRes = time.AfterFunc(e.opts.HoldMax, func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			if e.pausedLocked() && e.resumed == resumed {
				e.log.Warn("database endpoint paused longer than hold_max: resumed by itself", "hold_max", e.opts.HoldMax)
				e.resumeLocked()
			}
		})
		e.log.Info("database endpoint paused", "open", e.open)
	}
	e.holders[holder] = true
	if e.open == 0 {
		e.mu.Unlock()
		return nil
	}
	if e.drained == nil {
		e.drained = make(chan struct{})
	}
	drained := e.drained
	e.mu.Unlock()
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("pause database endpoint %s: %w", e.opts.Name, context.Cause(ctx))
	}
}

// Repoint makes the endpoint use the server at addr (host:port) from now
// on; sessions move to it between transactions.
func (e *Endpoint) Repoint(addr string) error {
	if err := checkAddr(addr); err != nil {
		return fmt.Errorf("repoint database endpoint %s: %w", e.opts.Name, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if addr != e.addr {
		e.log.Info("database endpoint repointed", "from", e.addr, "to", addr)
	}
	e.addr = addr
	e.gen++
	return nil
}

// Resume releases what Pause held (unless a Holder holds it too).
func (e *Endpoint) Resume() { e.resume(0) }

func (e *Endpoint) resume(holder uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.holders[holder] {
		return // never paused, or its pause ended at HoldMax
	}
	delete(e.holders, holder)
	if len(e.holders) > 0 {
		e.log.Info("database endpoint stays paused for another holder", "holders", len(e.holders))
		return
	}
	e.log.Info("database endpoint resumed", "held", e.held, "paused_for", time.Since(e.since))
	e.resumeLocked()
}

// pausedLocked reports whether any holder holds the pause.
func (e *Endpoint) pausedLocked() bool { return len(e.holders) > 0 }

func (e *Endpoint) resumeLocked() {
	clear(e.holders)
	close(e.resumed)
	if e.autoRes != nil {
		e.autoRes.Stop()
	}
	if e.drained != nil {
		close(e.drained) // nobody waits for a drain any more
		e.drained = nil
	}
}

// Stats are an endpoint's numbers at one moment.
type Stats struct {
	Name    string `json:"name"`
	Kind    Kind   `json:"kind"`
	Primary string `json:"primary"`
	Paused  bool   `json:"paused"`
	// Connections are client connections: Idle between transactions,
	// InTransaction (or with a request in flight), Held by a pause,
	// Starting (logging in).
	Connections   int    `json:"connections"`
	Idle          int    `json:"idle"`
	InTransaction int    `json:"in_transaction"`
	Held          int    `json:"held"`
	Starting      int    `json:"starting"`
	Moved         uint64 `json:"moved"`
	MoveFailures  uint64 `json:"move_failures"`
}

// Stats reports the endpoint's connections.
func (e *Endpoint) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := Stats{Name: e.opts.Name, Kind: e.opts.Kind, Primary: e.addr, Paused: e.pausedLocked(),
		Connections: e.conns, InTransaction: e.open, Held: e.held, Moved: e.moved, MoveFailures: e.failed}
	st.Starting = e.starting
	st.Idle = max(e.conns-e.open-e.held-e.starting, 0)
	return st
}

// gate is one session's view of the endpoint's state machine. Its fields
// are guarded by the endpoint's mu.
type gate struct {
	conn      net.Conn // the client's
	idleSince time.Time
	state     sessionState
	gen       uint64        // the endpoint generation the session's server belongs to
	addr      string        // the session's server
	cancel    chan struct{} // while held: closed by a cancel request (cancelHeld)
	// MySQL: id is the connection id the client was given (myThreadBase
	// and up), thread the server's id of the session it is on now.
	id, thread uint32
}

type sessionState int

const (
	stateStarting sessionState = iota // logging in
	stateIdle                         // between transactions
	stateOpen                         // in a transaction, or a request in flight
	stateHeld                         // a request waits for Resume
	stateGone
)

func (s sessionState) String() string {
	return [...]string{"starting", "idle", "open", "held", "gone"}[s]
}

// admit is called before the first client message of a new transaction
// (or of an autocommit statement, its own transaction) is forwarded. It
// blocks while the endpoint is paused (or until gone is closed or the
// client hangs up), then marks the session open and reports whether its
// server is out of date.
//
// A client that hung up while its message was held gave up on it (its
// driver's query timeout closes the connection): the message must not
// run once the pause lifts, or an app that retries on the timeout writes
// twice. So a held session watches its client, and looks once more as the
// pause lifts.
func (e *Endpoint) admit(g *gate, gone <-chan struct{}) (addr string, stale bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	held := false
	for e.pausedLocked() {
		held = true
		g.state = stateHeld
		g.cancel = make(chan struct{})
		e.held++
		resumed, cancel := e.resumed, g.cancel
		e.mu.Unlock()
		left := awaitResume(g.conn, resumed, gone, cancel)
		e.mu.Lock()
		e.held--
		g.cancel = nil
		select {
		case <-cancel:
			g.state = stateIdle
			return "", false, errCancelled
		default:
		}
		if left {
			g.state = stateIdle
			return "", false, net.ErrClosed
		}
	}
	if held && hungUp(g.conn) {
		g.state = stateIdle
		return "", false, net.ErrClosed
	}
	g.state = stateOpen
	e.open++
	return e.addr, g.gen != e.gen || g.addr != e.addr, nil
}

// heldPoll is how often a held session looks whether its client hung up.
const heldPoll = 50 * time.Millisecond

// awaitResume waits for resumed, and reports true instead when gone or
// cancel is closed or the client c hangs up first.
func awaitResume(c net.Conn, resumed, gone, cancel <-chan struct{}) bool {
	tick := time.NewTicker(heldPoll)
	defer tick.Stop()
	for {
		select {
		case <-resumed:
			return false
		case <-gone:
			return true
		case <-cancel:
			return true
		case <-tick.C:
			if hungUp(c) {
				return true
			}
		}
	}
}

// errCancelled is admit's answer for a session whose held message a
// cancel request withdrew: it never ran.
var errCancelled = errors.New("canceled by the client while held by a pause")

// cancelHeld withdraws the message a session holds at the gate, for the
// client's cancel request, and reports whether there was one: a held
// message has reached no server, so cancelling it there would do nothing,
// and it would run once the pause lifts.
func (e *Endpoint) cancelHeld(g *gate) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if g.state != stateHeld || g.cancel == nil {
		return false
	}
	close(g.cancel)
	g.cancel = nil
	return true
}

// myThreadBase is where the connection ids the endpoint gives MySQL
// clients begin: above the numbers servers give, so that a KILL of a
// server's own id (CONNECTION_ID()) is told from one of ours, and below
// 2^31, for clients that read the id as a signed 32-bit number (Node's
// mysql2). A server id this high (after a billion connections) is taken
// for one of ours and kills nothing: the safe way to be wrong.
const myThreadBase = 1 << 30

// clientID gives a MySQL session the connection id its client knows it
// by, and registers it for KILL (mySession.killQuery).
func (e *Endpoint) clientID(g *gate) uint32 {
	e.mu.Lock()
	defer e.mu.Unlock()
	if g.id != 0 {
		return g.id
	}
	for {
		e.lastID++
		if e.lastID < myThreadBase || e.lastID >= 1<<31 {
			e.lastID = myThreadBase
		}
		if e.threads[e.lastID] == nil {
			break
		}
	}
	g.id = e.lastID
	e.threads[g.id] = g
	return g.id
}

// moveTo records that the session now runs on the current server, as
// the server's connection id thread (MySQL; 0 for Postgres). Server and
// id change together: a KILL translated in between would name another
// session.
func (e *Endpoint) moveTo(g *gate, addr string, thread uint32) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if g.addr != "" {
		e.moved++
	}
	g.addr, g.thread = addr, thread
	g.gen = e.gen
	if addr != e.addr {
		g.gen-- // repointed again while it moved: move again next time
	}
}

// current returns the server new sessions go to, with its generation.
func (e *Endpoint) current() (string, uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.addr, e.gen
}

// settle marks an open session idle (between transactions): a pause may
// be waiting for the last one.
func (e *Endpoint) settle(g *gate) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.settleLocked(g)
}

func (e *Endpoint) settleLocked(g *gate) {
	if g.state == stateOpen {
		e.open--
		if e.open == 0 && e.drained != nil {
			close(e.drained)
			e.drained = nil
		}
	}
	if g.state == stateStarting {
		e.starting--
	}
	g.state = stateIdle
	g.idleSince = time.Now()
}

// started marks a session that has logged in.
func (e *Endpoint) started(g *gate) { e.settle(g) }

// leave is called once when a session ends, whatever its state.
func (e *Endpoint) leave(g *gate) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.settleLocked(g)
	g.state = stateGone
	if g.id != 0 {
		delete(e.threads, g.id)
	}
}

// moveFailed counts a session closed because it could not move.
func (e *Endpoint) moveFailed() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.failed++
}

// startTLS shakes hands over conn, dialled to addr, as the endpoint's TLS
// config says, checking the certificate against addr's host unless the
// config names another.
func (e *Endpoint) startTLS(ctx context.Context, conn net.Conn, addr string) (*tls.Conn, error) {
	tc := tls.Client(conn, TLSFor(e.opts.TLS, addr))
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("connect to %s: TLS: %w", addr, err)
	}
	return tc, nil
}

func (e *Endpoint) dial(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{Timeout: e.opts.ConnectTimeout, KeepAlive: 30 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	if testWrapServerConn != nil {
		c = testWrapServerConn(c)
	}
	return c, nil
}

// testWrapServerConn, set by tests, wraps every server connection the
// endpoint dials (to make a write slow, as a busy host does).
var testWrapServerConn func(net.Conn) net.Conn
