package config

import (
	"fmt"
	"net"
	"strconv"
)

// maxExpect bounds health.expect: the check reads that many bytes.
const maxExpect = 256

// validateTCP checks what only a tcp app has (its own listen addresses, a
// connect health check) and refuses the keys that only mean something to
// HTTP, when given: health.path is refused even when written as the
// default ("/"), which given tells from a value left out.
func (a *App) validateTCP(key string, bad func(key, format string, args ...any), given func(key string) bool) {
	if a.Kind != KindTCP {
		if len(a.Listen) > 0 {
			bad(key+".listen", "only a tcp app has its own listen addresses (HTTP apps share the gateway's)")
		}
		if a.Health.Send != "" || a.Health.Expect != "" {
			bad(key+".health", "send and expect are a tcp app's health check; an HTTP app's is health.path")
		}
		return
	}
	if len(a.Listen) == 0 {
		bad(key+".listen", "a tcp app needs at least one address of its own to listen on (host:port)")
	}
	for i, addr := range a.Listen {
		k := fmt.Sprintf("%s.listen[%d]", key, i)
		if p, ok := portOf(addr); !ok || p == 0 {
			bad(k, "want host:port with a port from 1 to 65535, got %q", addr)
		}
	}
	httpOnly := func(sub, why string) { bad(key+"."+sub, "a tcp app has no %s: %s", sub, why) }
	if len(a.Hosts) > 0 {
		httpOnly("hosts", "it is reached on its own listen addresses, not by Host header")
	}
	if a.Health.Path != defaultApp("").Health.Path || given(key+".health.path") {
		httpOnly("health.path", "its health check is a connect (with health.send and health.expect if given)")
	}
	if len(a.ReadOnly.Allow) > 0 || a.ReadOnly.Banner != "" || a.ReadOnly.WarnAfter != 0 || a.ReadOnly.RetryAfter != 0 {
		httpOnly("readonly", "modes are the HTTP gateway's")
	}
	if a.Maintenance.Page != "" || a.Maintenance.RetryAfter != 0 {
		httpOnly("maintenance", "modes are the HTTP gateway's")
	}
	if len(a.Canary.Steps) > 0 {
		httpOnly("canary.steps", "the analysis judges HTTP answers; a tcp canary takes --percent and waits for --promote")
	}
	if a.Canary.Bricks {
		httpOnly("canary.bricks", "the analysis judges HTTP answers")
	}
	if len(a.Health.Expect) > maxExpect {
		bad(key+".health.expect", "at most %d bytes (the check reads that many), got %d", maxExpect, len(a.Health.Expect))
	}
}

// portOf returns addr's port, if addr is host:port with a numeric port.
func portOf(addr string) (int, bool) {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, false
	}
	p, err := strconv.Atoi(port)
	return p, err == nil && p >= 0 && p <= 65535
}

// Listener is one address handoff listens on, with the key that asks for
// it: the gateway's, the admin listener's, a tcp app's (and, later, a
// database endpoint's).
type Listener struct {
	// Name is the listener's name in a hand-over (LISTEN_FDNAMES):
	// "gateway", "admin", "tcp.APP".
	Name string
	Addr string
	// Key is the config key that asks for it, for errors: "listen[0]".
	Key string
}

// Listeners lists every TCP address handoff listens on, in config order
// (the control socket is a unix socket, and not among them).
func (c *Config) Listeners() []Listener {
	var out []Listener
	for i, addr := range c.Listen {
		out = append(out, Listener{Name: "gateway", Addr: addr, Key: fmt.Sprintf("listen[%d]", i)})
	}
	if c.Admin.Listen != "" {
		out = append(out, Listener{Name: "admin", Addr: c.Admin.Listen, Key: "admin.listen"})
	}
	for _, app := range c.Apps {
		if app.Kind != KindTCP {
			continue
		}
		for i, addr := range app.Listen {
			out = append(out, Listener{Name: TCPListenerName(app.Name), Addr: addr, Key: fmt.Sprintf("apps.%s.listen[%d]", app.Name, i)})
		}
	}
	for _, db := range c.Databases {
		out = append(out, Listener{Name: DatabaseListenerName(db.Name), Addr: db.Listen, Key: "databases." + db.Name + ".listen"})
	}
	return out
}

// TCPListenerName names a tcp app's listeners in a hand-over.
func TCPListenerName(app string) string { return "tcp." + app }

// validateListeners refuses two listeners on one address (the second
// could never open), and a tcp app's target that is one of handoff's own
// listeners (its connections would come back to handoff, round and round).
func (c *Config) validateListeners(bad func(key, format string, args ...any)) {
	ls := c.Listeners()
	for i, l := range ls {
		for _, prev := range ls[:i] {
			if sameListener(l.Addr, prev.Addr) {
				bad(l.Key, "%s clashes with %s (%s): two listeners cannot share a port", l.Addr, prev.Key, prev.Addr)
				break
			}
		}
	}
	for _, app := range c.Apps {
		if app.Kind != KindTCP {
			continue
		}
		for i, t := range app.Targets {
			for _, l := range ls {
				if sameListener(t, l.Addr) {
					bad(fmt.Sprintf("apps.%s.targets[%d]", app.Name, i), "%s is handoff's own %s: connections would come back to handoff", t, l.Key)
					break
				}
			}
		}
	}
}

// sameListener reports whether two host:port addresses would take the same
// socket: one port, and one host or either on every address.
func sameListener(a, b string) bool {
	ha, pa, erra := net.SplitHostPort(a)
	hb, pb, errb := net.SplitHostPort(b)
	// Port 0 is "any free port": two of them never clash (the demo and
	// the tests ask for it).
	if erra != nil || errb != nil || pa != pb || pa == "0" {
		return false
	}
	any := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	if any(ha) || any(hb) {
		return true
	}
	ia, ib := net.ParseIP(ha), net.ParseIP(hb)
	if ia != nil && ib != nil {
		return ia.Equal(ib)
	}
	return ha == hb
}

// Kinds returns the apps of the given kinds, in config order.
func (a Apps) Kinds(kinds ...Kind) Apps {
	var out Apps
	for _, app := range a {
		for _, k := range kinds {
			if app.Kind == k {
				out = append(out, app)
				break
			}
		}
	}
	return out
}
