package dialect

import (
	"context"
	"math/rand/v2"
	"time"
)

// RetryBusy runs f again while it fails because it lost a lock race
// (SQLite busy, a Postgres lock timeout), for up to ten seconds, with a
// jittered backoff: for small bookkeeping writes (the history and
// checkpoint tables) that must not fail because the app's own writes held
// the lock a moment.
func RetryBusy(ctx context.Context, d Dialect, f func() error) error {
	deadline := time.Now().Add(10 * time.Second)
	for attempt := 0; ; attempt++ {
		err := f()
		if err == nil || !d.Classify(err).Retryable() || time.Now().After(deadline) {
			return err
		}
		if err := Sleep(ctx, Backoff(attempt)); err != nil {
			return err
		}
	}
}

// Backoff is the wait before retry n (from 0): 20 ms doubling to 2 s, with
// jitter so that racing writers spread out.
func Backoff(n int) time.Duration { return BackoffFrom(20*time.Millisecond, 2*time.Second, n) }

// BackoffFrom is the wait before retry n (from 0): first doubling to
// last, jittered (between half and all of it) so that several clients
// do not retry in step.
func BackoffFrom(first, last time.Duration, n int) time.Duration {
	d := min(first<<min(max(n, 0), 7), last)
	return d/2 + rand.N(d/2+1)
}

// Sleep waits d or until ctx ends, and returns ctx's error then.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
