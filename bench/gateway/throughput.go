package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/handoff-dev/handoff/internal/loadgen"
)

// cell is one measurement: a target at a concurrency and a body size.
type cell struct {
	Target            string        `json:"target"`
	Concurrency       int           `json:"concurrency"`
	Size              int           `json:"size"`
	Requests          int64         `json:"requests"`
	RequestsPerSecond float64       `json:"requests_per_second"`
	P50               time.Duration `json:"p50_ns"`
	P99               time.Duration `json:"p99_ns"`
	Failures          int64         `json:"failures"`
	ForcedReconnects  int64         `json:"forced_reconnects"`
	// ProxyCPU, BackendCPU and LoadCPU are CPU time (user+system) per
	// request of the proxy, the backend and the load generator; a LoadCPU
	// near 1s/(req/s) means the load generator was the bottleneck.
	ProxyCPU   time.Duration `json:"proxy_cpu_per_request_ns"`
	BackendCPU time.Duration `json:"backend_cpu_per_request_ns"`
	LoadCPU    time.Duration `json:"load_cpu_per_request_ns"`
	// OtherCPU is the share of the machine's CPU time, over the window,
	// that none of the three used: other work on the machine, and kernel
	// interrupt work (some of it loopback traffic's). More than a few
	// percent means the cell's numbers are disturbed.
	OtherCPU float64 `json:"other_cpu_percent"`
	// Segments is the TCP segments the machine sent per request (the
	// load's, the proxy's and the backend's, ACKs included): each costs
	// system and softirq time, some of it in nobody's account (OtherCPU).
	Segments float64 `json:"tcp_segments_per_request"`
	Err      string  `json:"error,omitempty"`
}

// runThroughput measures every cell of every target. The targets run side
// by side (idle but for the one measured) and are measured cell by cell,
// one after the other, in an order reversed every other round: a VM's
// speed drifts over minutes (the load generator's own CPU per request, the
// same work whatever the target, moved by a third between targets measured
// one after the other), and a target measured all at once would take a
// slow stretch whole. Each figure is the median of the rounds.
func (b *bench) runThroughput() error {
	backend, backendAddr, err := b.startBackend("bench")
	if err != nil {
		return fmt.Errorf("start backend: %w", err)
	}
	defer backend.stop()
	targets := map[string]*target{}
	errs := map[string]error{}
	for _, name := range b.opts.targets {
		fmt.Printf("starting %s...\n", name)
		t, err := b.startTarget(name, backendAddr)
		if err != nil {
			errs[name] = err
			continue
		}
		defer t.stop()
		targets[name] = t
	}
	var rounds [][]cell
	for r := range b.opts.rounds {
		order := slices.Clone(b.opts.targets)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		fmt.Printf("round %d of %d: %s...\n", r+1, b.opts.rounds, strings.Join(order, ", "))
		var cells []cell
		for _, conc := range b.opts.concurrency {
			for _, size := range b.opts.sizes {
				for _, name := range order {
					c := cell{Target: name, Concurrency: conc, Size: size}
					if err := errs[name]; err != nil {
						c.Err = err.Error()
					} else {
						b.measure(targets[name], backend, &c)
					}
					cells = append(cells, c)
				}
			}
		}
		rounds = append(rounds, cells)
	}
	cells := medianCells(b.opts.targets, rounds)
	printCells(cells)
	if len(rounds) > 1 {
		printRounds(rounds)
	}
	printRatios(cells)
	return b.writeJSON(cells)
}

// medianCells folds the rounds into one cell per target, concurrency and
// size, in that order: each figure the median of the rounds' (requests
// and failures summed: a failure in any round is one).
func medianCells(targets []string, rounds [][]cell) []cell {
	type key struct {
		target     string
		conc, size int
	}
	by := map[key][]cell{}
	var keys []key
	for _, cells := range rounds {
		for _, c := range cells {
			k := key{c.Target, c.Concurrency, c.Size}
			if by[k] == nil {
				keys = append(keys, k)
			}
			by[k] = append(by[k], c)
		}
	}
	slices.SortStableFunc(keys, func(a, b key) int {
		return slices.Index(targets, a.target) - slices.Index(targets, b.target)
	})
	var out []cell
	for _, k := range keys {
		cs := by[k]
		m := cell{Target: k.target, Concurrency: k.conc, Size: k.size}
		var ok []cell
		for _, c := range cs {
			m.Requests += c.Requests
			m.Failures += c.Failures
			m.ForcedReconnects += c.ForcedReconnects
			if c.Err != "" && m.Err == "" {
				m.Err = c.Err
			}
			if c.Requests > 0 {
				ok = append(ok, c)
			}
		}
		if len(ok) > 0 {
			m.RequestsPerSecond = median(ok, func(c cell) float64 { return c.RequestsPerSecond })
			m.P50 = time.Duration(median(ok, func(c cell) float64 { return float64(c.P50) }))
			m.P99 = time.Duration(median(ok, func(c cell) float64 { return float64(c.P99) }))
			m.ProxyCPU = time.Duration(median(ok, func(c cell) float64 { return float64(c.ProxyCPU) }))
			m.BackendCPU = time.Duration(median(ok, func(c cell) float64 { return float64(c.BackendCPU) }))
			m.LoadCPU = time.Duration(median(ok, func(c cell) float64 { return float64(c.LoadCPU) }))
			m.OtherCPU = median(ok, func(c cell) float64 { return c.OtherCPU })
			m.Segments = median(ok, func(c cell) float64 { return c.Segments })
		}
		out = append(out, m)
	}
	return out
}

