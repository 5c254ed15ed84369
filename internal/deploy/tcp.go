package deploy

import (
	"context"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/tcpproxy"
)

// A tcp app is deployed as an HTTP app is — the same plans, steps and
// routes — but its routes take effect in the TCP proxy, and its targets are
// checked by a connect (tcpproxy.Check) instead of an HTTP request.

// drainer is a route change's drain, in the gateway or the TCP proxy.
type drainer interface {
	Wait(ctx context.Context) (gateway.DrainReport, error)
}

// setRoute gives an app's route to its data path.
func (d *Deployer) setRoute(app string, r gateway.Route) (drainer, error) {
	if a := d.apps.Get(app); a != nil && a.Kind == config.KindTCP {
		drain, err := d.tcp.SetRoute(app, r)
		if err != nil {
			return nil, err
		}
		return drain, nil
	}
	drain, err := d.gw.SetRoute(app, r)
	if err != nil {
		return nil, err
	}
	return drain, nil
}

// check asks one of an app's instances once whether it is healthy.
func check(ctx context.Context, app *config.App, addr string) error {
	if app.Kind == config.KindTCP {
		return tcpproxy.Check(ctx, addr, app.Health)
	}
	return gateway.Check(ctx, addr, app.Health)
}

// waitHealthy waits until every target passes its check.
func waitHealthy(ctx context.Context, app *config.App, addrs []string) error {
	if app.Kind == config.KindTCP {
		return tcpproxy.WaitHealthy(ctx, addrs, app.Health, app.StartTimeout.D())
	}
	return gateway.WaitHealthy(ctx, addrs, app.Health, app.StartTimeout.D())
}
