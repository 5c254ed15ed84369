package config

import (
	"fmt"
	"net"
	"regexp"
	"strings"
	"syscall"

	"github.com/handoff-dev/handoff/internal/dialect"
)

var appName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// Signals are the signals a config may name for stopping or draining.
var Signals = map[string]syscall.Signal{
	"SIGTERM": syscall.SIGTERM, "SIGINT": syscall.SIGINT, "SIGQUIT": syscall.SIGQUIT,
	"SIGHUP": syscall.SIGHUP, "SIGUSR1": syscall.SIGUSR1, "SIGUSR2": syscall.SIGUSR2,
	"SIGKILL": syscall.SIGKILL,
}

func (c *Config) validate(d *decoder) {
	bad := func(key, format string, args ...any) {
		d.errs = append(d.errs, &Error{File: d.file, Line: d.lineOf(key), Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if len(c.Listen) == 0 {
		bad("listen", "give at least one address for the gateway")
	}
	for i, addr := range c.Listen {
		checkAddr(bad, fmt.Sprintf("listen[%d]", i), addr)
	}
	if c.Socket == "" {
		bad("socket", "must not be empty")
	}
	if c.Gateway.MaxConnections < 0 {
		bad("gateway.max_connections", "must not be negative (0 derives it from the descriptor limit)")
	}
	// 0 would mean no bound at all (a slowloris client held for ever) or a
	// default the key does not say: every bound has one that is safe.
	for _, b := range []struct {
		key string
		v   int64
	}{
		{"gateway.idle_timeout", int64(c.Gateway.IdleTimeout)}, {"gateway.header_timeout", int64(c.Gateway.HeaderTimeout)},
		{"gateway.body_timeout", int64(c.Gateway.BodyTimeout)}, {"gateway.response_timeout", int64(c.Gateway.ResponseTimeout)},
		{"gateway.max_header_bytes", int64(c.Gateway.MaxHeaderBytes)}, {"hold.max_bytes", int64(c.Hold.MaxBytes)},
	} {
		if b.v <= 0 {
			bad(b.key, "must be more than 0")
		}
	}
	if c.Admin.Listen != "" {
		checkAddr(bad, "admin.listen", c.Admin.Listen)
		if c.Admin.TokenFile == "" {
			bad("admin.token_file", "the admin listener needs a token file")
		}
	}
	if c.State == "" {
		bad("state", "must not be empty")
	}
	if c.Hold.MaxRequests < 1 {
		bad("hold.max_requests", "must be at least 1")
	}
	if err := dialect.CheckURL(c.Database.URL); err != nil {
		bad("database.url", "%v", err)
	}
	c.Database.Backfill.validate(bad)
	c.validateDatabases(bad)
	c.validateFleet(bad)
	c.validateListeners(bad)
	hosts := map[string]string{}
	defaultApp := ""
	for _, app := range c.Apps {
		key := "apps." + app.Name
		if !appName.MatchString(app.Name) {
			bad(key, "an app's name is lower-case letters, digits, - and _")
		}
		app.validate(key, bad, func(k string) bool { _, ok := d.lines[k]; return ok })
		app.inherit(c)
		if app.Kind != KindHTTP {
			continue
		}
		if len(app.Hosts) == 0 {
			if defaultApp != "" {
				bad(key+".hosts", "apps %s and %s both have no hosts; only one app can be the default", defaultApp, app.Name)
			}
			defaultApp = app.Name
		}
		for i, h := range app.Hosts {
			h = strings.ToLower(h)
			if other, ok := hosts[h]; ok {
				bad(fmt.Sprintf("%s.hosts[%d]", key, i), "host %s is already routed to app %s", h, other)
			}
			hosts[h] = app.Name
		}
	}
}

// validate checks the app under key; given reports whether the file
// sets a key (a value equal to the default may still be out of place).
func (a *App) validate(key string, bad func(key, format string, args ...any), given func(key string) bool) {
	a.validateTCP(key, bad, given)
	if a.Kind == KindWorker {
		if len(a.Command) == 0 {
			bad(key+".command", "a worker needs a command")
		}
		if len(a.Hosts) > 0 || len(a.Targets) > 0 {
			bad(key, "a worker gets no traffic: it takes no hosts or targets")
		}
	}
	if len(a.Command) == 1 && strings.ContainsAny(a.Command[0], " \t") {
		bad(key+".command", "give the command as a list, one word per item: [bin/server, --port-env, PORT]")
	}
	for i, pct := range a.Canary.Steps {
		if pct < 1 || pct > 99 || i > 0 && pct <= a.Canary.Steps[i-1] {
			bad(fmt.Sprintf("%s.canary.steps[%d]", key, i), "give rising percents from 1 to 99 (the release is promoted after the last), got %d", pct)
		}
	}
	if a.Canary.Max5xx < 1 || a.Canary.MaxRedirects < 1 || a.Canary.MaxP99 < 1 {
		bad(key+".canary", "max_5xx, max_redirects and max_p99 are ratios to the old release: at least 1")
	}
	if len(a.ReleaseCommand) > 0 && len(a.Command) == 0 {
		bad(key+".release_command", "runs in a release directory: the app needs a command (handoff runs its releases)")
	}
	if len(a.ReleaseCommand) == 1 && strings.ContainsAny(a.ReleaseCommand[0], " \t") {
		bad(key+".release_command", "give the command as a list, one word per item: [bin/rails, db:migrate]")
	}
	for i, t := range a.Targets {
		checkAddr(bad, fmt.Sprintf("%s.targets[%d]", key, i), t)
	}
	if a.Instances < 1 {
		bad(key+".instances", "must be at least 1")
	}
	if a.Bricks < 0 {
		bad(key+".bricks", "must not be negative")
	}
	if a.KeepReleases < 1 {
		bad(key+".keep_releases", "must be at least 1")
	}
	if !strings.HasPrefix(a.Health.Path, "/") {
		bad(key+".health.path", "must start with /, got %q", a.Health.Path)
	}
	if a.Health.Interval <= 0 {
		bad(key+".health.interval", "must be more than 0")
	}
	if a.Health.Timeout <= 0 {
		bad(key+".health.timeout", "must be more than 0")
	}
	if a.StartTimeout <= 0 {
		bad(key+".start_timeout", "must be more than 0 (no instance is healthy at once: every deploy would fail)")
	}
	if a.ReleaseTimeout <= 0 {
		bad(key+".release_timeout", "must be more than 0 (every release command would be killed at once)")
	}
	for k := range a.Env {
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			bad(key+".env", "%q is not an environment variable's name", k)
		case k == "HANDOFF_NODE" || k == "HANDOFF_INSTANCE" || k == "HANDOFF_APP" || k == "HANDOFF_RELEASE" || k == "PORT" && a.Kind != KindWorker:
			bad(key+".env."+k, "is set by handoff for each instance (its own port, its app, release and instance): it cannot be given here")
		}
	}
	if a.Health.RestartAfter < 0 {
		bad(key+".health.restart_after", "must not be negative (0 never restarts)")
	}
	for _, s := range []struct {
		key string
		sig Signal
	}{{key + ".stop", a.Stop}, {key + ".drain", a.Drain}} {
		if _, ok := Signals[s.sig.Signal]; !ok {
			bad(s.key+".signal", "unknown signal %q (want SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGUSR1, SIGUSR2 or SIGKILL)", s.sig.Signal)
		}
		if given(s.key+".timeout") && s.sig.Timeout <= 0 {
			bad(s.key+".timeout", "must be more than 0 (0 would be read as the default)")
		}
	}
}

// inherit fills an app's mode settings it left unset from the global ones.
func (a *App) inherit(c *Config) {
	a.ReadOnly.Allow = append(append([]string(nil), c.ReadOnly.Allow...), a.ReadOnly.Allow...)
	if a.ReadOnly.Banner == "" {
		a.ReadOnly.Banner = c.ReadOnly.Banner
	}
	if a.ReadOnly.WarnAfter == 0 {
		a.ReadOnly.WarnAfter = c.ReadOnly.WarnAfter
	}
	if a.ReadOnly.RetryAfter == 0 {
		a.ReadOnly.RetryAfter = c.ReadOnly.RetryAfter
	}
	if a.Maintenance.Page == "" {
		a.Maintenance.Page = c.Maintenance.Page
	}
	if a.Maintenance.RetryAfter == 0 {
		a.Maintenance.RetryAfter = c.Maintenance.RetryAfter
	}
}

func checkAddr(bad func(key, format string, args ...any), key, addr string) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" {
		bad(key, "want host:port, got %q", addr)
		return
	}
	_ = host
}

// lineOf finds the line of key, or of its nearest parent that has one.
func (d *decoder) lineOf(key string) int {
	for key != "" {
		if l, ok := d.lines[key]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}
