package config

import (
	"strings"
	"testing"
	"time"
)

// database.escalate: on by default (500 ms), off, a duration, and refused
// past its cap or when it is not a duration, at its key and line.
func TestDatabaseEscalate(t *testing.T) {
	for _, c := range []struct {
		yaml string
		want time.Duration
		err  string
	}{
		{"", 500 * time.Millisecond, ""},
		{"database:\n  escalate: off\n", 0, ""},
		{"database:\n  escalate: 0s\n", 0, ""},
		{"database:\n  escalate: 2s\n", 2 * time.Second, ""},
		{"database:\n  escalate: 11s\n", 0, `t.yaml:2: database.escalate: at most 10s (a longer hold is a pause: 'handoff pause'), got "11s"`},
		{"database:\n  escalate: soon\n", 0, `t.yaml:2: database.escalate: want a duration such as 500ms, or off, got "soon"`},
	} {
		cfg, err := Parse("t.yaml", []byte(c.yaml))
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%q: got %v, want %s", c.yaml, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", c.yaml, err)
			continue
		}
		if got := cfg.Database.Escalate.D(); got != c.want {
			t.Errorf("%q: escalate %v, want %v", c.yaml, got, c.want)
		}
	}
}
