// Package tcpproxy is handoff's data path for tcp apps: it accepts a
// client's connection on the app's own listener, picks a target from the
// app's route, dials it (another target if that fails), splices the two
// connections both ways with half-close, drains the targets a route change
// replaced, and counts what passes.
//
// Routes are the gateway's type (gateway.Route): one shape for a route
// whatever carries the traffic, so that deploys plan HTTP and tcp apps
// alike. The hot path reads an immutable snapshot with one atomic load.
package tcpproxy

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/conncap"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Proxy.
type Options struct {
	Logger *slog.Logger
	// Conns caps the client connections open at once over all tcp apps,
	// and whatever else shares the cap (handoff serve's gateway); one over
	// it is closed at once. nil: a cap of 4096 of the proxy's own.
	Conns *conncap.Cap
	// Registerer receives the metrics; nil keeps them private.
	Registerer prometheus.Registerer
}

// Proxy serves every tcp app. Its methods are safe for concurrent use.
type Proxy struct {
	log     *slog.Logger
	limit   *conncap.Cap
	open    atomic.Int64 // client connections open, over all apps
	metrics *metrics

	mu    sync.Mutex // serializes control-plane changes
	apps  map[string]*app
	order []string
	conns sync.WaitGroup // one per client connection
}

// app is one tcp app: its config, its route, and every target it knows —
// listed by the route or draining.
type app struct {
	name    string
	cfg     *config.App
	route   gateway.Route             // guarded by Proxy.mu
	targets map[string]*target        // guarded by Proxy.mu
	snap    atomic.Pointer[snapshot]  // what the hot path reads
	addrs   []string                  // listening addresses, for status
	lns     map[net.Listener]struct{} // guarded by Proxy.mu
	refused [numRefusals]prometheus.Counter
	// For status (metrics cannot be read back).
	refusedN, cutTotal atomic.Int64
}

// refuse counts a client connection closed unanswered.
func (a *app) refuse(r refusal) {
	a.refused[r].Inc()
	a.refusedN.Add(1)
}

func (a *app) refusedTotal() int64 { return a.refusedN.Load() }

// snapshot is an app's route as the hot path sees it: immutable once
// published.
type snapshot struct {
	pools   []pool
	weights int
}

type pool struct {
	release string
	weight  int
	targets []*target
}

// New returns a proxy with no apps.
func New(opts Options) *Proxy {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Conns == nil {
		opts.Conns = conncap.New(4096)
	}
	p := &Proxy{log: opts.Logger, limit: opts.Conns, apps: map[string]*app{}}
	p.metrics = newMetrics(p, opts.Registerer)
	return p
}

// Configure sets the tcp apps from the config; apps of other kinds are
// ignored. Routes of apps that stay are kept; apps that are gone lose
// their route and their targets drain.
func (p *Proxy) Configure(apps config.Apps) {
	p.mu.Lock()
	defer p.mu.Unlock()
	next := map[string]*app{}
	var order []string
	for _, cfg := range apps {
		if cfg.Kind != config.KindTCP {
			continue
		}
		a := p.apps[cfg.Name]
		if a == nil {
			a = &app{name: cfg.Name, targets: map[string]*target{}, lns: map[net.Listener]struct{}{}}
			a.snap.Store(&snapshot{})
			for r := range a.refused {
				a.refused[r] = p.metrics.refused.WithLabelValues(cfg.Name, refusal(r).String())
			}
		}
		a.cfg = cfg
		next[cfg.Name] = a
		order = append(order, cfg.Name)
	}
	for name, a := range p.apps {
		if next[name] == nil {
			p.retarget(a, gateway.Route{})
		}
	}
	p.apps, p.order = next, order
}

// Apps lists the tcp apps in config order.
func (p *Proxy) Apps() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.order)
}

// UnknownAppError is returned for a name that is not a tcp app.
type UnknownAppError = gateway.UnknownAppError

func (p *Proxy) app(name string) (*app, error) {
	a, ok := p.apps[name]
	if !ok {
		return nil, &UnknownAppError{App: name}
	}
	return a, nil
}

// Serve accepts connections on l for the app until l is closed, which
// ends it with nil: closing the listener stops accepting, and connections
// already accepted go on (see Drain).
func (p *Proxy) Serve(name string, l net.Listener) error {
	p.mu.Lock()
	a, err := p.app(name)
	if err == nil {
		a.lns[l] = struct{}{}
		a.addrs = append(a.addrs, l.Addr().String())
	}
	p.mu.Unlock()
	if err != nil {
		return err
	}
	defer func() {
		p.mu.Lock()
		delete(a.lns, l)
		p.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			// Out of descriptors, most likely: wait a moment and go on, as
			// net/http does, rather than stop accepting for good.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			p.log.Warn("tcp accept", "app", name, "listen", l.Addr().String(), "error", err, "retry_in", backoff)
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		if !p.limit.Take() {
			a.refuse(overCap)
			c.Close()
			continue
		}
		p.open.Add(1)
		p.conns.Add(1)
		go func() {
			defer p.conns.Done()
			defer p.limit.Give()
			defer p.open.Add(-1)
			p.handle(a, c.(*net.TCPConn))
		}()
	}
}

// Open reports the client connections open now, over all apps.
func (p *Proxy) Open() int64 { return p.open.Load() }

// pick chooses a target for a new connection: by weight among the pools,
// the healthy target with the fewest open connections in that pool, else
// in any other pool, else any target not yet tried (health may lag behind
// a recovery). Draining targets and those in tried are skipped.
func (s *snapshot) pick(tried []*target) *target {
	if len(s.pools) == 0 {
		return nil
	}
	pref := 0
	if s.weights > 0 && len(s.pools) > 1 {
		n := rand.IntN(s.weights)
		for i, p := range s.pools {
			if n < p.weight {
				pref = i
				break
			}
			n -= p.weight
		}
	}
	if t := s.pools[pref].leastOpen(tried, true); t != nil {
		return t
	}
	for i := range s.pools {
		if i != pref {
			if t := s.pools[i].leastOpen(tried, true); t != nil {
				return t
			}
		}
	}
	for i := range s.pools {
		if t := s.pools[i].leastOpen(tried, false); t != nil {
			return t
		}
	}
	return nil
}

func (p *pool) leastOpen(tried []*target, healthyOnly bool) *target {
	n := len(p.targets)
	if n == 0 {
		return nil
	}
	start := 0
	if n > 1 {
		start = rand.IntN(n)
	}
	var best *target
	for i := range n {
		t := p.targets[(start+i)%n]
		if (healthyOnly && !t.healthy.Load()) || t.draining.Load() || slices.Contains(tried, t) {
			continue
		}
		if best == nil || t.open.Load() < best.open.Load() {
			best = t
		}
	}
	return best
}

func (a *app) String() string { return fmt.Sprintf("tcp app %s", a.name) }
