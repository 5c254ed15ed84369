package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// readyTimeout bounds how long a backend or proxy may take to serve.
const readyTimeout = 15 * time.Second

// target is where the load goes: the backend itself, or a proxy before it.
type target struct {
	name string
	addr string
	proc *proc // the proxy; nil for direct
	// conf and sock are the proxy's config file and (handoff) control socket.
	conf, sock string
}

func (t *target) stop() {
	if t.proc != nil {
		t.proc.stop()
	}
}

// startBackend starts `handoff sampleapp` on the server CPU.
func (b *bench) startBackend(release string) (*proc, string, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	p, err := startProc(b.dir, "backend-"+release, b.cpu, b.handoff, "sampleapp", "--listen", addr, "--release", release)
	if err != nil {
		return nil, "", err
	}
	if err := waitReady(p, addr, "/healthz", readyTimeout); err != nil {
		p.stop()
		return nil, "", err
	}
	return p, addr, nil
}

// startTarget starts the named target in front of backend.
func (b *bench) startTarget(name, backend string) (*target, error) {
	switch name {
	case "handoff":
		return b.startHandoff("handoff", b.handoff, backend)
	case "base":
		return b.startHandoff("base", b.opts.base, backend)
	case "nginx":
		return b.startNginx(backend)
	case "haproxy":
		return b.startHAProxy(backend)
	}
	return &target{name: "direct", addr: backend}, nil
}

// startHandoff runs `handoff serve` from the binary bin, as the target
// name, with one app whose target is backend.
func (b *bench) startHandoff(name, bin, backend string) (*target, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(b.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create %s dir: %w", name, err)
	}
	t := &target{name: name, addr: addr, conf: filepath.Join(dir, "handoff.yaml"), sock: filepath.Join(dir, "handoff.sock")}
	conf := fmt.Sprintf(`listen: [%q]
socket: %s
state: %s
access_log: false
apps:
  web:
    targets: [%q]
    health: { path: /healthz }
`, addr, t.sock, filepath.Join(dir, "handoff.db"), backend)
	if err := os.WriteFile(t.conf, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("write handoff config: %w", err)
	}
	if t.proc, err = startProc(b.dir, name, b.cpu, bin, "serve", "--config", t.conf); err != nil {
		return nil, err
	}
	if err := waitReady(t.proc, addr, "/fast", readyTimeout); err != nil {
		t.proc.stop()
		return nil, err
	}
	return t, nil
}

// handoffDeploy points the app at a new backend, as an operator would,
// with the CLI of the binary bin that runs t.
func (b *bench) handoffDeploy(bin string, t *target, backend string) error {
	out, err := b.hostCommand(bin, "deploy", "web", "--target", backend, "--socket", t.sock).CombinedOutput()
	if err != nil {
		return fmt.Errorf("handoff deploy: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return nil
}
