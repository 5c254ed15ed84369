package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
)

// listeners are the server's open sockets.
type listeners struct {
	gateway []net.Listener
	socket  net.Listener
	admin   net.Listener
}

func (ls *listeners) all() []net.Listener {
	all := append([]net.Listener{}, ls.gateway...)
	if ls.socket != nil {
		all = append(all, ls.socket)
	}
	if ls.admin != nil {
		all = append(all, ls.admin)
	}
	return all
}

func (ls *listeners) closeAll() {
	for _, l := range ls.all() {
		l.Close()
	}
}

// listen opens every listener, or none, taking inherited ones (from the
// handoff process this one takes over from, or systemd) where they match.
func listen(cfg *config.Config) (*listeners, error) {
	in, err := inheritListeners()
	if err != nil {
		return nil, err
	}
	defer in.closeAll()
	ls := &listeners{}
	fail := func(err error) (*listeners, error) {
		ls.closeAll()
		return nil, err
	}
	tcp := func(addr, key string) (net.Listener, error) {
		if l := in.takeTCP(addr); l != nil {
			return l, nil
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen on %s (%s): %w", addr, key, err)
		}
		return l, nil
	}
	for _, addr := range cfg.Listen {
		l, err := tcp(addr, "listen:")
		if err != nil {
			return fail(err)
		}
		ls.gateway = append(ls.gateway, l)
	}
	if ls.socket = in.takeUnix(cfg.Socket); ls.socket == nil {
		if ls.socket, err = listenSocket(cfg.Socket); err != nil {
			return fail(err)
		}
	}
	if cfg.Admin.Listen != "" {
		if ls.admin, err = tcp(cfg.Admin.Listen, "admin.listen"); err != nil {
			return fail(err)
		}
	}
	return ls, nil
}

// listenSocket opens the control socket with mode 0600 from its first
// moment. A socket file left by a server that died is replaced; one that a
// live server answers on is an error.
func listenSocket(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another handoff server is running there", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("control socket %s: remove stale socket: %w", path, err)
	}
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	return l, nil
}
