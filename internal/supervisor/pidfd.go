package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// sysPidfdOpen is pidfd_open(2), Linux 5.3; new system calls have one
// number on every architecture.
const sysPidfdOpen = 434

// pidfdOpen opens a pidfd for pid, non-blocking so that the Go runtime's
// poller can wait on it. PIDFD_NONBLOCK (Linux 5.10) is O_NONBLOCK; an
// older kernel refuses it with EINVAL and gets the flag set afterwards.
func pidfdOpen(pid int) (int, error) {
	fd, _, errno := syscall.Syscall(sysPidfdOpen, uintptr(pid), uintptr(syscall.O_NONBLOCK), 0)
	if errno == syscall.EINVAL {
		fd, _, errno = syscall.Syscall(sysPidfdOpen, uintptr(pid), 0, 0)
		if errno == 0 {
			if err := syscall.SetNonblock(int(fd), true); err != nil {
				syscall.Close(int(fd))
				return -1, fmt.Errorf("pidfd of process %d: %w", pid, err)
			}
		}
	}
	if errno != 0 {
		return -1, fmt.Errorf("pidfd of process %d: %w", pid, errno)
	}
	return int(fd), nil
}

// waitExit returns true when the process pid that started at start has
// exited, or false when ctx is done first. It watches a process handoff
// did not start (and so cannot wait(2) for) through a pidfd, which becomes
// readable when the process exits; where pidfds are unavailable (Linux
// before 5.3, or a seccomp filter that refuses pidfd_open) it falls back
// to reading /proc every pollEvery, which notices an exit that much later.
func (s *Supervisor) waitExit(ctx context.Context, pid int, start uint64) bool {
	fd, err := s.env.pidfdOpen(pid)
	if errors.Is(err, syscall.ESRCH) {
		return true
	}
	if err != nil {
		s.log.Warn("cannot watch process with a pidfd; polling /proc instead", "pid", pid, "every", s.env.pollEvery, "error", err)
		return s.pollExit(ctx, pid, start)
	}
	f := os.NewFile(uintptr(fd), "pidfd")
	defer func() {
		if err := f.Close(); err != nil {
			s.log.Warn("close pidfd", "pid", pid, "error", err)
		}
	}()
	// The pidfd names whichever process holds the PID now: only once the
	// start time matches is it known to be the one we mean.
	if !s.env.alive(pid, start) {
		return true
	}
	err = waitReadable(ctx, f)
	switch {
	case err == nil:
		return true
	case ctx.Err() != nil:
		return false
	}
	s.log.Warn("cannot wait on pidfd; polling /proc instead", "pid", pid, "every", s.env.pollEvery, "error", err)
	return s.pollExit(ctx, pid, start)
}

// waitReadable waits through the runtime's poller, not a blocked thread,
// until f is readable or ctx is done.
func waitReadable(ctx context.Context, f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("wait on pidfd: %w", err)
	}
	stop := context.AfterFunc(ctx, func() {
		f.SetReadDeadline(time.Now()) // an unpollable file makes Read fail anyway
	})
	defer stop()
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		// The poller only reports readiness that arrives after it starts
		// waiting, so first ask whether the process has already exited.
		ready, err := pollReadable(int(fd))
		if err != nil {
			perr = err
			return true
		}
		return ready
	})
	if err = errors.Join(err, perr); err != nil {
		return fmt.Errorf("wait on pidfd: %w", err)
	}
	return nil
}

// pollReadable asks ppoll(2), without waiting, whether fd is readable.
func pollReadable(fd int) (bool, error) {
	const pollIn = 0x1
	pfd := struct {
		fd      int32
		events  int16
		revents int16
	}{fd: int32(fd), events: pollIn}
	var ts syscall.Timespec
	for {
		n, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
		switch errno {
		case 0:
			return n > 0, nil
		case syscall.EINTR:
			continue
		}
		return false, fmt.Errorf("poll pidfd: %w", errno)
	}
}

// pollExit checks /proc every pollEvery until the process is gone.
func (s *Supervisor) pollExit(ctx context.Context, pid int, start uint64) bool {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		if !s.env.alive(pid, start) {
			return true
		}
		t.Reset(s.env.pollEvery)
	}
}
