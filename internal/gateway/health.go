package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
)

// healthClient opens a fresh connection per check: a check then proves the
// instance accepts connections, not only that an old one is still open.
var healthClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // a redirect is an answer: healthy
	},
}

// Check asks an instance's health path once: a 2xx or 3xx answer is healthy.
func Check(ctx context.Context, addr string, h config.Health) error {
	ctx, cancel := context.WithTimeout(ctx, h.Timeout.D())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+h.Path, nil)
	if err != nil {
		return fmt.Errorf("health check %s: %w", addr, err)
	}
	req.Header.Set("User-Agent", "handoff-health")
	resp, err := healthClient.Do(req)
	if err != nil {
		return fmt.Errorf("health check %s: %w", addr, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("health check %s%s: status %d", addr, h.Path, resp.StatusCode)
	}
	return nil
}

// monitorHealth checks t every interval until the returned stop is called.
func (g *Gateway) monitorHealth(t *Target, h config.Health) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		timer := time.NewTimer(0)
		defer timer.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-timer.C:
			}
			err := Check(ctx, t.Addr, h)
			if ctx.Err() != nil {
				return
			}
			if descriptorsExhausted(err) {
				// The gateway could not open a socket: that says nothing
				// about the instance, whose health stays as it was.
				g.outOfDescriptors("health_check", t.Addr, err)
				timer.Reset(h.Interval.D())
				continue
			}
			was := t.Healthy()
			t.setHealth(err == nil, err)
			if was != (err == nil) {
				g.log.Info("instance health changed", "target", t.Addr, "healthy", err == nil, "error", errString(err))
			}
			timer.Reset(h.Interval.D())
		}
	}()
	return func() { cancel(); <-done }
}

// ErrNeverHealthy is returned when new instances do not pass their health
// check in time.
var ErrNeverHealthy = errors.New("instances never became healthy")

// WaitHealthy checks each address until it passes or timeout elapses, with
// the first check at once so that a ready instance is ready without delay.
func WaitHealthy(ctx context.Context, addrs []string, h config.Health, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	const every = 50 * time.Millisecond
	for _, addr := range addrs {
		var last error
		for {
			if last = Check(ctx, addr, h); last == nil {
				break
			}
			select {
			case <-ctx.Done():
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return fmt.Errorf("%w within %s: %s: %w", ErrNeverHealthy, timeout, addr, last)
				}
				return ctx.Err()
			case <-time.After(every):
			}
		}
	}
	return nil
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TargetHealth is what the gateway knows of one target's health, for a
// liveness policy outside the gateway (the server restarts a supervised
// instance that has failed for too long).
type TargetHealth struct {
	Healthy  bool
	Draining bool
	// Passed is the time of the last passing health check (zero if none
	// has passed); FailingSince is the first failure after it (zero while
	// healthy). A failure for want of descriptors is not the target's and
	// counts as neither.
	Passed       time.Time
	FailingSince time.Time
	LastError    string
}

// TargetHealth reports the health of the target at addr, if a route lists it.
func (g *Gateway) TargetHealth(addr string) (TargetHealth, bool) {
	g.mu.Lock()
	t := g.targets[addr]
	g.mu.Unlock()
	if t == nil {
		return TargetHealth{}, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return TargetHealth{
		Healthy: t.healthy.Load(), Draining: t.draining.Load(),
		Passed: t.passedAt, FailingSince: t.failing, LastError: t.lastError,
	}, true
}
