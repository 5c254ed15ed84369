// Package server is `handoff serve`: it opens the state store, adopts the
// supervised instances, builds the gateway and the deployer from the
// config, restores what the store says, and serves the gateway listeners,
// the control socket and the admin listener until it is stopped — or until
// it has handed them over to a new handoff process (`handoff upgrade`).
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/conncap"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/fleet"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/h1"
	"github.com/handoff-dev/handoff/internal/store"
	"github.com/handoff-dev/handoff/internal/supervisor"
	"github.com/handoff-dev/handoff/internal/tcpproxy"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Server is one running handoff.
type Server struct {
	cfg      *config.Config
	opts     Options
	log      *slog.Logger
	store    store.Store
	gw       *gateway.Gateway
	tcp      *tcpproxy.Proxy // the tcp apps' data path (tcp.go)
	conns    *conncap.Cap    // one cap on client connections, for every listener
	dbs      []*dbEndpoint   // the database endpoints (databases.go)
	sup      atomic.Pointer[supervisor.Supervisor]
	deployer *deploy.Deployer
	registry *prometheus.Registry
	ctx      context.Context // the server's lifetime
	cancel   context.CancelFunc

	mu          sync.Mutex // guards mode changes: store then gateway, in order
	modesCancel context.CancelFunc
	ready       chan struct{}
	addrs       Addrs
	ls          *listeners // opened by New, before any instance is adopted
	token       string     // the admin token, read by New
	servers     []httpServer

	migCache migrationsCache

	fleet *fleetNode // this node's part in a fleet, when the state is shared (fleet.go)

	upgrading  atomic.Bool   // an upgrade began: no more changes here
	handedOver chan struct{} // closed once a successor serves
	successor  atomic.Int64  // its PID
}

// httpServer is what serves one listener: net/http's server, or the
// gateway's own HTTP/1.1 server.
type httpServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// Addrs are the addresses the server listens on, known once it is ready.
type Addrs struct {
	Gateway []string
	Socket  string
	Admin   string
}

// Options configure a Server beyond its config file.
type Options struct {
	Logger *slog.Logger
	// KeepInstances leaves the supervised instances running when the server
	// stops, for the next server to adopt; by default they are stopped too.
	KeepInstances bool
	// Args are the command-line arguments a successor is started with
	// (`handoff upgrade`); default: serve --config <the config's path>.
	Args []string
}

// New opens the store, adopts the supervised instances that run, and
// restores routes and modes into a new gateway. Nothing listens until Run.
func New(ctx context.Context, cfg *config.Config, opts Options) (*Server, error) {
	takeProcEnv() // before any child is started (procenv.go)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Everything that can fail is tried before any instance is adopted: a
	// serve (or the new process of an upgrade) that cannot listen, read its
	// token or open its store leaves every instance as it was.
	st, err := store.Open(ctx, cfg.State)
	if err != nil {
		return nil, err
	}
	if cfg.IsShared() {
		st = fleet.Scoped(st, cfg.NodeName()) // each host its own routes and deploys (fleet/scoped.go)
	}
	ls, err := listen(cfg)
	if err != nil {
		st.Close()
		return nil, err
	}
	var token string
	if cfg.Admin.Listen != "" {
		if token, err = loadToken(cfg.Admin.TokenFile); err != nil {
			ls.closeAll()
			st.Close()
			return nil, err
		}
	}
	dbs, err := openDatabases(cfg, log)
	if err != nil {
		ls.closeAll()
		st.Close()
		return nil, err
	}
	sup, err := openSupervisor(ctx, cfg, st, log)
	if err != nil {
		ls.closeAll()
		st.Close()
		return nil, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	gw := gateway.New(gateway.Options{
		Logger: log, AccessLog: cfg.AccessLog, RetryBuffer: int(cfg.Gateway.RetryBuffer), ResponseTimeout: cfg.Gateway.ResponseTimeout.D(),
		HoldRequests: cfg.Hold.MaxRequests, HoldBytes: int64(cfg.Hold.MaxBytes), Registerer: reg,
	})
	conns := conncap.New(maxConnections(cfg.Gateway.MaxConnections))
	tcp := newTCPProxy(cfg, tcpproxy.Options{Logger: log, Registerer: reg, Conns: conns})
	sctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, opts: opts, log: log, store: st, gw: gw, tcp: tcp, conns: conns, registry: reg, ctx: sctx, cancel: cancel,
		ready: make(chan struct{}), handedOver: make(chan struct{}), ls: ls, token: token}
	s.sup.Store(sup)
	s.dbs = dbs
	s.deployer = deploy.New(sctx, deploy.Options{Store: st, Gateway: gw, TCP: tcp, Supervisor: sup, Apps: cfg.Apps, Database: cfg.Database, Logger: log, Predecessor: predecessor(), Registerer: reg,
		LiveSignal: liveSignals(sctx, gw, cfg.Database, cfg.Apps)})
	reg.MustRegister(&instanceCollector{sup: s.supervisor})
	err = s.restore(ctx)
	if err == nil {
		if afterRestore != nil {
			afterRestore(s)
		}
		err = s.openFleet(ctx) // once the routes are known: the first heartbeat reports them
	}
	if err != nil {
		cancel()
		gw.Close()
		sup.Detach(context.Background())
		ls.closeAll()
		st.Close()
		return nil, err
	}
	return s, nil
}

