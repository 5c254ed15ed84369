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
	// tcp is every TCP listener with its name (config.Listener.Name), in
	// config order: the gateway's and the admin listener's (also above),
	// each tcp app's ("tcp.APP"); what a hand-over passes on, by name.
	tcp []named
}

// named is a listener and its name in a hand-over (LISTEN_FDNAMES).
type named struct {
	name string
	l    net.Listener
}

// named returns the listeners of one name, in config order.
func (ls *listeners) named(name string) []net.Listener {
	var out []net.Listener
	for _, n := range ls.tcp {
		if n.name == name {
			out = append(out, n.l)
		}
	}
	return out
}

func (ls *listeners) all() []net.Listener {
	var all []net.Listener
	for _, n := range ls.tcp {
		all = append(all, n.l)
	}
	if ls.socket != nil {
		all = append(all, ls.socket)
	}
	return all
}

func (ls *listeners) closeAll() {
	for _, l := range ls.all() {
		l.Close()
	}
}

// listen opens every listener, or none, taking inherited ones (from the
// handoff process this one takes over from, or systemd) where they match:
// by name and address, else by address alone.
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
	for _, want := range cfg.Listeners() {
		l := in.takeTCP(want.Name, want.Addr)
		if l == nil {
			if l, err = net.Listen("tcp", want.Addr); err != nil {
				return fail(fmt.Errorf("listen on %s (%s): %w", want.Addr, want.Key, err))
			}
		}
		ls.tcp = append(ls.tcp, named{name: want.Name, l: l})
		switch want.Name {
		case "gateway":
			ls.gateway = append(ls.gateway, l)
		case "admin":
			ls.admin = l
		}
	}
	if ls.socket = in.takeUnix(cfg.Socket); ls.socket == nil {
		if ls.socket, err = listenSocket(cfg.Socket); err != nil {
			return fail(err)
		}
	}
	return ls, nil
}

// listenSocket opens the control socket with mode 0600 from its first
// moment. A socket file left by a server that died is replaced; one that a
// live server answers on is an error, and so is any other file there.
func listenSocket(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another handoff server is running there", path)
	}
	// Only a socket is replaced: a typo that points socket: at the config,
	// the state store or a token must not delete it.
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket == 0 {
		return nil, fmt.Errorf("control socket %s (socket:): a file that is not a socket is there; not removing it", path)
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
