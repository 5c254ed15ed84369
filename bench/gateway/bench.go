package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"
)

// bench is one benchmark run's environment.
type bench struct {
	opts    options
	dir     string // configs, sockets, logs
	handoff string // the handoff binary: backend and gateway
	cpu     int    // CPU for backend and proxies, -1 when unpinned
	tick    time.Duration
}

func run(opts options, pinned bool) error {
	dir, err := os.MkdirTemp("", "handoff-bench-")
	if err != nil {
		return fmt.Errorf("create temp dir: %w", err)
	}
	if opts.keep {
		fmt.Printf("keeping %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	b := &bench{opts: opts, dir: dir, handoff: opts.handoff, cpu: opts.serverCPU, tick: clockTick()}
	if !pinned {
		b.cpu = -1
		fmt.Println("WARNING: not pinned to CPUs (needs taskset and 2 CPUs); load and servers share the machine")
	}
	if b.handoff == "" {
		if b.handoff, err = buildHandoff(dir); err != nil {
			return err
		}
	}
	b.describe(pinned)
	if opts.cpuProfile != "" {
		stop, err := profile(opts.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	if opts.switchMode {
		return b.runSwitch()
	}
	return b.runThroughput()
}

// buildHandoff builds ./cmd/handoff of the module this runs in.
func buildHandoff(dir string) (string, error) {
	bin := filepath.Join(dir, "bin", "handoff")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/handoff")
	cmd.Dir = moduleRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build handoff: %w: %s", err, out)
	}
	return bin, nil
}

func moduleRoot() string {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		return "."
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// describe prints what the numbers were measured on.
func (b *bench) describe(pinned bool) {
	fmt.Printf("cpu: %s, %d logical\n", cpuModel(), cpuCount())
	if pinned {
		fmt.Printf("load generator on cpu %d (GOMAXPROCS %d); backend and proxy on cpu %d\n",
			b.opts.loadCPU, runtime.GOMAXPROCS(0), b.cpu)
	}
	if load, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("load average at start: %s (other work on the machine disturbs the numbers)\n", strings.Join(strings.Fields(string(load))[:3], " "))
	}
	if out, err := exec.Command(b.opts.nginx, "-v").CombinedOutput(); err == nil {
		fmt.Printf("%s; %s\n", strings.TrimSpace(string(out)), runtime.Version())
	}
	if v := b.haproxyVersion(); v != "" {
		fmt.Println(v)
	}
	if b.opts.haproxyMissing {
		fmt.Printf("haproxy not found: running without the HAProxy column (to add it: %s)\n", haproxyInstall)
	}
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

// cpuCount counts the machine's CPUs, not this process's (it is pinned).
func cpuCount() int {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return runtime.NumCPU()
	}
	return strings.Count(string(data), "\nprocessor") + 1
}

// writeJSON writes v to the -json file, if one was asked for.
func (b *bench) writeJSON(v any) error {
	if b.opts.jsonOut == "" {
		return nil
	}
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(b.opts.jsonOut, data, 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// profile starts a CPU profile of this process, the load generator, to see
// whether it is the bottleneck of a cell.
func profile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("create profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("start profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "bench: close profile: %v\n", err)
		}
	}, nil
}
