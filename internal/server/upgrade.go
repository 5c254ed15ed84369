package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/deploy"
)

// upgradeReadyTimeout bounds how long a new handoff process may take to
// adopt everything and serve before the old one gives up on it. While it
// waits, deploys, mode switches and restarts wait too (nothing may act in
// two processes at once), so it is short: a new process that serves at all
// serves within a second or two (its listeners are inherited and adopting
// reads only the store and /proc).
const upgradeReadyTimeout = 15 * time.Second

// Upgrade replaces this process with the handoff binary now on disk at this
// process's path, with no gap: the new process is started with this one's
// listening sockets (the systemd LISTEN_FDS convention), adopts the
// instances and any deploy in progress, and says when it serves. Then this
// process stops accepting and finishes its own connections (see retire).
// If the new process fails to start, this one goes on serving as before.
func (s *Server) Upgrade(ctx context.Context) (*control.Upgrade, error) {
	if !s.upgrading.CompareAndSwap(false, true) {
		return nil, deploy.Errorf(deploy.ErrConflict, "this handoff process is already handing over to a new one")
	}
	exe, err := os.Executable()
	if err != nil {
		s.upgrading.Store(false)
		return nil, fmt.Errorf("find the handoff binary: %w", err)
	}
	fds, names, err := s.listenerFDs()
	if err != nil {
		s.upgrading.Store(false)
		return nil, err
	}
	s.log.Info("upgrading: starting the new handoff", "binary", exe)
	// Nothing may act in two processes at once: deploys stop at their
	// current step, the supervisor lets go of the instances, the mode timer
	// stops. The new process takes all three up.
	s.deployer.Halt()
	s.stopModes()
	// Bounded apart from the request: a client that gives up (a Ctrl-C on
	// `handoff upgrade`) must not leave the supervisor half let go.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), detachWait)
	err = s.supervisor().Detach(dctx)
	cancel()
	if err != nil {
		return nil, s.upgradeFailed(fmt.Errorf("the supervisor did not let go of the instances: %w", err))
	}
	pid, err := s.startSuccessor(exe, fds, names)
	if err != nil {
		return nil, s.upgradeFailed(err)
	}
	s.log.Info("upgraded: the new handoff serves; this one finishes its connections and exits", "new_pid", pid)
	s.stopAccepting()
	s.successor.Store(int64(pid))
	close(s.handedOver)
	return &control.Upgrade{OldPID: os.Getpid(), NewPID: pid, Binary: exe}, nil
}

// handedOverOnStop is asked on a stop: it waits for an upgrade under way to
// end, and reports whether it handed over; else no upgrade may begin any
// more. A stop that comes during an upgrade must not close or unlink the
// listeners and the control socket, which may be the successor's by then.
func (s *Server) handedOverOnStop() bool {
	for !s.upgrading.CompareAndSwap(false, true) {
		select {
		case <-s.handedOver:
			return true
		case <-time.After(20 * time.Millisecond):
		}
	}
	return false
}

// detachWait bounds the supervisor's letting go of the instances before an
// upgrade (its monitors end; one may be writing to the store): well within
// the new process's wait for them (supervisorLockWait).
const detachWait = 10 * time.Second

// startSuccessor starts the new process with the sockets and waits until it
// writes "ready" on its pipe, or fails, or takes too long.
//
// It forks with syscall.ForkExec and the listeners' own descriptors rather
// than os/exec's ExtraFiles: os/exec puts each file it passes in blocking
// mode, and a listening socket shares that mode with this process's copy,
// whose accept loop would then block in the kernel — and its Close with it.
func (s *Server) startSuccessor(exe string, fds []uintptr, names []string) (int, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("make readiness pipe: %w", err)
	}
	defer r.Close()
	args := s.opts.Args
	if len(args) == 0 {
		args = []string{"serve", "--config", s.cfg.Path}
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		w.Close()
		return 0, err
	}
	defer devnull.Close()
	env := withoutEnv(os.Environ(), envListenFDs, envListenFDNames, envListenPID, envReadyFD, envUpgradeFrom, envNotifySocket)
	if ns := notifySocket(); ns != "" {
		env = append(env, envNotifySocket+"="+ns) // the successor tells systemd its MAINPID
	}
	env = append(env,
		envListenFDs+"="+strconv.Itoa(len(fds)),
		envListenFDNames+"="+strings.Join(names, ":"),
		envReadyFD+"="+strconv.Itoa(listenFDStart+len(fds)),
		envUpgradeFrom+"="+strconv.Itoa(os.Getpid()))
	files := append([]uintptr{devnull.Fd(), os.Stdout.Fd(), os.Stderr.Fd()}, fds...)
	files = append(files, w.Fd())
	wd, _ := os.Getwd()
	pid, err := syscall.ForkExec(exe, append([]string{exe}, args...), &syscall.ProcAttr{Dir: wd, Env: env, Files: files})
	w.Close()
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", exe, err)
	}
	proc, _ := os.FindProcess(pid)
	exited := make(chan error, 1)
	go func() { _, err := proc.Wait(); exited <- err }()
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(r).ReadString('\n')
		ready <- line
	}()
	select {
	case line := <-ready:
		if line == "ready\n" {
			return pid, nil
		}
		<-exited
		if reason, ok := strings.CutPrefix(line, "failed: "); ok {
			return 0, fmt.Errorf("the new handoff (pid %d) could not start: %s", pid, strings.TrimSpace(reason))
		}
		return 0, fmt.Errorf("the new handoff (pid %d) exited before it served; its output is in this server's log", pid)
	case <-time.After(upgradeReadyTimeout):
		proc.Kill()
		<-exited
		return 0, fmt.Errorf("the new handoff did not serve within %s", upgradeReadyTimeout)
	}
}