// median is the middle value of f over cs (the mean of the two middle
// ones for an even count).
func median(cs []cell, f func(cell) float64) float64 {
	v := make([]float64, len(cs))
	for i, c := range cs {
		v[i] = f(c)
	}
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// printRounds shows how far the rounds moved: handoff against each
// reference proxy, round by round.
func printRounds(rounds [][]cell) {
	fmt.Println("\nround by round, handoff/<proxy> req/s and proxy CPU/req:")
	for i, cells := range rounds {
		by, keys := byTarget(cells)
		for _, ref := range []string{"nginx", "haproxy", "base"} {
			if by[ref] == nil || by["handoff"] == nil {
				continue
			}
			line := fmt.Sprintf("  round %d, %-8s", i+1, ref+":")
			for _, k := range keys {
				h, r := by["handoff"][k], by[ref][k]
				line += fmt.Sprintf("  c%d %s %s/%s", k.conc, size(k.size), ratio(h.RequestsPerSecond, r.RequestsPerSecond), ratio(float64(h.ProxyCPU), float64(r.ProxyCPU)))
			}
			fmt.Println(line)
		}
	}
}

// cellKey is a cell's place in the table: its concurrency and body size.
type cellKey struct{ conc, size int }

// byTarget indexes cells by target and place, keeping the places in the
// order they first come; a cell that failed with no request measured is
// left out (its ratios print as "-").
func byTarget(cells []cell) (map[string]map[cellKey]cell, []cellKey) {
	by := map[string]map[cellKey]cell{}
	var keys []cellKey
	seen := map[cellKey]bool{}
	for _, c := range cells {
		if by[c.Target] == nil {
			by[c.Target] = map[cellKey]cell{}
		}
		k := cellKey{c.Concurrency, c.Size}
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
		if c.Err == "" || c.Requests > 0 {
			by[c.Target][k] = c
		}
	}
	return by, keys
}

// measure runs a warm-up, then the measured load, reading the proxy's and
// the backend's CPU time on either side of it.
func (b *bench) measure(t *target, backend *proc, c *cell) {
	path := "/fast"
	if c.Size != 100 {
		path = fmt.Sprintf("/bytes?n=%d", c.Size)
	}
	cfg := loadgen.Config{Addr: t.addr, Fast: c.Concurrency, FastPath: path, Duration: b.opts.warmup}
	if _, err := loadgen.Run(context.Background(), cfg); err != nil {
		c.Err = err.Error()
		return
	}
	before, err := b.cpuTimes(t, backend)
	if err != nil {
		c.Err = err.Error()
		return
	}
	segsBefore, err := tcpOutSegments()
	if err != nil {
		c.Err = err.Error()
		return
	}
	cfg.Duration = b.opts.duration
	start := time.Now()
	res, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		c.Err = err.Error()
		return
	}
	after, err := b.cpuTimes(t, backend)
	if err != nil {
		c.Err = err.Error()
		return
	}
	window := time.Since(start)
	segsAfter, err := tcpOutSegments()
	if err != nil {
		c.Err = err.Error()
		return
	}
	if res.Requests > 0 {
		c.Segments = float64(segsAfter-segsBefore) / float64(res.Requests)
	}
	c.Requests, c.RequestsPerSecond, c.Failures, c.ForcedReconnects = res.Requests, res.RequestsPerSecond, res.Failures, res.ForcedReconnects
	c.P50, c.P99 = res.Latency.P50, res.Latency.P99
	if res.Requests > 0 {
		n := time.Duration(res.Requests)
		c.ProxyCPU, c.BackendCPU, c.LoadCPU = (after[0]-before[0])/n, (after[1]-before[1])/n, (after[2]-before[2])/n
	}
	ours := after[0] - before[0] + after[1] - before[1] + after[2] - before[2]
	other := after[3] - before[3] - ours
	c.OtherCPU = max(0, 100*float64(other)/float64(window*time.Duration(cpuCount())))
	if res.Failures > 0 {
		c.Err = res.Err().Error()
	}
}

