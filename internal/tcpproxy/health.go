package tcpproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
)

// Check connects to a tcp target once: it is healthy when the connect
// succeeds within health.timeout and, when health.send or health.expect is
// set, the text is sent and the answer's first bytes are health.expect.
func Check(ctx context.Context, addr string, h config.Health) error {
	ctx, cancel := context.WithTimeout(ctx, h.Timeout.D())
	defer cancel()
	c, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("health check %s: %w", addr, err)
	}
	defer c.Close()
	if h.Send == "" && h.Expect == "" {
		return nil
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if h.Send != "" {
		if _, err := io.WriteString(c, h.Send); err != nil {
			return fmt.Errorf("health check %s: send: %w", addr, err)
		}
	}
	if h.Expect != "" {
		got := make([]byte, len(h.Expect))
		n, err := io.ReadFull(c, got)
		if !bytes.Equal(got[:n], []byte(h.Expect)) {
			if err != nil {
				return fmt.Errorf("health check %s: want an answer beginning %q, got %q: %w", addr, h.Expect, got[:n], err)
			}
			return fmt.Errorf("health check %s: want an answer beginning %q, got %q", addr, h.Expect, got[:n])
		}
	}
	return nil
}

// ErrNeverHealthy is returned when targets do not pass their check in time.
var ErrNeverHealthy = errors.New("targets never became healthy")

// WaitHealthy checks each address until it passes or timeout elapses, the
// first check at once.
func WaitHealthy(ctx context.Context, addrs []string, h config.Health, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	const every = 50 * time.Millisecond
	for _, addr := range addrs {
		for {
			last := Check(ctx, addr, h)
			if last == nil {
				break
			}
			select {
			case <-ctx.Done():
				if errors.Is(ctx.Err(), context.DeadlineExceeded) {
					return fmt.Errorf("%w within %s: %w", ErrNeverHealthy, timeout, last)
				}
				return ctx.Err()
			case <-time.After(every):
			}
		}
	}
	return nil
}

// monitorHealth checks t every health.interval until the returned stop is
// called; p.mu is held by the caller.
func (p *Proxy) monitorHealth(a *app, t *target) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	h := a.cfg.Health
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
			err := Check(ctx, t.addr, h)
			if ctx.Err() != nil {
				return
			}
			if was := t.Healthy(); was != (err == nil) {
				p.log.Info("tcp target health changed", "app", a.name, "target", t.addr, "healthy", err == nil, "error", errString(err))
			}
			t.setHealth(err == nil, err)
			timer.Reset(h.Interval.D())
		}
	}()
	return func() { cancel(); <-done }
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