// upgradeFailed takes back what Upgrade let go of, so that this process
// serves on, and returns the upgrade's error.
func (s *Server) upgradeFailed(err error) error {
	s.log.Error("upgrade failed; this process goes on serving", "error", err)
	if rerr := s.resumeAfterFailedUpgrade(); rerr != nil {
		err = errors.Join(err, rerr)
	}
	s.upgrading.Store(false)
	return fmt.Errorf("upgrade: %w; the old process goes on serving", err)
}

// resumeAfterFailedUpgrade takes back what Upgrade let go of.
func (s *Server) resumeAfterFailedUpgrade() error {
	// The --for timer runs again whatever becomes of the instances: a
	// read-only with an end must end.
	defer s.startModes()
	ctx, cancel := context.WithTimeout(context.Background(), supervisorLockWait)
	defer cancel()
	sup, err := openSupervisor(ctx, s.cfg, s.store, s.log)
	if err != nil {
		return fmt.Errorf("take the instances back: %w", err)
	}
	s.sup.Store(sup)
	s.deployer.Restart(s.ctx, sup)
	return nil
}

// listenerFDs returns the descriptors of every listening socket, for the
// new process, and their names (LISTEN_FDNAMES).
func (s *Server) listenerFDs() ([]uintptr, []string, error) {
	var fds []uintptr
	var names []string
	add := func(l net.Listener, name string) error {
		sc, ok := l.(syscall.Conn)
		if !ok {
			return fmt.Errorf("hand over %s listener %s: not a socket", name, l.Addr())
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return fmt.Errorf("hand over %s listener %s: %w", name, l.Addr(), err)
		}
		if err := rc.Control(func(fd uintptr) { fds = append(fds, fd) }); err != nil {
			return fmt.Errorf("hand over %s listener %s: %w", name, l.Addr(), err)
		}
		names = append(names, name)
		return nil
	}
	for _, n := range s.ls.tcp {
		if err := add(n.l, n.name); err != nil {
			return nil, nil, err
		}
	}
	if err := add(s.ls.socket, "control"); err != nil {
		return nil, nil, err
	}
	return fds, names, nil
}

func withoutEnv(env []string, keys ...string) []string {
	out := env[:0:0]
outer:
	for _, kv := range env {
		for _, k := range keys {
			if strings.HasPrefix(kv, k+"=") {
				continue outer
			}
		}
		out = append(out, kv)
	}
	return out
}

// retire is the old process's end after a hand-over: it stops accepting
// (the sockets stay open in the successor), and finishes its connections:
// each response now says Connection: close, idle keep-alive connections
// close at their idle timeout — never under a client that is sending —
// WebSockets and tcp apps' connections get until the longest drain
// timeout, then a Close frame, or are closed.
func (s *Server) retire() {
	s.gw.SetClosing(true)
	defer s.followModes()() // a resume stored by the successor releases what this process holds
	limit := s.cfg.Gateway.IdleTimeout.D() + s.longestDrain()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	// The tcp apps' connections are this process's to finish: their
	// targets live on (the successor adopted the instances).
	tcpCtx, tcpCancel := context.WithTimeout(context.Background(), s.longestDrain())
	defer tcpCancel()
	defer func(tcp <-chan struct{}) { <-tcp }(s.drainTCP(tcpCtx))
	// The database endpoints' clients reconnect to the successor as each
	// connection is closed between transactions.
	defer func(db <-chan struct{}) { <-db }(s.shutdownDatabases(tcpCtx))
	s.shutdownServers(ctx)
	s.gw.GoAway(s.longestDrain())
	s.log.Info("retired after the upgrade", "pid", os.Getpid())
}

// stopAccepting closes this process's copies of the listening sockets; they
// stay open in the successor, which alone accepts from now on. It happens
// before the upgrade is answered, so that a client's next connection
// reaches the new process.
func (s *Server) stopAccepting() {
	if u, ok := s.ls.socket.(*net.UnixListener); ok {
		u.SetUnlinkOnClose(false) // the socket file is the successor's now
	}
	s.ls.closeAll()
}

// predecessor returns a channel closed when the process this one took over
// from has exited, or nil when there was none.
func predecessor() <-chan struct{} {
	pid := upgradeFrom()
	if pid <= 0 {
		return nil
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for alive(pid) {
			time.Sleep(100 * time.Millisecond)
		}
	}()
	return done
}

// alive reports whether pid runs (a zombie does not).
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2] != 'Z'
	}
	return true
}

// TellFailed says why this process could not start to the handoff process
// that started it (an upgrade), so that the operator's `handoff upgrade`
// prints the reason; it does nothing for a serve not started that way.
func TellFailed(err error) {
	tellPredecessor("failed: " + strings.ReplaceAll(err.Error(), "\n", "; "))
}

// tellPredecessor writes line to the readiness pipe of the handoff process
// that started this one, once; nothing without one.
func tellPredecessor(line string) {
	if fd := takeReadyFD(); fd > 0 {
		f := os.NewFile(uintptr(fd), "ready")
		io.WriteString(f, line+"\n")
		f.Close()
	}
}

// tellReady says this process serves: to the handoff process that started
// it (its readiness pipe) and to systemd (sd_notify, with its new MAINPID).
func tellReady() {
	tellPredecessor("ready")
	sdNotify(fmt.Sprintf("MAINPID=%d\nREADY=1", os.Getpid()))
}

// sdNotify sends a state to systemd when it runs us as Type=notify.
func sdNotify(state string) {
	path := notifySocket()
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // an abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer conn.Close()
	conn.Write([]byte(state))
}
