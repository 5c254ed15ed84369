package supervisor

import (
	"encoding/json"
	"maps"
	"strings"
	"testing"
)

// TestRedacted: a redacted instance keeps its environment's names and none
// of its values, in Go and as JSON, and leaves the instance it copies alone.
func TestRedacted(t *testing.T) {
	inst := Instance{Spec: Spec{App: "web", Env: map[string]string{"DATABASE_URL": "postgres://u:hunter2@db/app", "MODE": "x"}}, ID: "web-v1-0"}
	red := inst.Redacted()
	if want := map[string]string{"DATABASE_URL": RedactedValue, "MODE": RedactedValue}; !maps.Equal(red.Env, want) {
		t.Errorf("redacted env %v, want %v", red.Env, want)
	}
	if inst.Env["DATABASE_URL"] != "postgres://u:hunter2@db/app" {
		t.Errorf("Redacted changed the instance it copies: %v", inst.Env)
	}
	b, err := json.Marshal(red)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "hunter2") || !strings.Contains(string(b), `"DATABASE_URL":"[redacted]"`) {
		t.Errorf("redacted instance as JSON: %s", b)
	}
}
