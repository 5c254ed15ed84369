package e2e

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestDemo runs `handoff demo --json` as a newcomer would, and checks what
// it promises: requests served, none failed, a backfill of the sample
// database, and the time of each phase.
func TestDemo(t *testing.T) {
	cmd := exec.Command(bin, "demo", "--json")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("handoff demo: %v\n%s", err, stderr.String())
	}
	var sum struct {
		Requests       int64              `json:"requests"`
		Failed         int64              `json:"failed"`
		MaxLatencyMS   float64            `json:"max_latency_ms"`
		RowsBackfilled int64              `json:"rows_backfilled"`
		Phases         map[string]float64 `json:"phases"`
	}
	if err := json.Unmarshal(out, &sum); err != nil {
		t.Fatalf("demo --json printed %q: %v", out, err)
	}
	t.Logf("demo: %s", out)
	if sum.Requests < 1000 || sum.Failed != 0 || sum.MaxLatencyMS <= 0 {
		t.Errorf("the demo's users: %d requests, %d failed, max latency %.1f ms", sum.Requests, sum.Failed, sum.MaxLatencyMS)
	}
	if sum.RowsBackfilled < 200000 {
		t.Errorf("the demo backfilled %d rows, want its 200,000", sum.RowsBackfilled)
	}
	for _, phase := range []string{"expand", "backfill", "rollout", "catchup", "contract", "canary", "readonly", "pause"} {
		if _, ok := sum.Phases[phase]; !ok {
			t.Errorf("no time for phase %s: %v", phase, sum.Phases)
		}
	}
}
