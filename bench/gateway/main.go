// Command gateway benchmarks handoff's gateway against nginx, HAProxy and
// no proxy at all, on one host where the proxy takes its CPU from the app:
//
//	go run ./bench/gateway [-duration 5s] [-concurrency 32,256] [-sizes 100,65536]
//	go run ./bench/gateway -switch
//
// The load generator (this program, re-executed under taskset) runs alone
// on one core; the backend and the proxy under test share the other. For
// each target (direct, handoff, nginx, haproxy), concurrency and body size it
// reports requests/s, p50/p99, errors and the CPU time the proxy and the
// backend spent per request. With -switch it instead measures what
// repointing a proxy at a new backend costs clients under steady load:
// nginx's `nginx -s reload` and HAProxy's seamless reload (master-worker,
// listeners handed over) against handoff's `handoff deploy web --target`.
//
// The backend is `handoff sampleapp`, the same app every gateway test uses:
// /fast answers 100 bytes, /bytes?n=65536 64 KiB. It is a plain net/http
// server, so "direct" measures a Go backend, not a best case.
//
// The load never retries (see internal/loadgen): a request a proxy drops is
// an error here.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// options are the command line.
type options struct {
	duration    time.Duration
	warmup      time.Duration
	rounds      int
	concurrency []int
	sizes       []int
	targets     []string
	handoff     string
	base        string // a second handoff binary, the "base" target
	nginx       string
	haproxy     string
	loadCPU     int
	serverCPU   int
	jsonOut     string
	keep        bool
	cpuProfile  string
	// haproxyIdleClose adds "option idle-close-on-response" to HAProxy's
	// config; haproxyMissing notes that the default targets lost haproxy.
	haproxyIdleClose bool
	haproxyMissing   bool

	switchMode    bool
	switchClients int
	switchRate    float64
	switchBefore  time.Duration
	switchAfter   time.Duration
}

func main() {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	pinned, err := pinSelf(opts.loadCPU)
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	if err := run(opts, pinned); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (options, error) {
	var o options
	var conc, sizes, targets string
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.DurationVar(&o.duration, "duration", 5*time.Second, "measurement window per cell")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each cell")
	fs.IntVar(&o.rounds, "rounds", 3, "measure every cell this many times, the targets interleaved (reversed every other round); the median is reported")
	fs.StringVar(&conc, "concurrency", "32,256", "concurrent keep-alive connections, comma-separated")
	fs.StringVar(&sizes, "sizes", "100,65536", "response body sizes in bytes, comma-separated (100 is /fast)")
	fs.StringVar(&targets, "targets", "direct,handoff,nginx,haproxy", "what to measure, comma-separated")
	fs.StringVar(&o.handoff, "handoff", "", "handoff binary (default: build ./cmd/handoff)")
	fs.StringVar(&o.base, "base", "", "a second handoff binary, measured as the target \"base\" beside the others and compared with handoff like a reference proxy: two builds in one run, interleaved")
	fs.StringVar(&o.nginx, "nginx", "nginx", "nginx binary (Debian: apt-get install -y nginx)")
	fs.StringVar(&o.haproxy, "haproxy", "haproxy", "haproxy binary (Debian: "+haproxyInstall+")")
	fs.BoolVar(&o.haproxyIdleClose, "haproxy-idle-close", true, "HAProxy: option idle-close-on-response (a reload's old worker closes idle keep-alive connections only after answering their next request)")
	fs.IntVar(&o.loadCPU, "load-cpu", 0, "CPU for the load generator")
	fs.IntVar(&o.serverCPU, "server-cpu", 1, "CPU for the backend and the proxy")
	fs.StringVar(&o.jsonOut, "json", "", "also write the results as JSON to this file")
	fs.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configs, logs)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the load generator's CPU profile to this file")
	fs.BoolVar(&o.switchMode, "switch", false, "measure switching to a second backend under load instead of throughput")
	fs.IntVar(&o.switchClients, "switch-clients", 32, "with -switch: keep-alive clients")
	fs.Float64Var(&o.switchRate, "switch-rate", 200, "with -switch: requests/s per client")
	fs.DurationVar(&o.switchBefore, "switch-before", 2*time.Second, "with -switch: steady load before the switch")
	fs.DurationVar(&o.switchAfter, "switch-after", 3*time.Second, "with -switch: load after the switch")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.rounds < 1 {
		return o, fmt.Errorf("-rounds: want at least 1, got %d", o.rounds)
	}
	var err error
	if o.concurrency, err = ints(conc); err != nil {
		return o, fmt.Errorf("-concurrency: %w", err)
	}
	if o.sizes, err = ints(sizes); err != nil {
		return o, fmt.Errorf("-sizes: %w", err)
	}
	o.targets = strings.Split(targets, ",")
	for _, t := range o.targets {
		if t != "direct" && t != "handoff" && t != "nginx" && t != "haproxy" && t != "base" {
			return o, fmt.Errorf("-targets: unknown target %q (want direct, handoff, nginx, haproxy, base)", t)
		}
	}
	switch hasBase := slices.Contains(o.targets, "base"); {
	case o.base != "" && !hasBase:
		o.targets = append(o.targets, "base")
	case o.base == "" && hasBase:
		return o, fmt.Errorf("-targets: base needs -base PATH")
	}
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "targets" })
	if _, err := exec.LookPath(o.haproxy); err != nil && !explicit {
		// A reference column, not a requirement: asked for by name, a
		// missing haproxy is an error in its cells instead.
		o.targets = slices.DeleteFunc(o.targets, func(t string) bool { return t == "haproxy" })
		o.haproxyMissing = true
	}
	return o, nil
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive integer", f)
		}
		out = append(out, n)
	}
	return out, nil
}