func (s *Server) supervisor() *supervisor.Supervisor { return s.sup.Load() }

// openSupervisor adopts this node's instances: those whose environment
// carries the installation's node ID (see nodeID), so that handoff
// installations side by side, or several hosts sharing a Postgres store,
// leave each other's processes alone.
func openSupervisor(ctx context.Context, cfg *config.Config, st store.Store, log *slog.Logger) (*supervisor.Supervisor, error) {
	node, err := nodeID(ctx, cfg, st)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, supervisorLockWait)
	defer cancel()
	sup, err := supervisor.Open(ctx, st, supervisor.Options{LogDir: cfg.Logs, Node: node, Logger: log})
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("another handoff server supervises the instances of this state store (lock in %s): %w", cfg.Logs, err)
		}
		return nil, err
	}
	return sup, nil
}

// afterRestore, set by tests, runs between the restore and the fleet's
// join: what another node changes in that moment.
var afterRestore func(*Server)

// supervisorLockWait bounds the wait for another server to let go of the
// instances (during an upgrade the old one hands them over in moments).
const supervisorLockWait = 15 * time.Second

func (s *Server) restore(ctx context.Context) error {
	if err := s.gw.Configure(s.cfg.Apps.Kinds(config.KindHTTP, config.KindWorker)); err != nil {
		return err
	}
	if err := s.deployer.Restore(ctx); err != nil {
		return err
	}
	return s.restoreModes(ctx)
}

// Ready is closed once every listener is open.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs reports where the server listens; valid after Ready.
func (s *Server) Addrs() Addrs { return s.addrs }

// Gateway returns the server's gateway.
func (s *Server) Gateway() *gateway.Gateway { return s.gw }

// Run serves until ctx is done, then stops gracefully: in-flight requests
// finish (bounded by the longest drain_timeout) and the instances are
// stopped (unless KeepInstances). After handing over to a successor it
// instead finishes its own connections and returns, leaving the sockets,
// the instances and the deploys to the successor.
func (s *Server) Run(ctx context.Context) error {
	defer s.store.Close()
	defer s.gw.Close()
	defer s.closeFleet()
	defer s.cancel()
	ls := s.ls
	errc := make(chan error, len(ls.all()))
	serve := func(srv httpServer, l net.Listener) {
		s.servers = append(s.servers, srv)
		go func() {
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) && !s.upgrading.Load() {
				errc <- fmt.Errorf("serve %s: %w", l.Addr(), err)
			}
		}()
	}
	for _, l := range ls.gateway {
		serve(s.gatewayServer(), l)
		s.addrs.Gateway = append(s.addrs.Gateway, l.Addr().String())
	}
	serve(&http.Server{Handler: control.Handler(s, s.log), ReadHeaderTimeout: 10 * time.Second}, ls.socket)
	s.addrs.Socket = s.cfg.Socket
	if ls.admin != nil {
		serve(s.adminServer(), ls.admin)
		s.addrs.Admin = ls.admin.Addr().String()
	}
	s.serveTCP(errc)
	if err := s.startDatabases(s.ctx, errc); err != nil {
		s.ls.closeAll()
		s.stopInstances()
		return err
	}
	s.startModes()
	go s.monitorLiveness(s.ctx)
	s.gw.SetLineAhead(s.lineAhead) // held requests of the process this one took over from go first
	s.deployer.Resume(s.ctx)
	s.log.Info("handoff serving", "pid", os.Getpid(), "gateway", s.addrs.Gateway, "socket", s.addrs.Socket, "admin", s.addrs.Admin, "apps", s.cfg.Apps.Names())
	close(s.ready)
	tellReady()

	var err error
	handedOver := false
	select {
	case <-ctx.Done():
		handedOver = s.handedOverOnStop()
	case err = <-errc:
	case <-s.handedOver:
		handedOver = true
	}
	if handedOver {
		if ctx.Err() != nil {
			// Stopped while handing over: the stop is the service's, and
			// the successor serves now, with the socket and the instances.
			// (A stop that comes later, while this process retires, is
			// only for it: under systemd the successor is MAINPID by then.)
			s.log.Info("stopped during the upgrade: the stop goes on to the new handoff", "new_pid", s.successor.Load())
			syscall.Kill(int(s.successor.Load()), syscall.SIGTERM)
		}
		s.retire()
		return nil
	}
	s.shutdown()
	os.Remove(s.cfg.Socket)
	s.stopInstances()
	return err
}

