package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// pinnedEnv marks the re-executed, pinned benchmark process.
const pinnedEnv = "HANDOFF_BENCH_PINNED"

// pinSelf re-executes this program under `taskset -c cpu`, so that the load
// generator has one core to itself (and GOMAXPROCS becomes 1). It returns
// true in the pinned process, false where pinning is impossible (one CPU,
// no taskset): the benchmark then runs unpinned and says so.
func pinSelf(cpu int) (bool, error) {
	if os.Getenv(pinnedEnv) != "" {
		return true, nil
	}
	taskset, err := exec.LookPath("taskset")
	if err != nil || runtime.NumCPU() < 2 {
		return false, nil
	}
	self, err := os.Executable()
	if err != nil {
		return false, fmt.Errorf("find own executable: %w", err)
	}
	argv := append([]string{"taskset", "-c", strconv.Itoa(cpu), self}, os.Args[1:]...)
	if err := syscall.Exec(taskset, argv, append(os.Environ(), pinnedEnv+"=1")); err != nil {
		return false, fmt.Errorf("re-execute under taskset: %w", err)
	}
	return true, nil // not reached
}

// proc is a process the benchmark started: a backend or a proxy.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{}
	err    error // set before exited is closed
}

// hostCommand prepares an operator's command (a deploy, a reload) to run on
// the servers' CPU: it runs on the host being upgraded, not with the
// clients, whose timings it would otherwise disturb.
func (b *bench) hostCommand(argv ...string) *exec.Cmd {
	argv = pinned(b.cpu, argv)
	return exec.Command(argv[0], argv[1:]...)
}

// pinned prefixes argv with taskset when cpu >= 0.
func pinned(cpu int, argv []string) []string {
	if cpu < 0 {
		return argv
	}
	return append([]string{"taskset", "-c", strconv.Itoa(cpu)}, argv...)
}

// startProc starts argv with its output in dir/name.log, pinned to cpu
// when cpu >= 0.
func startProc(dir, name string, cpu int, argv ...string) (*proc, error) {
	argv = pinned(cpu, argv)
	p := &proc{name: name, log: filepath.Join(dir, name+".log"), exited: make(chan struct{})}
	out, err := os.Create(p.log)
	if err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	defer out.Close() // the child holds its own descriptor
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Stdout, p.cmd.Stderr = out, out
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// pid is the process's id; taskset execs the command, so it is the command's.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and waits, then SIGKILL after 10s.
func (p *proc) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// tail returns the last lines of the process's output, for error messages.
func (p *proc) tail() string {
	data, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-8):], "\n")
}

// exitError describes a process that ended when it should be serving.
func (p *proc) exitError() error {
	return fmt.Errorf("%s exited (%v):\n%s", p.name, p.err, p.tail())
}

// waitReady polls http://addr/path until it answers 200, the process exits
// or timeout passes.
func waitReady(p *proc, addr, path string, timeout time.Duration) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.exited:
			return p.exitError()
		default:
		}
		resp, err := client.Get("http://" + addr + path)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready at %s%s after %v: %w\n%s", p.name, addr, path, timeout, err, p.tail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// cpuTime is the CPU time (utime+stime) used by pid and its live children
// (nginx's and HAProxy's workers), from /proc.
func cpuTime(pid int, tick time.Duration) (time.Duration, error) {
	pids := append([]int{pid}, children(pid)...)
	var total int64
	for _, p := range pids {
		t, err := ticks(p)
		if err != nil {
			if p == pid {
				return 0, err
			}
			continue // a child that just exited
		}
		total += t
	}
	return time.Duration(total) * tick, nil
}

// ticks reads utime+stime of one process, in clock ticks.
func ticks(pid int) (int64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	// After "pid (comm)", field 3 is f[0]; utime and stime are fields 14 and 15.
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	return u + s, nil
}

// procStat returns the fields of /proc/PID/stat after the command name,
// which may itself hold spaces and parentheses.
func procStat(pid int) ([]string, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, fmt.Errorf("read process stat: %w", err)
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return nil, fmt.Errorf("parse /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return nil, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	return f, nil
}

// children lists the processes whose parent is pid.
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f, err := procStat(child); err == nil && f[1] == strconv.Itoa(pid) {
			out = append(out, child)
		}
	}
	return out
}

// clockTick is the length of the clock tick /proc/PID/stat counts in.
func clockTick() time.Duration {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if hz, perr := strconv.Atoi(strings.TrimSpace(string(out))); err == nil && perr == nil && hz > 0 {
		return time.Second / time.Duration(hz)
	}
	return 10 * time.Millisecond // USER_HZ is 100 on every Linux we run on
}

// machineBusy is the CPU time all CPUs spent not idle since boot, from
// /proc/stat: user, nice, system, irq, softirq and steal.
func machineBusy(tick time.Duration) (time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read /proc/stat: %w", err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("parse /proc/stat: %q", line)
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // skip idle (4) and iowait (5)
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/stat: %w", err)
		}
		busy += n
	}
	return time.Duration(busy) * tick, nil
}

// tcpOutSegments is the machine's count of TCP segments sent
// (/proc/net/snmp, Tcp: OutSegs).
func tcpOutSegments() (int64, error) {
	data, err := os.ReadFile("/proc/net/snmp")
	if err != nil {
		return 0, fmt.Errorf("read /proc/net/snmp: %w", err)
	}
	var names []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Tcp:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		if i := slices.Index(names, "OutSegs"); i > 0 && i < len(f) {
			return strconv.ParseInt(f[i], 10, 64)
		}
	}
	return 0, fmt.Errorf("parse /proc/net/snmp: no Tcp OutSegs")
}
