package migrate

import (
	"context"
	"sync"
	"testing"

	"github.com/handoff-dev/handoff/internal/testdb"
)

// TestPhasesOfSeveralNodesRunOnce: the nodes of a fleet run the same
// release's expand and contract at about the same moment (each node's
// waiting contract wakes up when the last old instance is gone). Each
// phase is applied once; the others find it done and succeed.
func TestPhasesOfSeveralNodesRunOnce(t *testing.T) {
	ctx := context.Background()
	u := testdb.Postgres(t)
	dir := writeDir(t, map[string]string{
		"0001_init.sql": initSQL,
		"0002_drop_legacy.sql": `-- handoff:expand
ALTER TABLE items ADD COLUMN note text;
-- handoff:contract
ALTER TABLE items DROP COLUMN legacy_title;
`,
	})
	const nodes = 4
	ms := make([]*Migrator, nodes)
	for i := range ms {
		ms[i] = openM(t, u, dir)
	}
	for _, phase := range []string{"expand", "contract"} {
		var wg sync.WaitGroup
		errs := make([]error, nodes)
		start := make(chan struct{})
		for i, m := range ms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if phase == "expand" {
					errs[i] = m.Expand(ctx)
				} else {
					errs[i] = m.Contract(ctx)
				}
			}()
		}
		close(start)
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("%s on node %d of %d at once: %v", phase, i+1, nodes, err)
			}
		}
	}
	if got := columns(t, ms[0].Dialect(), "items"); got != "id,note,title" {
		t.Fatalf("after expand and contract on %d nodes: %s", nodes, got)
	}
	if got := pending(t, ms[0]); got != "0001_init= 0002_drop_legacy=" {
		t.Fatalf("status: %s", got)
	}
}