// shutdown stops accepting, tells clients to leave, and waits for what is
// in flight, bounded by the longest drain timeout of any app.
// Unlike a hand-over, a stop need not wait for idle keep-alive connections
// (nobody would take them over): it waits for the requests in flight, ends
// WebSockets with a Close frame, gives HTTP/2 connections their GOAWAY, and
// closes the rest.
func (s *Server) shutdown() {
	s.gw.SetClosing(true)
	// Stop accepting at once: a client's new connection is refused (and
	// goes to another host behind a load balancer) instead of being
	// accepted only to be cut when the drain ends.
	s.ls.closeAll()
	s.deployer.Halt() // deploys stop at their current step; they resume on restart
	ctx, cancel := context.WithTimeout(context.Background(), s.longestDrain())
	defer cancel()
	defer func(tcp <-chan struct{}) { <-tcp }(s.drainTCP(ctx))
	var gateways []*h1.Server
	for _, srv := range s.servers {
		if g, ok := srv.(*h1.Server); ok {
			g.Drain()
			gateways = append(gateways, g)
		}
	}
	for busy(gateways) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	s.gw.GoAway(0)
	soon, cancelSoon := context.WithTimeout(ctx, time.Second)
	defer cancelSoon()
	s.shutdownServers(soon)
	// The app's database connections last until its requests are done;
	// then each closes between transactions.
	<-s.shutdownDatabases(ctx)
}

// busy reports whether a gateway server has a request in flight.
func busy(servers []*h1.Server) bool {
	for _, g := range servers {
		if st := g.ConnStats(); st.New+st.Active > 0 {
			return true
		}
	}
	return false
}

func (s *Server) longestDrain() time.Duration {
	timeout := 10 * time.Second
	for _, app := range s.cfg.Apps {
		timeout = max(timeout, app.DrainTimeout.D())
	}
	return timeout
}

// shutdownServers shuts every server down at once, closing what is left at
// ctx's end.
func (s *Server) shutdownServers(ctx context.Context) {
	var wg sync.WaitGroup
	for _, srv := range s.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Shutdown(ctx); err != nil {
				srv.Close()
			}
		}()
	}
	wg.Wait()
}

// stopInstances suspends the supervised instances with the server: each
// is stopped, and its record kept, so that the next handoff serve starts
// the app again as it was (a systemctl restart, a reboot). With
// Options.KeepInstances they are left running for it to adopt instead.
func (s *Server) stopInstances() {
	if !s.opts.KeepInstances {
		timeout := 30 * time.Second
		for _, app := range s.cfg.Apps {
			timeout = max(timeout, app.Stop.Timeout.D()+time.Second)
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		if err := s.supervisor().Suspend(ctx); err != nil && !errors.Is(err, supervisor.ErrDetached) {
			s.log.Warn("suspend instances", "error", err)
		}
		cancel()
	}
	if err := s.supervisor().Detach(context.Background()); err != nil && !errors.Is(err, supervisor.ErrDetached) {
		s.log.Warn("detach supervisor", "error", err)
	}
}

// gatewayServer is the HTTP server of one gateway listener: handoff's own
// HTTP/1.1 server (a fraction of net/http's cost per request, and a
// Shutdown that never closes an idle connection under its client), which
// hands HTTP/2 prior-knowledge (h2c) connections to net/http.
func (s *Server) gatewayServer() httpServer {
	return &h1.Server{
		Handler:           s.fleetHandler(s.gw),
		ReadHeaderTimeout: s.cfg.Gateway.HeaderTimeout.D(),
		BodyTimeout:       s.cfg.Gateway.BodyTimeout.D(),
		IdleTimeout:       s.cfg.Gateway.IdleTimeout.D(),
		MaxHeaderBytes:    int(s.cfg.Gateway.MaxHeaderBytes),
		Conns:             s.conns,
		ErrorLog:          s.log,
	}
}

// maxConnections is the configured cap on client connections, over all
// the gateway's and the tcp apps' listeners, or one derived from the
// descriptor limit: each client connection may need one
// to an instance too, and a reserve keeps descriptors for the store, the
// logs, the control socket, the instances' pipes and the gateway's splice
// pipes (at most 64 descriptors, h1.maxPipes).
func maxConnections(configured int) int {
	if configured > 0 {
		return configured
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 4096
	}
	const reserve = 256
	return max(int(min(lim.Cur, 1<<30)-reserve)/2, 64)
}
