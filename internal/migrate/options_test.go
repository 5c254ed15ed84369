package migrate

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/evolve"
)

// TestConfigOptions: the config's database section becomes the options of
// every Migrator through ConfigOptions: the adaptive throttle by default,
// duty alone selecting the fixed one as it did before there was another,
// an explicit throttle winning.
func TestConfigOptions(t *testing.T) {
	for _, c := range []struct {
		yaml     string
		throttle evolve.ThrottleMode
		duty     int
	}{
		{"{}", evolve.ThrottleAdaptive, evolve.DefaultFixedDuty},
		{"{ duty: 50 }", evolve.ThrottleFixed, 50},
		{"{ throttle: fixed }", evolve.ThrottleFixed, evolve.DefaultFixedDuty},
		{"{ throttle: adaptive, duty: 50 }", evolve.ThrottleAdaptive, 50},
		{"{ throttle: off, rate: 300 }", evolve.ThrottleOff, 100},
	} {
		cfg, err := config.Parse("h.yaml", []byte("database:\n  url: sqlite://x.db\n  lock_timeout: 250ms\n  backfill: "+c.yaml+"\n"))
		if err != nil {
			t.Fatal(err)
		}
		o := ConfigOptions(cfg.Database)
		s := o.Backfill
		if s.Throttle != c.throttle || s.Duty != c.duty || o.LockTimeout != 250*time.Millisecond {
			t.Errorf("backfill %s: throttle %s duty %d lock timeout %v, want %s %d 250ms", c.yaml, s.Throttle, s.Duty, o.LockTimeout, c.throttle, c.duty)
		}
		if c.throttle == evolve.ThrottleOff && s.Rate != 0 {
			t.Errorf("throttle off keeps a rate cap: %+v", s)
		}
	}

	// The backfill's lock timeout is the migrator's unless a marker sets one.
	dir := t.TempDir()
	o := ConfigOptions(config.Default().Database)
	o.LockTimeout = 300 * time.Millisecond
	m, err := Open(context.Background(), filepath.Join(dir, "app.db"), o)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	mig, err := Parse("0001_x.sql", "-- handoff:backfill table=items key=id\nUPDATE items SET x = 1 WHERE id >= :lo AND id < :hi;\n")
	if err != nil {
		t.Fatal(err)
	}
	if s := m.job(mig).Settings; s.LockTimeout != 300*time.Millisecond || s.Throttle != evolve.ThrottleAdaptive {
		t.Errorf("job settings: lock timeout %v throttle %s", s.LockTimeout, s.Throttle)
	}
}

// TestMarkerThrottle: a backfill marker's throttle= and duty= options.
func TestMarkerThrottle(t *testing.T) {
	base := evolve.DefaultSettings()
	for _, c := range []struct {
		opts     string
		throttle evolve.ThrottleMode
		duty     int
	}{
		{"", evolve.ThrottleAdaptive, evolve.DefaultFixedDuty},
		{"duty=40", evolve.ThrottleFixed, 40},
		{"duty=40 throttle=adaptive", evolve.ThrottleAdaptive, 40},
		{"throttle=fixed", evolve.ThrottleFixed, evolve.DefaultFixedDuty},
		{"throttle=off", evolve.ThrottleOff, 100},
	} {
		mig, err := Parse("0001_x.sql", "-- handoff:backfill table=items key=id "+c.opts+"\nUPDATE items SET x = 1 WHERE id >= :lo AND id < :hi;\n")
		if err != nil {
			t.Fatalf("%s: %v", c.opts, err)
		}
		if s := mig.Sections[Backfill].Backfill.Settings(base); s.Throttle != c.throttle || s.Duty != c.duty {
			t.Errorf("%q: throttle %s duty %d, want %s %d", c.opts, s.Throttle, s.Duty, c.throttle, c.duty)
		}
	}
	_, err := Parse("0001_x.sql", "-- handoff:backfill table=items key=id throttle=slow\nUPDATE items SET x = 1 WHERE id >= :lo AND id < :hi;\n")
	if err == nil || !strings.Contains(err.Error(), `0001_x.sql:1: backfill option throttle: want adaptive, fixed or off, got "slow"`) {
		t.Errorf("throttle=slow: %v", err)
	}
}
