package config

import (
	"strings"
	"testing"
)

func TestTCPApp(t *testing.T) {
	cfg, err := Parse("h.yaml", []byte(`
listen: ["127.0.0.1:8080"]
admin: { listen: "127.0.0.1:9900" }
apps:
  web: {}
  codehost:
    kind: tcp
    listen: ["0.0.0.0:2222", "127.0.0.1:2223"]
    targets: ["127.0.0.1:3222"]
    health: { send: "PING\r\n", expect: "+PONG" }
    drain_timeout: 2h
`))
	if err != nil {
		t.Fatal(err)
	}
	app := cfg.Apps.Get("codehost")
	if app.Kind != KindTCP || len(app.Listen) != 2 || app.Health.Expect != "+PONG" {
		t.Fatalf("tcp app: %+v", app)
	}
	var names []string
	for _, l := range cfg.Listeners() {
		names = append(names, l.Name+"="+l.Addr)
	}
	if got := strings.Join(names, " "); got != "gateway=127.0.0.1:8080 admin=127.0.0.1:9900 tcp.codehost=0.0.0.0:2222 tcp.codehost=127.0.0.1:2223" {
		t.Errorf("listeners: %s", got)
	}
	if got := cfg.Apps.Kinds(KindHTTP, KindWorker).Names(); len(got) != 1 || got[0] != "web" {
		t.Errorf("the gateway's apps: %v", got)
	}
}

// TestTCPAppErrors: each mistake in a tcp app is refused naming the key
// and its line.
func TestTCPAppErrors(t *testing.T) {
	const head = "listen: [\"127.0.0.1:8080\"]\nadmin: { listen: \"127.0.0.1:9900\" }\napps:\n"
	cases := []struct{ name, apps, want string }{
		{"no listen", "  ssh:\n    kind: tcp\n", `h.yaml:4: apps.ssh.listen: a tcp app needs at least one address`},
		{"bad listen", "  ssh:\n    kind: tcp\n    listen: [2222]\n", `h.yaml:6: apps.ssh.listen[0]: want host:port with a port from 1 to 65535, got "2222"`},
		{"port zero", "  ssh:\n    kind: tcp\n    listen: [\"127.0.0.1:0\"]\n", `h.yaml:6: apps.ssh.listen[0]: want host:port with a port`},
		{"port too big", "  ssh:\n    kind: tcp\n    listen: [\"127.0.0.1:70000\"]\n", `apps.ssh.listen[0]: want host:port with a port`},
		{"listen on http app", "  web:\n    listen: [\"127.0.0.1:2222\"]\n", `h.yaml:5: apps.web.listen: only a tcp app has its own listen addresses`},
		{"clash with gateway", "  ssh:\n    kind: tcp\n    listen: [\"0.0.0.0:8080\"]\n", `h.yaml:6: apps.ssh.listen[0]: 0.0.0.0:8080 clashes with listen[0] (127.0.0.1:8080)`},
		{"clash with admin", "  ssh:\n    kind: tcp\n    listen: [\"127.0.0.1:9900\"]\n", `h.yaml:6: apps.ssh.listen[0]: 127.0.0.1:9900 clashes with admin.listen`},
		{"clash between apps", "  a:\n    kind: tcp\n    listen: [\"127.0.0.1:2222\"]\n  b:\n    kind: tcp\n    listen: [\":2222\"]\n",
			`h.yaml:9: apps.b.listen[0]: :2222 clashes with apps.a.listen[0] (127.0.0.1:2222)`},
		{"target loops back", "  ssh:\n    kind: tcp\n    listen: [\"127.0.0.1:2222\"]\n    targets: [\"127.0.0.1:2222\"]\n",
			`h.yaml:7: apps.ssh.targets[0]: 127.0.0.1:2222 is handoff's own apps.ssh.listen[0]`},
		{"hosts", "  ssh:\n    kind: tcp\n    listen: [\"127.0.0.1:2222\"]\n    hosts: [example.com]\n", `h.yaml:7: apps.ssh.hosts: a tcp app has no hosts`},
		{"health path", "  ssh:\n    kind: tcp\n    listen: [\"127.0.0.1:2222\"]\n    health: { path: /healthz }\n", `h.yaml:7: apps.ssh.health.path: a tcp app has no health.path`},
		{"health path as the default", "  ssh:\n    kind: tcp\n    listen: [\"127.0.0.1:2222\"]\n    health: { path: / }\n", `h.yaml:7: apps.ssh.health.path: a tcp app has no health.path`},
		{"readonly", "  ssh:\n    kind: tcp\n    listen: [\"127.0.0.1:2222\"]\n    readonly: { banner: x }\n", `h.yaml:7: apps.ssh.readonly: a tcp app has no readonly`},
		{"maintenance", "  ssh:\n    kind: tcp\n    listen: [\"127.0.0.1:2222\"]\n    maintenance: { retry_after: 5s }\n", `h.yaml:7: apps.ssh.maintenance: a tcp app has no maintenance`},
		{"canary steps", "  ssh:\n    kind: tcp\n    listen: [\"127.0.0.1:2222\"]\n    canary: { steps: [10] }\n", `h.yaml:7: apps.ssh.canary.steps: a tcp app has no canary.steps`},
		{"send on http", "  web:\n    health: { expect: SSH- }\n", `h.yaml:5: apps.web.health: send and expect are a tcp app's health check`},
		{"expect too long", "  ssh:\n    kind: tcp\n    listen: [\"127.0.0.1:2222\"]\n    health: { expect: " + strings.Repeat("x", 300) + " }\n", `apps.ssh.health.expect: at most 256 bytes`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("h.yaml", []byte(head+c.apps))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant an error containing %q", err, c.want)
			}
		})
	}
}

// Port 0 asks the kernel for a free port: two such listeners never clash
// (handoff demo listens so, and so do the tests).
func TestPortZeroNeverClashes(t *testing.T) {
	yaml := "listen: [\"127.0.0.1:0\"]\nadmin: { listen: \"127.0.0.1:0\", token_file: t }\n"
	if _, err := Parse("h.yaml", []byte(yaml)); err != nil {
		t.Fatal(err)
	}
}