// cpuTimes reads the CPU time used so far by the proxy (0 for direct), the
// backend, this process (the load generator) and the whole machine.
func (b *bench) cpuTimes(t *target, backend *proc) ([4]time.Duration, error) {
	var out [4]time.Duration
	var err error
	if t.proc != nil {
		if out[0], err = cpuTime(t.proc.pid(), b.tick); err != nil {
			return out, fmt.Errorf("%s cpu: %w", t.name, err)
		}
	}
	if out[1], err = cpuTime(backend.pid(), b.tick); err != nil {
		return out, fmt.Errorf("backend cpu: %w", err)
	}
	// Not cpuTime: the backend and the proxies are this process's children.
	self, err := ticks(os.Getpid())
	if err != nil {
		return out, fmt.Errorf("load generator cpu: %w", err)
	}
	out[2] = time.Duration(self) * b.tick
	if out[3], err = machineBusy(b.tick); err != nil {
		return out, err
	}
	return out, nil
}

func printCells(cells []cell) {
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\tconns\tbody\treq/s\tp50\tp99\terrors\tproxy µs/req\tbackend µs/req\tload µs/req\tother cpu\tsegs/req\t")
	for _, c := range cells {
		if c.Requests == 0 && c.Err != "" {
			fmt.Fprintf(tw, "%s\t%d\t%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t\n", c.Target, c.Concurrency, size(c.Size))
			continue
		}
		proxy := "-"
		if c.Target != "direct" {
			proxy = micros(c.ProxyCPU)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%s\t%s\t%d\t%s\t%s\t%s\t%.0f%%\t%.2f\t\n", c.Target, c.Concurrency, size(c.Size), c.RequestsPerSecond,
			loadgen.FormatDuration(c.P50), loadgen.FormatDuration(c.P99), c.Failures, proxy, micros(c.BackendCPU), micros(c.LoadCPU), c.OtherCPU, c.Segments)
	}
	_ = tw.Flush()
	printErrors(cells)
}

// printErrors prints each target's distinct errors once.
func printErrors(cells []cell) {
	seen := map[string]bool{}
	for _, c := range cells {
		if key := c.Target + c.Err; c.Err != "" && !seen[key] {
			seen[key] = true
			fmt.Printf("\n%s: %s\n", c.Target, c.Err)
		}
	}
}

// printRatios compares targets cell by cell: each proxy against direct,
// and handoff against each reference proxy (nginx, HAProxy, and another
// build of handoff as "base") that was measured.
func printRatios(cells []cell) {
	by, keys := byTarget(cells)
	var proxies, refs []string
	for _, name := range []string{"handoff", "nginx", "haproxy", "base"} {
		if by[name] == nil {
			continue
		}
		proxies = append(proxies, name)
		if name != "handoff" {
			refs = append(refs, name)
		}
	}
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "conns\tbody\t")
	for _, p := range proxies {
		fmt.Fprintf(tw, "%s/direct req/s\t", p)
	}
	for _, r := range refs {
		fmt.Fprintf(tw, "handoff/%s req/s\thandoff/%s proxy CPU/req\t", r, r)
	}
	fmt.Fprintln(tw)
	for _, k := range keys {
		d, h := by["direct"][k], by["handoff"][k]
		fmt.Fprintf(tw, "%d\t%s\t", k.conc, size(k.size))
		for _, p := range proxies {
			fmt.Fprintf(tw, "%s\t", ratio(by[p][k].RequestsPerSecond, d.RequestsPerSecond))
		}
		for _, r := range refs {
			n := by[r][k]
			fmt.Fprintf(tw, "%s\t%s\t", ratio(h.RequestsPerSecond, n.RequestsPerSecond), ratio(float64(h.ProxyCPU), float64(n.ProxyCPU)))
		}
		fmt.Fprintln(tw)
	}
	_ = tw.Flush()
}

func ratio(a, b float64) string {
	if a == 0 || b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func micros(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Microsecond)) }

func size(n int) string {
	if n >= 1024 && n%1024 == 0 {
		return fmt.Sprintf("%dKiB", n/1024)
	}
	return fmt.Sprintf("%dB", n)
}
