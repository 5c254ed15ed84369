package server

import (
	"context"
	"fmt"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/tcpproxy"
)

// tcp apps in the server: the proxy (internal/tcpproxy) serves each tcp
// app's own listeners, which are opened and handed over in an upgrade with
// the gateway's (listen.go, upgrade.go); the deployer routes them as it
// routes HTTP apps. On a stop, and in the old process after an upgrade,
// open connections go on until they end by themselves, bounded by the
// longest drain_timeout, then are closed and counted (drainTCP).

// serveTCP accepts on every tcp app's listeners.
func (s *Server) serveTCP(errc chan<- error) {
	for _, app := range s.tcp.Apps() {
		for _, l := range s.ls.named(config.TCPListenerName(app)) {
			go func() {
				if err := s.tcp.Serve(app, l); err != nil {
					errc <- fmt.Errorf("serve tcp app %s on %s: %w", app, l.Addr(), err)
				}
			}()
		}
	}
}

// drainTCP lets the tcp apps' open connections finish until ctx is done,
// then closes those left; the returned channel is closed when that is
// over. The listeners must be closed already (nothing new is accepted).
func (s *Server) drainTCP(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		if open := s.tcp.Open(); open > 0 {
			s.log.Info("letting the tcp apps' open connections finish", "open", open, "limit", s.longestDrain().String())
		}
		if cut := s.tcp.Shutdown(ctx); cut > 0 {
			s.log.Warn("closed tcp connections still open at the drain's end", "cut", cut)
		}
	}()
	return done
}

// tcpStatus is a tcp app's part of status.
func (s *Server) tcpStatus() map[string]control.AppStatus {
	out := map[string]control.AppStatus{}
	for _, ts := range s.tcp.Status() {
		out[ts.App] = control.AppStatus{AppStatus: ts.AppStatus, TCP: &ts.TCP}
	}
	return out
}

// refuseTCPMode says that modes are the HTTP gateway's.
func refuseTCPMode(app *config.App, mode string) error {
	if app == nil || app.Kind != config.KindTCP {
		return nil
	}
	return deploy.Errorf(deploy.ErrBadRequest, "app %s is a tcp app: %s is a mode of the HTTP gateway, which a tcp app does not pass through", app.Name, mode)
}

// newTCPProxy builds the tcp apps' proxy; o carries the connection cap it
// shares with the gateway (each client connection needs one to a target
// too).
func newTCPProxy(cfg *config.Config, o tcpproxy.Options) *tcpproxy.Proxy {
	p := tcpproxy.New(o)
	p.Configure(cfg.Apps)
	return p
}

// targetHealth is where the health of an app's targets is known: the tcp
// proxy for a tcp app, else the gateway.
func (s *Server) targetHealth(app *config.App) func(addr string) (gateway.TargetHealth, bool) {
	if app.Kind == config.KindTCP {
		return func(addr string) (gateway.TargetHealth, bool) { return s.tcp.TargetHealth(app.Name, addr) }
	}
	return s.gw.TargetHealth
}
