package server

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Listening sockets pass from a handoff process to its successor (and from
// systemd, with socket activation) by the systemd convention: fds 3.. with
// LISTEN_FDS=N and LISTEN_FDNAMES=name:name:… . LISTEN_PID, when set, must be
// this process (a parent using os/exec cannot know its child's PID, so
// handoff leaves it unset).
const (
	envListenFDs     = "LISTEN_FDS"
	envListenFDNames = "LISTEN_FDNAMES"
	envListenPID     = "LISTEN_PID"
	// envReadyFD names the pipe a new process writes "ready" to.
	envReadyFD = "HANDOFF_READY_FD"
	// envUpgradeFrom is the PID of the process this one takes over from.
	envUpgradeFrom = "HANDOFF_UPGRADE_FROM"
	listenFDStart  = 3
)

// inherited are listeners handed to this process, to be claimed by address.
type inherited struct {
	tcp  []inheritedTCP
	unix []*net.UnixListener
}

// inheritedTCP is a TCP listener and the name it was passed with.
type inheritedTCP struct {
	name string
	l    *net.TCPListener
}

// inheritListeners takes the listeners in LISTEN_FDS, and clears the
// variables so that a child of ours does not take them again.
func inheritListeners() (*inherited, error) {
	in := &inherited{}
	n, _ := strconv.Atoi(os.Getenv(envListenFDs))
	if pid := os.Getenv(envListenPID); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		n = 0 // meant for another process
	}
	names := strings.Split(os.Getenv(envListenFDNames), ":")
	for _, k := range []string{envListenFDs, envListenFDNames, envListenPID} {
		os.Unsetenv(k)
	}
	for i := range n {
		fd := listenFDStart + i
		syscall.CloseOnExec(fd)
		name := "listener"
		if i < len(names) && names[i] != "" {
			name = names[i]
		}
		f := os.NewFile(uintptr(fd), name)
		l, err := net.FileListener(f)
		f.Close() // FileListener holds its own duplicate
		if err != nil {
			in.closeAll()
			return nil, fmt.Errorf("inherited listener %d (%s): %w", fd, name, err)
		}
		switch l := l.(type) {
		case *net.TCPListener:
			in.tcp = append(in.tcp, inheritedTCP{name: name, l: l})
		case *net.UnixListener:
			in.unix = append(in.unix, l)
		default:
			l.Close()
		}
	}
	return in, nil
}

// takeTCP returns the inherited listener of that name on addr, else one
// of any name on addr (systemd's names are the unit's, not ours), if there
// is one.
func (in *inherited) takeTCP(name, addr string) net.Listener {
	want, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil
	}
	for _, byName := range []bool{true, false} {
		for i, it := range in.tcp {
			if byName && it.name != name {
				continue
			}
			have := it.l.Addr().(*net.TCPAddr)
			if have.Port == want.Port && (have.IP.Equal(want.IP) || (have.IP.IsUnspecified() && (want.IP == nil || want.IP.IsUnspecified()))) {
				in.tcp = append(in.tcp[:i], in.tcp[i+1:]...)
				return it.l
			}
		}
	}
	return nil
}

// takeUnix returns the inherited unix listener at path, if there is one.
func (in *inherited) takeUnix(path string) net.Listener {
	for i, l := range in.unix {
		if l.Addr().String() == path {
			in.unix = append(in.unix[:i], in.unix[i+1:]...)
			l.SetUnlinkOnClose(false) // the socket file is removed by whoever stops last
			return l
		}
	}
	return nil
}

// closeAll closes what nobody claimed (a listen: address dropped from the
// config between the two processes).
func (in *inherited) closeAll() {
	for _, it := range in.tcp {
		it.l.Close()
	}
	for _, l := range in.unix {
		l.Close()
	}
	in.tcp, in.unix = nil, nil
}
