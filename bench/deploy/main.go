// Command deploy measures what a deploy of supervised instances costs in
// time, against the least it could cost, and what handoff costs in memory
// with many instances:
//
//	go run ./bench/deploy [-instances 4] [-runs 3] [-many 50]
//
// The baseline, measured in the same run: one instance of the sample app
// started by hand and polled until its first healthy check. A rolling
// deploy over N bricks of one instance cannot be faster than N × that
// baseline (each brick starts and checks before the next); a blue/green
// deploy starts all N at once. The figures are printed as ratios to it.
// Memory: handoff serve's resident set with no instance, then with -many
// supervised instances, per instance.
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
)

func main() {
	instances := flag.Int("instances", 4, "instances (and bricks) of the app")
	runs := flag.Int("runs", 3, "deploys of each kind to average")
	many := flag.Int("many", 50, "instances for the memory figure")
	handoff := flag.String("handoff", "", "handoff binary (default: build ./cmd/handoff)")
	flag.Parse()
	if err := run(*handoff, *instances, *runs, *many); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(bin string, instances, runs, many int) error {
	dir, err := os.MkdirTemp("", "handoff-bench-deploy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if bin == "" {
		bin = filepath.Join(dir, "handoff")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd/handoff").CombinedOutput(); err != nil {
			return fmt.Errorf("build handoff: %v\n%s", err, out)
		}
	}
	base, err := baseline(bin, runs)
	if err != nil {
		return err
	}
	fmt.Printf("baseline: one instance started and first healthy in %s (mean of %d)\n\n", base.Round(time.Microsecond), runs)

	roll, green, err := deploys(bin, filepath.Join(dir, "deploys"), instances, runs)
	if err != nil {
		return err
	}
	n := time.Duration(instances)
	fmt.Printf("%-28s %10s  %s\n", "deploy", "time", "ratio")
	fmt.Printf("%-28s %10s  %.2f× N×baseline (N=%d)\n", fmt.Sprintf("rolling, %d bricks of 1", instances), roll.Round(time.Millisecond), float64(roll)/float64(n*base), instances)
	fmt.Printf("%-28s %10s  %.2f× N×baseline, %.2f× baseline\n", fmt.Sprintf("blue/green, %d instances", instances), green.Round(time.Millisecond), float64(green)/float64(n*base), float64(green)/float64(base))

	idle, loaded, err := memory(bin, filepath.Join(dir, "memory"), many)
	if err != nil {
		return err
	}
	fmt.Printf("\nmemory of handoff serve: %.1f MiB with no instance, %.1f MiB supervising %d (%.0f KiB per instance)\n",
		mib(idle), mib(loaded), many, float64(loaded-idle)/1024/float64(many))
	return nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// baseline starts the sample app by hand and times it to its first
// healthy answer.
func baseline(bin string, runs int) (time.Duration, error) {
	var total time.Duration
	for range runs {
		addr, err := freeAddr()
		if err != nil {
			return 0, err
		}
		start := time.Now()
		cmd := exec.Command(bin, "sampleapp", "--listen", addr)
		if err := cmd.Start(); err != nil {
			return 0, err
		}
		for {
			resp, err := http.Get("http://" + addr + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					break
				}
			}
			time.Sleep(time.Millisecond)
		}
		total += time.Since(start)
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
	return total / time.Duration(runs), nil
}

// deploys times rolling and blue/green deploys between two releases.
func deploys(bin, dir string, instances, runs int) (roll, green time.Duration, err error) {
	s, err := serve(bin, dir, fmt.Sprintf("    instances: %d\n    bricks: %d\n", instances, instances))
	if err != nil {
		return 0, 0, err
	}
	defer s.stop()
	if _, err := s.deploy("v0", ""); err != nil {
		return 0, 0, err
	}
	for i := range runs {
		d, err := s.deploy("r"+strconv.Itoa(i), "rolling")
		if err != nil {
			return 0, 0, err
		}
		roll += d
		d, err = s.deploy("g"+strconv.Itoa(i), "all")
		if err != nil {
			return 0, 0, err
		}
		green += d
	}
	return roll / time.Duration(runs), green / time.Duration(runs), nil
}

// memory reads handoff's resident set idle, then with many instances.
func memory(bin, dir string, many int) (idle, loaded int64, err error) {
	s, err := serve(bin, dir, fmt.Sprintf("    instances: %d\n    start_timeout: 5m\n", many))
	if err != nil {
		return 0, 0, err
	}
	defer s.stop()
	time.Sleep(time.Second)
	if idle, err = rss(s.cmd.Process.Pid); err != nil {
		return 0, 0, err
	}
	if _, err := s.deploy("v0", "all"); err != nil {
		return 0, 0, err
	}
	time.Sleep(2 * time.Second) // some health checks on every instance
	loaded, err = rss(s.cmd.Process.Pid)
	return idle, loaded, err
}

// server is one handoff serve with one supervised app.
type server struct {
	bin, dir, socket string
	cmd              *exec.Cmd
}

func serve(bin, dir, app string) (*server, error) {
	if err := os.MkdirAll(filepath.Join(dir, "releases"), 0o755); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	s := &server{bin: bin, dir: dir, socket: filepath.Join(dir, "handoff.sock")}
	cfg := fmt.Sprintf("listen: [%q]\nsocket: %s\nstate: %s\nlogs: %s\naccess_log: false\napps:\n  web:\n    command: [%s, sampleapp]\n    releases: %s\n    health: { path: /healthz, interval: 1s }\n    drain_timeout: 1s\n%s",
		addr, s.socket, filepath.Join(dir, "handoff.db"), filepath.Join(dir, "logs"), bin, filepath.Join(dir, "releases"), app)
	if err := os.WriteFile(filepath.Join(dir, "handoff.yaml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	s.cmd = exec.Command(bin, "serve", "--config", filepath.Join(dir, "handoff.yaml"))
	var out bytes.Buffer
	s.cmd.Stderr = &out
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	for range 300 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := control.Dial(s.socket).Status(ctx, "")
		cancel()
		if err == nil {
			return s, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return nil, fmt.Errorf("handoff serve did not start:\n%s", out.String())
}

// deploy creates a release and deploys it, returning how long it took.
func (s *server) deploy(label, strategy string) (time.Duration, error) {
	rel := filepath.Join(s.dir, "releases", label)
	if err := os.MkdirAll(rel, 0o755); err != nil {
		return 0, err
	}
	args := []string{"deploy", "web", "--release", rel, "--socket", s.socket}
	if strategy != "" {
		args = append(args, "--strategy", strategy)
	}
	start := time.Now()
	out, err := exec.Command(s.bin, args...).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("deploy %s: %v\n%s", label, err, out)
	}
	return time.Since(start), nil
}

func (s *server) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	s.cmd.Wait()
}

// rss is a process's resident set size in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
