package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestOutOfDescriptorsIsTheGatewaysFault runs exhaustOnce in a child
// process (a descriptor limit is the whole process's): with every
// descriptor taken, health checks and dials fail with EMFILE, and the
// target must stay in rotation, the failure be counted and logged once, and
// the request be answered 503 + Retry-After rather than 502.
func TestOutOfDescriptorsIsTheGatewaysFault(t *testing.T) {
	if os.Getenv("HANDOFF_TEST_EMFILE") == "1" {
		if err := exhaustOnce(); err != nil {
			fmt.Println("FAIL:", err)
			os.Exit(1)
		}
		fmt.Println("OK")
		os.Exit(0)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestOutOfDescriptorsIsTheGatewaysFault$", "-test.count=1")
	cmd.Env = append(os.Environ(), "HANDOFF_TEST_EMFILE=1")
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil || !strings.Contains(string(out), "OK") {
		t.Fatalf("out of descriptors: %v", err)
	}
}

// exhaustOnce is the child's part of TestOutOfDescriptorsIsTheGatewaysFault.
func exhaustOnce() error {
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer b.Close()
	logs := &syncLog{}
	reg := prometheus.NewRegistry()
	g := New(Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), Registerer: reg})
	defer g.Close()
	if err := g.Configure(config.Apps{testApp("web")}); err != nil { // health interval 100ms
		return err
	}
	if _, err := g.SetRoute("web", Route{Pools: []Pool{{Release: "v1", Targets: []string{addr(b)}, Weight: 1}}}); err != nil {
		return err
	}
	target := g.targets[addr(b)]
	if err := until(5*time.Second, func() bool { return target.status("").CheckedAt.After(time.Time{}) && target.Healthy() }); err != nil {
		return fmt.Errorf("first health check: %w", err)
	}

	// Take every descriptor under a low limit.
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		return err
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return err
	}
	lim := syscall.Rlimit{Cur: uint64(len(fds) + 32), Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	var hogs []*os.File
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) {
				return fmt.Errorf("exhaust descriptors: %w", err)
			}
			break
		}
		hogs = append(hogs, f)
	}
	time.Sleep(700 * time.Millisecond) // several health checks
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "http://x/", nil)
	g.ServeHTTP(rec, req)
	healthy := target.Healthy()
	for _, f := range hogs {
		f.Close()
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		return err
	}

	var errs []error
	if !healthy {
		errs = append(errs, fmt.Errorf("the target was marked down for the gateway's own EMFILE: %s", target.status("").LastError))
	}
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" || rec.Header().Get("Handoff-Refused") != "no_descriptors" {
		errs = append(errs, fmt.Errorf("a request while out of descriptors: %d, Retry-After %q, Handoff-Refused %q; want 503 no_descriptors with Retry-After",
			rec.Code, rec.Header().Get("Retry-After"), rec.Header().Get("Handoff-Refused")))
	}
	checks := testutil.ToFloat64(g.metrics.descriptors.WithLabelValues("health_check"))
	dials := testutil.ToFloat64(g.metrics.descriptors.WithLabelValues("dial"))
	if checks < 2 || dials != 1 {
		errs = append(errs, fmt.Errorf("handoff_gateway_descriptors_exhausted_total: health_check %v (want ≥ 2), dial %v (want 1)", checks, dials))
	}
	if ex := g.DescriptorExhaustion(); ex.Count != int64(checks+dials) || ex.Last.IsZero() || !strings.Contains(ex.Error, "too many open files") {
		errs = append(errs, fmt.Errorf("DescriptorExhaustion: %+v", ex))
	}
	if n := strings.Count(logs.String(), "out of file descriptors"); n != 1 {
		errs = append(errs, fmt.Errorf("logged %d times, want once per %s:\n%s", n, descriptorLogEvery, logs.String()))
	}
	if !strings.Contains(logs.String(), "level=WARN") || strings.Contains(logs.String(), "instance health changed") {
		errs = append(errs, fmt.Errorf("want one WARN and no health change in the log:\n%s", logs.String()))
	}
	// Descriptors back: the same gateway serves at once.
	rec = httptest.NewRecorder()
	g.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://x/", nil))
	if rec.Code != 200 {
		errs = append(errs, fmt.Errorf("after the descriptors came back: %d", rec.Code))
	}
	return errors.Join(errs...)
}

func until(d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %s", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return nil
}
