package server

import (
	"context"
	"database/sql"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	_ "github.com/go-sql-driver/mysql"
	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// TestProbeRole asks the real servers their role as db status does: the
// test Postgres is a primary; MariaDB is a primary until read_only is on
// (a temp server, so the shared one is left alone).
func TestProbeRole(t *testing.T) {
	u, err := url.Parse(testdb.Postgres(t))
	if err != nil {
		t.Fatal(err)
	}
	pg := &dbEndpoint{cfg: &config.DatabaseEndpoint{Name: "pg", Kind: config.DatabasePostgres, User: u.User.Username(), TLS: "disable"}}
	if role, err := probeRole(context.Background(), pg, u.Host); err != nil || role != "primary" {
		t.Fatalf("postgres: %q, %v", role, err)
	}
	creds := filepath.Join(t.TempDir(), "creds")
	os.WriteFile(creds, []byte("someone:pw\n"), 0o600)
	pg.cfg.CredentialsFile = creds
	if _, err := probeRole(context.Background(), pg, u.Host); err == nil {
		t.Fatalf("a user without a line in the credentials file was not refused")
	}

	m := testdb.NewMariaDB(t)
	my := &dbEndpoint{cfg: &config.DatabaseEndpoint{Name: "my", Kind: config.DatabaseMySQL, User: "root", TLS: "disable"}}
	if role, err := probeRole(context.Background(), my, m.Addr()); err != nil || role != "primary" {
		t.Fatalf("mariadb: %q, %v", role, err)
	}
	db, err := sql.Open("mysql", m.DSN(""))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec("SET GLOBAL read_only = 1"); err != nil {
		t.Fatal(err)
	}
	if role, err := probeRole(context.Background(), my, m.Addr()); err != nil || role != "read-only" {
		t.Fatalf("mariadb read_only: %q, %v", role, err)
	}
}
