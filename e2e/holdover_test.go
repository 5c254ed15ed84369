package e2e

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/loadgen"
)

// TestHoldsSurviveAnUpgrade: pause, `handoff upgrade`, resume, under load.
// The requests the old process holds when it hands over are released by
// the resume that reaches the new process (through the store), in time —
// not after hold_max — and none fails; so are those the new process holds,
// after the old process's.
func TestHoldsSurviveAnUpgrade(t *testing.T) {
	exe := ownBinary(t)
	v1 := startBackend(t, "v1")
	n := newNodeWith(t, exe, fmt.Sprintf(`  web:
    targets: [%q]
    health: { path: /healthz, interval: 200ms }
    hold_max: 12s
`, v1.addr))
	var mu sync.Mutex
	var recs []loadgen.Record
	record := func(r loadgen.Record) {
		mu.Lock()
		recs = append(recs, r)
		mu.Unlock()
	}
	cfg := loadgen.Config{Addr: n.gateway, Fast: 16, Duration: 2 * time.Minute, Timeout: 30 * time.Second, Record: record}
	old, err := loadgen.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	pausedAt := time.Now()
	n.must("pause")
	time.Sleep(time.Second) // every client of the old process is held by now
	n.must("upgrade")
	upgradedAt := time.Now()
	// New clients reach the new process, which holds them too.
	cfg.Fast = 8
	fresh, err := loadgen.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	resumedAt := time.Now()
	n.must("resume")
	time.Sleep(2 * time.Second)
	resOld, resFresh := old.Stop(), fresh.Stop()
	t.Logf("clients of the old process:\n%s\nclients of the new process:\n%s", resOld, resFresh)
	for _, res := range []loadgen.Result{resOld, resFresh} {
		if err := res.Err(); err != nil {
			t.Errorf("zero failed requests promised across a pause, an upgrade and a resume: %v", err)
		}
		if res.Refused["paused"] != 0 {
			t.Errorf("%d requests were refused by the pause", res.Refused["paused"])
		}
	}

	// Held requests: begun during the pause, ended after the resume.
	mu.Lock()
	defer mu.Unlock()
	var heldOld, heldNew []time.Duration // how long after the resume each ended
	for _, r := range recs {
		if r.Start.Before(pausedAt) || !r.Start.Before(resumedAt) || r.End.Before(resumedAt) {
			continue
		}
		d := r.End.Sub(resumedAt)
		if r.Start.Before(upgradedAt) {
			heldOld = append(heldOld, d)
		} else {
			heldNew = append(heldNew, d)
		}
		if r.Err != nil || r.Status != 200 {
			t.Errorf("a held request (begun %s after the pause) ended %s after the resume with %d %v",
				r.Start.Sub(pausedAt).Round(time.Millisecond), d.Round(time.Millisecond), r.Status, r.Err)
		}
	}
	if len(heldOld) == 0 || len(heldNew) == 0 {
		t.Fatalf("held by the old process %d, by the new %d: want some of each", len(heldOld), len(heldNew))
	}
	sort.Slice(heldOld, func(i, j int) bool { return heldOld[i] < heldOld[j] })
	sort.Slice(heldNew, func(i, j int) bool { return heldNew[i] < heldNew[j] })
	last := heldOld[len(heldOld)-1]
	t.Logf("%d requests held by the old process ended %s to %s after the resume; %d held by the new one, %s to %s",
		len(heldOld), heldOld[0].Round(time.Millisecond), last.Round(time.Millisecond),
		len(heldNew), heldNew[0].Round(time.Millisecond), heldNew[len(heldNew)-1].Round(time.Millisecond))
	if heldNew[0] < heldOld[0] {
		t.Errorf("a request held by the new process ended before any held by the old one, which arrived first")
	}
	if last > 2*time.Second {
		t.Errorf("the old process's held requests ended up to %s after the resume; want well before hold_max (12s)", last.Round(time.Millisecond))
	}
}
