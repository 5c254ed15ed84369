package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// haproxyConf is HAProxy tuned as nginx is (see nginxConf): one thread,
// keep-alive to clients and to the server with idle server connections
// shared between clients (http-reuse always), no log, timeouts long enough
// that no idle connection of the load is closed under it, and the same
// forwarding headers handoff and nginx send (option forwardfor,
// X-Forwarded-Host, X-Forwarded-Proto). The stats socket
// exposes the listeners so that a reload hands them over instead of binding
// anew (in master-worker mode the master passes them itself, with -x
// sockpair@, but an operator's config has the socket all the same).
//
// {{idleclose}} is "option idle-close-on-response" or empty: with it, the
// old worker of a reload answers the next request of an idle keep-alive
// connection with Connection: close rather than closing it under its client
// (HAProxy's behaviour before 2.4; see -haproxy-idle-close).
const haproxyConf = `global
  nbthread 1
  maxconn 8192
  pidfile {{prefix}}/haproxy.pid
  stats socket {{prefix}}/stats.sock mode 600 level admin expose-fd listeners
defaults
  mode http
  option http-keep-alive
  {{idleclose}}
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-request 60s
  timeout http-keep-alive 60s
frontend web
  bind {{listen}}
  default_backend app
backend app
  option forwardfor
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header X-Forwarded-Proto http
  server app {{backend}}
`

// startHAProxy runs HAProxy in master-worker mode (-W) in the foreground
// with a generated config: never the system's service or config. Pinned
// like nginx: the master is started under taskset, and its worker (and any
// worker a reload starts) inherits the CPU.
func (b *bench) startHAProxy(backend string) (*target, error) {
	bin, err := exec.LookPath(b.opts.haproxy)
	if err != nil {
		return nil, fmt.Errorf("find haproxy (%s): %w", haproxyInstall, err)
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	prefix := filepath.Join(b.dir, "haproxy")
	if err := os.MkdirAll(prefix, 0o755); err != nil {
		return nil, fmt.Errorf("create haproxy dir: %w", err)
	}
	t := &target{name: "haproxy", addr: addr, conf: filepath.Join(prefix, "haproxy.cfg")}
	if err := b.writeHAProxyConf(t, backend); err != nil {
		return nil, err
	}
	if t.proc, err = startProc(b.dir, "haproxy", b.cpu, bin, "-W", "-f", t.conf); err != nil {
		return nil, err
	}
	if err := waitReady(t.proc, addr, "/fast", readyTimeout); err != nil {
		t.proc.stop()
		return nil, err
	}
	return t, nil
}

// haproxyInstall says how to get HAProxy.
const haproxyInstall = "apt-get install -y haproxy"

func (b *bench) writeHAProxyConf(t *target, backend string) error {
	idle := ""
	if b.opts.haproxyIdleClose {
		idle = "option idle-close-on-response"
	}
	conf := strings.NewReplacer("{{prefix}}", filepath.Dir(t.conf), "{{backend}}", backend, "{{listen}}", t.addr,
		"{{idleclose}}", idle).Replace(haproxyConf)
	if err := os.WriteFile(t.conf, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write haproxy config: %w", err)
	}
	return nil
}

// haproxyReload points HAProxy at a new backend the way Debian's service
// does on `systemctl reload haproxy`: rewrite the config, check it with
// `haproxy -c`, then SIGUSR2 to the master, which re-executes itself with
// the new config, takes the listeners over from the old worker and lets the
// old worker finish (soft stop).
func (b *bench) haproxyReload(t *target, backend string) error {
	if err := b.writeHAProxyConf(t, backend); err != nil {
		return err
	}
	bin, err := exec.LookPath(b.opts.haproxy)
	if err != nil {
		return fmt.Errorf("find haproxy: %w", err)
	}
	if out, err := b.hostCommand(bin, "-W", "-f", t.conf, "-c", "-q").CombinedOutput(); err != nil {
		return fmt.Errorf("haproxy -c: %w: %s", err, strings.TrimSpace(string(out)))
	}
	if err := t.proc.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		return fmt.Errorf("signal haproxy master: %w", err)
	}
	return nil
}

// haproxyVersion is the first line of `haproxy -v`, or "".
func (b *bench) haproxyVersion() string {
	out, err := exec.Command(b.opts.haproxy, "-v").Output()
	if err != nil {
		return ""
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}
