package loadgen

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is what a run did. Failures are requests that a user would have
// seen fail: a transport error, a timeout, a 5xx, a wrong body or echo, a
// stream cut short. 4xx answers are the app's business and count only in
// Status.
type Result struct {
	Elapsed           time.Duration `json:"elapsed_ns"`
	Requests          int64         `json:"requests"`
	Failures          int64         `json:"failures"`
	RequestsPerSecond float64       `json:"requests_per_second"`
	// Bytes and BytesSent count body bytes received and sent.
	Bytes     int64 `json:"bytes"`
	BytesSent int64 `json:"bytes_sent"`
	// Latency is over all kinds; Kinds has it per kind.
	Latency Latency              `json:"latency"`
	Kinds   map[Kind]*KindResult `json:"kinds"`
	// Releases and Instances count responses by X-Release and X-Instance
	// ("" when absent); Status counts them by status code.
	Releases  map[string]int64 `json:"releases"`
	Instances map[string]int64 `json:"instances"`
	Status    map[int]int64    `json:"status"`
	// Refused counts answers the gateway gave on purpose because a mode was
	// on (read_only, maintenance, paused), by reason. They are the modes
	// working, not failures.
	Refused map[string]int64 `json:"refused"`
	// Connects counts connections opened, WebSockets included.
	Connects int64 `json:"connects"`
	// ForcedReconnects counts connections the server closed without having
	// announced it (no Connection: close, no WebSocket close frame), seen as
	// EOF or a reset while a request was on it. Each one failed a request.
	ForcedReconnects int64 `json:"forced_reconnects"`
	// GracefulReconnects counts connections the server closed after
	// announcing it: a response with Connection: close, or a WebSocket close
	// frame. They cost a reconnect and no request.
	GracefulReconnects int64 `json:"graceful_reconnects"`
	// Errors samples failures' causes, most frequent first.
	Errors []ErrorCount `json:"errors,omitempty"`
}

// KindResult is what one kind of client did.
type KindResult struct {
	Clients   int          `json:"clients"`
	Requests  int64        `json:"requests"`
	Failures  int64        `json:"failures"`
	Bytes     int64        `json:"bytes"`
	BytesSent int64        `json:"bytes_sent"`
	Latency   Latency      `json:"latency"`
	Errors    []ErrorCount `json:"errors,omitempty"`
}

// Latency summarises request durations, from writing the request to having
// read the whole response (a stream's last event, a WebSocket's echo).
// Percentiles are within 1% of the exact value.
type Latency struct {
	P50  time.Duration `json:"p50_ns"`
	P90  time.Duration `json:"p90_ns"`
	P99  time.Duration `json:"p99_ns"`
	P999 time.Duration `json:"p999_ns"`
	Max  time.Duration `json:"max_ns"`
	Mean time.Duration `json:"mean_ns"`
}

// ErrorCount is one cause of failure and how often it happened.
type ErrorCount struct {
	Error string `json:"error"`
	Count int64  `json:"count"`
}

// Err is nil when no request failed, else an error that says how many did
// and why, for a test to fail with.
func (r Result) Err() error {
	if r.Failures == 0 {
		return nil
	}
	causes := make([]string, 0, 3)
	for _, e := range r.Errors[:min(3, len(r.Errors))] {
		causes = append(causes, fmt.Sprintf("%d× %s", e.Count, e.Error))
	}
	return fmt.Errorf("%d of %d requests failed (%d forced reconnects): %s",
		r.Failures, r.Requests, r.ForcedReconnects, strings.Join(causes, "; "))
}

// String is the report for humans: a table per kind, then the counts.
func (r Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d requests in %s (%.1f/s), %d failed\n",
		r.Requests, r.Elapsed.Round(time.Millisecond), r.RequestsPerSecond, r.Failures)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "kind\tclients\trequests\tfailed\tp50\tp90\tp99\tp99.9\tmax\tbytes\t")
	for _, k := range kinds {
		if kr := r.Kinds[k]; kr != nil {
			writeRow(tw, string(k), fmt.Sprint(kr.Clients), kr.Requests, kr.Failures, kr.Latency, kr.Bytes+kr.BytesSent)
		}
	}
	if len(r.Kinds) > 1 {
		writeRow(tw, "all", "", r.Requests, r.Failures, r.Latency, r.Bytes+r.BytesSent)
	}
	_ = tw.Flush() // a strings.Builder does not fail
	fmt.Fprintf(&b, "releases:    %s\n", counts(r.Releases, func(s string) string { return orNone(s) }))
	fmt.Fprintf(&b, "instances:   %s\n", counts(r.Instances, func(s string) string { return orNone(s) }))
	fmt.Fprintf(&b, "status:      %s\n", counts(r.Status, func(c int) string { return fmt.Sprint(c) }))
	if len(r.Refused) > 0 {
		fmt.Fprintf(&b, "refused:     %s (by a mode, on purpose)\n", counts(r.Refused, func(s string) string { return s }))
	}
	fmt.Fprintf(&b, "connections: %d opened, %d forced reconnects, %d graceful reconnects\n",
		r.Connects, r.ForcedReconnects, r.GracefulReconnects)
	for _, e := range r.Errors {
		fmt.Fprintf(&b, "error:       %d× %s\n", e.Count, e.Error)
	}
	return b.String()
}

func writeRow(tw *tabwriter.Writer, name, clients string, requests, failures int64, l Latency, bytes int64) {
	fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", name, clients, requests, failures,
		FormatDuration(l.P50), FormatDuration(l.P90), FormatDuration(l.P99), FormatDuration(l.P999),
		FormatDuration(l.Max), formatBytes(bytes))
}

// counts renders a map as "k=v k=v", keys in order.
func counts[K interface{ ~string | ~int }](m map[K]int64, name func(K) string) string {
	if len(m) == 0 {
		return "-"
	}
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", name(k), m[k]))
	}
	return strings.Join(parts, " ")
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// FormatDuration prints a latency with three significant digits: 87µs,
// 1.23ms, 2.50s.
func FormatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%.3gms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.3gs", d.Seconds())
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1fGiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%dB", n)
}
