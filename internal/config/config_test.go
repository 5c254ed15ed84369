package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseDefaultsAndApps(t *testing.T) {
	cfg, err := Parse("h.yaml", []byte(`
listen: ["127.0.0.1:9000"]
apps:
  web:
    hosts: [example.com]
    instances: 4
    bricks: 2
    drain_timeout: 5s
  api:
    targets: 127.0.0.1:7001
  mailin:
    kind: worker
    command: [bin/mailin]
    drain: { timeout: 3h }
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Apps.Names(); strings.Join(got, ",") != "web,api,mailin" {
		t.Fatalf("apps in file order: got %v", got)
	}
	web := cfg.Apps.Get("web")
	if web.DrainTimeout.D() != 5*time.Second || web.HoldMax.D() != 30*time.Second {
		t.Errorf("web durations: %v %v", web.DrainTimeout, web.HoldMax)
	}
	if web.BrickOf(0) != 0 || web.BrickOf(1) != 0 || web.BrickOf(2) != 1 || web.BrickOf(3) != 1 {
		t.Errorf("bricks of 4 instances in 2 bricks are wrong")
	}
	if api := cfg.Apps.Get("api"); len(api.Targets) != 1 || api.Targets[0] != "127.0.0.1:7001" {
		t.Errorf("a single target should read as a list of one: %v", api.Targets)
	}
	if w := cfg.Apps.Get("mailin"); w.Drain.Timeout.D() != 3*time.Hour || w.Drain.Signal != "SIGTERM" {
		t.Errorf("worker drain: %+v", w.Drain)
	}
	if web.ReadOnly.Banner == "" {
		t.Error("apps inherit the global banner")
	}
	if web.Health.RestartAfter.D() != 30*time.Second {
		t.Errorf("health.restart_after defaults to 30s, got %v", web.Health.RestartAfter)
	}
	never, err := Parse("h.yaml", []byte("apps:\n  web:\n    health: {restart_after: 0}\n"))
	if err != nil || never.Apps.Get("web").Health.RestartAfter != 0 {
		t.Errorf("health.restart_after: 0 (never): %v", err)
	}
}

func TestParseErrorsNameKeyAndLine(t *testing.T) {
	cases := []struct{ name, text, want string }{
		{"unknown key", "apps:\n  web:\n    instnces: 3\n", `h.yaml:3: apps.web.instnces: unknown key (did you mean "instances"?)`},
		{"bad duration", "apps:\n  web:\n    drain_timeout: soon\n", `h.yaml:3: apps.web.drain_timeout: want a duration`},
		{"bad int", "apps:\n  web:\n    instances: many\n", `h.yaml:3: apps.web.instances: want a whole number`},
		{"bad value", "apps:\n  web:\n    instances: 0\n", `h.yaml:3: apps.web.instances: must be at least 1`},
		{"bad kind", "apps:\n  web:\n    kind: cron\n", `h.yaml:3: apps.web.kind: want http, worker or tcp`},
		{"two defaults", "apps:\n  a: {}\n  b: {}\n", `h.yaml:3: apps.b.hosts: apps a and b both have no hosts`},
		{"bad addr", "listen: [8080]\n", `h.yaml:1: listen[0]: want host:port`},
		{"top unknown", "\nlisten: [\"127.0.0.1:1\"]\nsockett: x\n", `h.yaml:3: sockett: unknown key (did you mean "socket"?)`},
		{"worker without command", "apps:\n  w:\n    kind: worker\n", `h.yaml:2: apps.w.command: a worker needs a command`},
		{"duplicate", "apps:\n  a:\n    instances: 1\n    instances: 2\n", `h.yaml:4: apps.a.instances: key given twice`},
		{"yaml syntax", "apps: [\n", `h.yaml: `},
		{"bad signal", "apps:\n  a:\n    stop: {signal: TERM}\n", `h.yaml:3: apps.a.stop.signal: unknown signal "TERM"`},
		{"negative restart_after", "apps:\n  a:\n    health: {restart_after: -1s}\n", `h.yaml:3: apps.a.health.restart_after: must not be negative`},
		{"zero start_timeout", "apps:\n  a:\n    start_timeout: 0s\n", `h.yaml:3: apps.a.start_timeout: must be more than 0`},
		{"zero release_timeout", "apps:\n  a:\n    release_timeout: 0s\n", `h.yaml:3: apps.a.release_timeout: must be more than 0`},
		{"null string", "readonly:\n  banner: ~\n", `h.yaml:2: readonly.banner: has no value (YAML's null, ~)`},
		{"empty string", "state:\n", `h.yaml:1: state: has no value (YAML's null)`},
		{"env name with =", "apps:\n  a:\n    env: { \"A=B\": x }\n", `h.yaml:3: apps.a.env: "A=B" is not an environment variable's name`},
		{"env PORT", "apps:\n  a:\n    env: { PORT: \"80\" }\n", `apps.a.env.PORT: is set by handoff for each instance`},
		{"zero stop timeout", "apps:\n  a:\n    stop: { timeout: 0s }\n", `h.yaml:3: apps.a.stop.timeout: must be more than 0`},
		{"zero drain timeout", "apps:\n  a:\n    drain:\n      timeout: 0s\n", `h.yaml:4: apps.a.drain.timeout: must be more than 0`},
		{"zero header timeout", "gateway:\n  header_timeout: 0s\n", `h.yaml:2: gateway.header_timeout: must be more than 0`},
		{"zero body timeout", "gateway:\n  body_timeout: 0s\n", `h.yaml:2: gateway.body_timeout: must be more than 0`},
		{"zero idle timeout", "gateway:\n  idle_timeout: 0s\n", `h.yaml:2: gateway.idle_timeout: must be more than 0`},
		{"zero response timeout", "gateway:\n  response_timeout: 0s\n", `h.yaml:2: gateway.response_timeout: must be more than 0`},
		{"zero max header bytes", "gateway:\n  max_header_bytes: 0\n", `h.yaml:2: gateway.max_header_bytes: must be more than 0`},
		{"zero hold bytes", "hold:\n  max_bytes: 0\n", `h.yaml:2: hold.max_bytes: must be more than 0`},
		{"negative retries", "database:\n  backfill:\n    retries: -5\n", `h.yaml:3: database.backfill.retries: must not be negative`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("h.yaml", []byte(c.text))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestByteSize(t *testing.T) {
	for in, want := range map[string]ByteSize{"512": 512, "64KiB": 64 << 10, "10MB": 10e6, "1G": 1 << 30} {
		var b ByteSize
		if err := b.parse(in); err != nil || b != want {
			t.Errorf("%s: got %d, %v", in, b, err)
		}
	}
}

func TestDatabaseBackfill(t *testing.T) {
	cfg, err := Parse("h.yaml", []byte("database:\n  url: postgres://x/y\n  backfill: { rate: 2000, duty: 80 }\n"))
	if err != nil {
		t.Fatal(err)
	}
	b := cfg.Database.Backfill
	if b.Rate != 2000 || b.Duty != 80 || b.Batch != 1000 || b.BatchTime.D() != 40*time.Millisecond || b.Workers != 0 || b.Throttle != "" {
		t.Errorf("backfill settings with defaults: %+v", b)
	}
	if _, err := Parse("h.yaml", []byte("database:\n  backfill: { rows: 5 }\n")); err == nil || !strings.Contains(err.Error(), "h.yaml:2: database.backfill.rows: unknown key") {
		t.Errorf("unknown backfill key: %v", err)
	}
	for yaml, want := range map[string]string{
		"{ throttle: fast }": `database.backfill.throttle: want adaptive, fixed or off, got "fast"`,
		"{ duty: 101 }":      "database.backfill.duty: want a percentage from 1 to 100, got 101",
	} {
		if _, err := Parse("h.yaml", []byte("database:\n  backfill: "+yaml+"\n")); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("backfill %s: %v, want %q", yaml, err, want)
		}
	}
}

// A database.url of a scheme handoff's migrations do not run on is an
// error naming the key and line, and not its password (it was taken for a
// SQLite path, and the whole URL echoed in every error after).
func TestDatabaseURLSchemeRefusedWithoutItsPassword(t *testing.T) {
	for _, u := range []string{"mysql://app:hunter2@db.internal:3306/app", "pgsql://app:hunter2@db/app", "app:hunter2@db://x"} {
		_, err := Parse("h.yaml", []byte("listen: [127.0.0.1:8080]\ndatabase:\n  url: \""+u+"\"\napps:\n  web: { targets: [127.0.0.1:9000] }\n"))
		if err == nil || !strings.Contains(err.Error(), "h.yaml:3") || !strings.Contains(err.Error(), "database.url") || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: want an error at database.url, line 3, without the password: %v", u, err)
		}
	}
	for _, u := range []string{"postgres://app:pw@db/app", "postgresql://db/app", "sqlite:///var/lib/app.db", "file:app.db", "app.db"} {
		if _, err := Parse("h.yaml", []byte("listen: [127.0.0.1:8080]\ndatabase:\n  url: \""+u+"\"\napps:\n  web: { targets: [127.0.0.1:9000] }\n")); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}

// A config is one YAML document: a second one (two files joined, a
// template's "---") is an error at its line, not dropped with its keys
// and their errors. An empty document after a trailing "---" is nothing.
func TestSecondYAMLDocumentRefused(t *testing.T) {
	base := "listen: [127.0.0.1:8080]\napps:\n  web: { targets: [127.0.0.1:9000] }\n"
	_, err := Parse("h.yaml", []byte(base+"---\nadmin: { listen: 127.0.0.1:9900 }\nhold: { max_requests: 0 }\n"))
	if err == nil || !strings.Contains(err.Error(), "h.yaml:5") || !strings.Contains(err.Error(), "second YAML document") {
		t.Fatalf("want the second document refused at line 5: %v", err)
	}
	for _, text := range []string{base + "---\n", "---\n" + base, base + "---\n...\n"} {
		if _, err := Parse("h.yaml", []byte(text)); err != nil {
			t.Errorf("%q: %v", text, err)
		}
	}
}

// A duration given as a number of seconds to the API is checked as one
// given as a string: not negative, not so large it wraps round.
func TestDurationSecondsBounded(t *testing.T) {
	for _, in := range []string{"-5", "1e300", "9.3e9"} {
		var d Duration
		if err := json.Unmarshal([]byte(in), &d); err == nil {
			t.Errorf("%s seconds taken as %s", in, d)
		}
	}
	var d Duration
	if err := json.Unmarshal([]byte("90"), &d); err != nil || d.D() != 90*time.Second {
		t.Errorf("90 seconds: %s %v", d, err)
	}
}
