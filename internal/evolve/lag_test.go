package evolve

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/dialect"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// laggingReplica is the one fake here: a replica that lags on demand,
// which a single test database cannot provide. Everything else is real.
type laggingReplica struct {
	dialect.Dialect
	lag atomic.Int64
}

func (l *laggingReplica) ReplicationLag(context.Context) (time.Duration, error) {
	return time.Duration(l.lag.Load()), nil
}

// TestReplicationLagPauses: while a replica lags more than MaxLag the run
// waits between batches; when it catches up the run goes on and completes.
func TestReplicationLagPauses(t *testing.T) {
	ctx := context.Background()
	real := open(t, testdb.SQLite(t))
	seed(t, real, 300)
	d := &laggingReplica{Dialect: real}
	d.lag.Store(int64(5 * time.Second))
	s := fast()
	s.MaxLag = time.Second
	var paused atomic.Bool
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, d, sqlJob(real, s), func(e Event) {
			if e.Kind == EventPause && strings.HasPrefix(e.Reason, "replication lag") {
				paused.Store(true)
			}
		})
		done <- err
	}()
	waitFor(t, paused.Load)
	time.Sleep(500 * time.Millisecond)
	if st, _ := Get(ctx, real, "0001_lower"); st.Rows != 0 {
		t.Fatalf("the run went on while the replica lagged: %d rows", st.Rows)
	}
	d.lag.Store(0)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	checkOnce(t, real, 300)
}
