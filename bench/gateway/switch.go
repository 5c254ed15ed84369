package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/handoff-dev/handoff/internal/loadgen"
)

// switchResult is what repointing a proxy from backend "a" to backend "b"
// cost its clients under steady keep-alive load.
type switchResult struct {
	Target             string `json:"target"`
	Requests           int64  `json:"requests"`
	Failures           int64  `json:"failures"`
	ForcedReconnects   int64  `json:"forced_reconnects"`
	GracefulReconnects int64  `json:"graceful_reconnects"`
	// Command is how long the switch command took to return.
	Command time.Duration `json:"command_ns"`
	// ToNew is from the switch command's start to the first answer from b;
	// OldTail to the last answer from a.
	ToNew   time.Duration `json:"to_new_ns"`
	OldTail time.Duration `json:"old_tail_ns"`
	// SteadyP999 is the p99.9 latency before the switch; MaxDuring the
	// longest request that was in flight at some moment while the switch
	// command ran; MaxAfter the longest request that ended after it began.
	SteadyP999 time.Duration        `json:"steady_p999_ns"`
	MaxDuring  time.Duration        `json:"max_during_ns"`
	MaxAfter   time.Duration        `json:"max_after_ns"`
	Errors     []loadgen.ErrorCount `json:"errors,omitempty"`
	Err        string               `json:"error,omitempty"`
}

func (b *bench) runSwitch() error {
	var addrs [2]string
	for i, release := range []string{"a", "b"} {
		p, addr, err := b.startBackend(release)
		if err != nil {
			return fmt.Errorf("start backend %s: %w", release, err)
		}
		defer p.stop()
		addrs[i] = addr
	}
	var results []switchResult
	for _, name := range b.opts.targets {
		if name != "direct" {
			fmt.Printf("switching %s from backend a to b under load...\n", name)
			results = append(results, b.switchTarget(name, addrs[0], addrs[1]))
		}
	}
	printSwitch(results)
	return b.writeJSON(results)
}

// switchTarget starts the target on backend a, puts steady load on it, and
// switches it to backend b in the middle.
func (b *bench) switchTarget(name, from, to string) switchResult {
	res := switchResult{Target: name}
	t, err := b.startTarget(name, from)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer t.stop()
	var rec recorder
	r, err := loadgen.Start(context.Background(), loadgen.Config{Addr: t.addr, Fast: b.opts.switchClients,
		Rate: b.opts.switchRate, Duration: b.opts.switchBefore + b.opts.switchAfter, Record: rec.add})
	if err != nil {
		res.Err = err.Error()
		return res
	}
	time.Sleep(b.opts.switchBefore)
	at := time.Now()
	switch name {
	case "nginx":
		err = b.nginxReload(t, to)
	case "haproxy":
		err = b.haproxyReload(t, to)
	case "base":
		err = b.handoffDeploy(b.opts.base, t, to)
	default:
		err = b.handoffDeploy(b.handoff, t, to)
	}
	res.Command = time.Since(at)
	if err != nil {
		res.Err = err.Error()
	}
	<-r.Done()
	lr := r.Stop()
	res.Requests, res.Failures, res.Errors = lr.Requests, lr.Failures, lr.Errors
	res.ForcedReconnects, res.GracefulReconnects = lr.ForcedReconnects, lr.GracefulReconnects
	rec.analyze(&res, at, at.Add(res.Command))
	return res
}

// recorder keeps every request of a switch run; Record calls it from all
// clients at once.
type recorder struct {
	mu   sync.Mutex
	reqs []loadgen.Record
}

func (r *recorder) add(rec loadgen.Record) {
	rec.Err = nil // keep the slice small; the Result has the errors
	r.mu.Lock()
	r.reqs = append(r.reqs, rec)
	r.mu.Unlock()
}

// analyze fills in the timings around the switch that ran from at to end.
func (r *recorder) analyze(res *switchResult, at, end time.Time) {
	var steady []time.Duration
	res.ToNew, res.OldTail = -1, 0
	for _, q := range r.reqs {
		d := q.End.Sub(q.Start)
		if q.End.Before(at) {
			steady = append(steady, d)
			continue
		}
		res.MaxAfter = max(res.MaxAfter, d)
		if !q.Start.After(end) {
			res.MaxDuring = max(res.MaxDuring, d)
		}
		since := q.End.Sub(at)
		if q.Release == "b" && (res.ToNew < 0 || since < res.ToNew) {
			res.ToNew = since
		}
		if q.Release == "a" {
			res.OldTail = max(res.OldTail, since)
		}
	}
	if len(steady) > 0 {
		slices.Sort(steady)
		res.SteadyP999 = steady[min(len(steady)-1, len(steady)*999/1000)]
	}
}

func printSwitch(results []switchResult) {
	fmt.Println()
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "target\trequests\tfailed\tforced\tgraceful\tcommand\tto new\told tail\tsteady p99.9\tmax during\tmax after\t")
	for _, r := range results {
		if r.Requests == 0 && r.Err != "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t\n", r.Target)
			continue
		}
		toNew := "never"
		if r.ToNew >= 0 {
			toNew = loadgen.FormatDuration(r.ToNew)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", r.Target, r.Requests, r.Failures,
			r.ForcedReconnects, r.GracefulReconnects, loadgen.FormatDuration(r.Command), toNew,
			loadgen.FormatDuration(r.OldTail), loadgen.FormatDuration(r.SteadyP999), loadgen.FormatDuration(r.MaxDuring),
			loadgen.FormatDuration(r.MaxAfter))
	}
	_ = tw.Flush()
	for _, r := range results {
		if r.Err != "" {
			fmt.Printf("\n%s: %s\n", r.Target, r.Err)
		}
		for _, e := range r.Errors {
			fmt.Printf("%s: %d× %s\n", r.Target, e.Count, e.Error)
		}
	}
}
