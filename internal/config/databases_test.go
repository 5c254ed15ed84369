package config

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDatabasesInFileOrderWithDefaults(t *testing.T) {
	cfg, err := Parse("/etc/handoff/h.yaml", []byte(`
databases:
  main:
    kind: postgres
    listen: 127.0.0.1:6432
    primary: 127.0.0.1:5432
    credentials_file: ./db.credentials
  catalogue:
    kind: mysql
    listen: "[::1]:3307"
    primary: 127.0.0.1:3306
    hold_max: 5s
  remote:
    kind: postgres
    listen: localhost:6433
    primary: db.internal:5432
`))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, db := range cfg.Databases {
		names = append(names, db.Name)
	}
	if strings.Join(names, ",") != "main,catalogue,remote" {
		t.Fatalf("databases in file order: %v", names)
	}
	main := cfg.Databases.Get("main")
	if main.CredentialsFile != filepath.Join("/etc/handoff", "db.credentials") {
		t.Errorf("credentials_file relative to the config file: %s", main.CredentialsFile)
	}
	if main.TLS != "disable" || cfg.Databases.Get("remote").TLS != "verify-full" {
		t.Errorf("tls defaults: loopback %q, remote %q", main.TLS, cfg.Databases.Get("remote").TLS)
	}
	if main.MaxConnections != 1000 || main.HoldMax.D() != 30*time.Second || main.IdleTimeout.D() != time.Hour ||
		main.ConnectTimeout.D() != 5*time.Second || main.StartupTimeout.D() != 30*time.Second {
		t.Errorf("defaults: %+v", main)
	}
	if cfg.Databases.Get("catalogue").HoldMax.D() != 5*time.Second {
		t.Errorf("hold_max not read")
	}
}

func TestDatabasesErrorsNameKeyAndLine(t *testing.T) {
	for _, c := range []struct{ yaml, want string }{
		{"databases:\n  main:\n    listen: 127.0.0.1:6432\n    primary: 127.0.0.1:5432\n", "h.yaml:2: databases.main.kind: say which server this is"},
		{"databases:\n  main:\n    kind: oracle\n    listen: 127.0.0.1:6432\n    primary: 127.0.0.1:5432\n", "h.yaml:3: databases.main.kind: want postgres or mysql"},
		{"databases:\n  main:\n    kind: postgres\n    listen: 0.0.0.0:6432\n    primary: 127.0.0.1:5432\n", "h.yaml:4: databases.main.listen: must be a loopback address"},
		{"databases:\n  main:\n    kind: postgres\n    listen: 127.0.0.1:6432\n", "h.yaml:2: databases.main.primary: give the database server's host:port"},
		{"databases:\n  main:\n    kind: postgres\n    listen: 127.0.0.1:6432\n    primary: nowhere\n", "h.yaml:5: databases.main.primary: want host:port"},
		{"databases:\n  main:\n    kind: postgres\n    listen: 127.0.0.1:6432\n    primary: 127.0.0.1:5432\n    tls: maybe\n", "h.yaml:6: databases.main.tls: want disable, require or verify-full"},
		{"databases:\n  main:\n    kind: mysql\n    listen: 127.0.0.1:6432\n    primary: db.internal:3306\n    tls: require\n    tls_ca_file: ca.pem\n", "h.yaml:7: databases.main.tls_ca_file: is used with tls: verify-full only"},
		{"databases:\n  main:\n    kind: postgres\n    listen: 127.0.0.1:6432\n    primary: 127.0.0.1:5432\n    hold_mx: 5s\n", `h.yaml:6: databases.main.hold_mx: unknown key (did you mean "hold_max"?)`},
		{"databases:\n  main:\n    kind: postgres\n    listen: 127.0.0.1:6432\n    primary: 127.0.0.1:5432\n    max_connections: 0\n", "h.yaml:6: databases.main.max_connections: must be at least 1"},
		{"databases:\n  a:\n    kind: postgres\n    listen: 127.0.0.1:6432\n    primary: 127.0.0.1:5432\n  b:\n    kind: postgres\n    listen: 127.0.0.1:6432\n    primary: 127.0.0.1:5433\n", "databases.b.listen: 127.0.0.1:6432 is also the listen address of databases.a"},
		{"databases:\n  Main:\n    kind: postgres\n    listen: 127.0.0.1:6432\n    primary: 127.0.0.1:5432\n", "h.yaml:2: databases.Main: a database endpoint's name is lower-case"},
	} {
		_, err := Parse("h.yaml", []byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant %s", c.yaml, err, c.want)
		}
	}
}
