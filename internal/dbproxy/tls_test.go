package dbproxy

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/testdb"
	"github.com/jackc/pgx/v5"
)

// TestMySQLTLSToServer: the endpoint talks TLS to MariaDB servers that
// refuse plaintext (require_secure_transport), checking their
// certificates against the CA (verify-full). A client that talks plaintext
// to the endpoint logs in with its password through it, and its session
// moves, with its prepared statement, to a second TLS server, logged in
// there by the endpoint inside TLS. A server that offers no TLS, or a
// certificate the endpoint does not trust, fails the client's connect with
// an error that says so.
func TestMySQLTLSToServer(t *testing.T) {
	first := testdb.NewMariaDB(t)
	second := testdb.NewMariaDB(t)
	for _, m := range []*testdb.MariaDB{first, second} {
		m.Exec(t, "", "CREATE DATABASE app", "CREATE USER app IDENTIFIED BY 'secret'", "GRANT ALL ON app.* TO app",
			"CREATE TABLE app.t (id INT PRIMARY KEY, server INT) ENGINE=InnoDB")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	password := func(user string) (string, error) { return "secret", nil }
	connect := func(ep string) error { return openMyAs(t, ep, "").PingContext(ctx) }

	// Before TLS is on: the endpoint that wants it refuses to go on.
	trusting, err := TLSConfig("verify-full", "")
	if err != nil {
		t.Fatal(err)
	}
	trusting.RootCAs = testdb.CAPool(t)
	_, through := myEndpoint(t, first.Addr(), Options{TLS: trusting, Password: password})
	if err := connect(through); err == nil || !strings.Contains(err.Error(), "does not offer TLS") {
		t.Fatalf("a server without TLS: %v, want the endpoint's refusal", err)
	}

	files := first.ServeTLS(t)
	second.ServeTLS(t)
	if err := connect(first.Addr()); err == nil {
		t.Fatal("the server takes a plaintext client: the test proves nothing")
	}
	// The system's roots do not know the test CA.
	untrusting, err := TLSConfig("verify-full", "")
	if err != nil {
		t.Fatal(err)
	}
	_, through = myEndpoint(t, first.Addr(), Options{TLS: untrusting, Password: password})
	if err := connect(through); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an untrusted certificate: %v, want a certificate error", err)
	}

	verify, err := TLSConfig("verify-full", files.CA) // as the config's tls_ca_file gives it
	if err != nil {
		t.Fatal(err)
	}
	e, through := myEndpoint(t, first.Addr(), Options{TLS: verify, Password: password})
	pool := openMyAs(t, through, "")
	conn, err := pool.Conn(ctx)
	if err != nil {
		t.Fatalf("connect through the endpoint: %v", err)
	}
	defer conn.Close()
	encrypted := func(want int) {
		t.Helper()
		var name, version string
		var server int
		if err := conn.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Ssl_version'").Scan(&name, &version); err != nil {
			t.Fatal(err)
		}
		if err := conn.QueryRowContext(ctx, "SELECT @@server_id").Scan(&server); err != nil {
			t.Fatal(err)
		}
		if version == "" || server != want {
			t.Fatalf("session on server %d (want %d), TLS version %q", server, want, version)
		}
		t.Logf("server %d, %s", server, version)
	}
	encrypted(first.ServerID)
	insert, err := conn.PrepareContext(ctx, "INSERT INTO t VALUES (?, @@server_id)")
	if err != nil {
		t.Fatal(err)
	}
	defer insert.Close()
	if _, err := insert.ExecContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if err := e.Repoint(second.Addr()); err != nil {
		t.Fatal(err)
	}
	if _, err := insert.ExecContext(ctx, 2); err != nil {
		t.Fatalf("the prepared statement after the move: %v", err)
	}
	encrypted(second.ServerID)
	if st := e.Stats(); st.Moved != 1 || st.MoveFailures != 0 {
		t.Fatalf("stats %+v, want one session moved", st)
	}
	var server int
	if err := openMyAs(t, second.Addr(), "tls=skip-verify&").QueryRowContext(ctx, "SELECT server FROM app.t WHERE id = 2").Scan(&server); err != nil || server != second.ServerID {
		t.Fatalf("the row written after the move: server %d, %v", server, err)
	}
}

// openMyAs opens a one-connection pool to database app at addr as user
// app, with the DSN parameters params ("" or "name=value&...&").
func openMyAs(t *testing.T, addr, params string) *sql.DB {
	t.Helper()
	d, err := sql.Open("mysql", fmt.Sprintf("app:secret@tcp(%s)/app?%stimeout=5s", addr, params))
	if err != nil {
		t.Fatal(err)
	}
	d.SetMaxOpenConns(1)
	t.Cleanup(func() { d.Close() })
	return d
}

// TestPostgresTLSToServer: the endpoint talks TLS to Postgres servers,
// checking their certificates (verify-full); the server sees the client's
// session encrypted (pg_stat_ssl) before and after it moves to a second
// server.
func TestPostgresTLSToServer(t *testing.T) {
	first, second := testdb.NewPG(t), testdb.NewPG(t)
	files := first.ServeTLS(t)
	second.ServeTLS(t)
	cfg, err := TLSConfig("verify-full", files.CA)
	if err != nil {
		t.Fatal(err)
	}
	e, through := pgEndpoint(t, first.URL("postgres"), Options{TLS: cfg})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, through)
	if err != nil {
		t.Fatalf("connect through the endpoint: %v", err)
	}
	defer conn.Close(ctx)
	encrypted := func(want int) {
		t.Helper()
		var ssl bool
		var version string
		var port int
		if err := conn.QueryRow(ctx, "SELECT ssl, coalesce(version, ''), inet_server_port() FROM pg_stat_ssl WHERE pid = pg_backend_pid()").Scan(&ssl, &version, &port); err != nil {
			t.Fatal(err)
		}
		if !ssl || port != want {
			t.Fatalf("session on port %d (want %d), ssl %v", port, want, ssl)
		}
		t.Logf("port %d, %s", port, version)
	}
	encrypted(first.Port)
	if err := e.Repoint(second.Addr()); err != nil {
		t.Fatal(err)
	}
	encrypted(second.Port)
	if st := e.Stats(); st.Moved != 1 || st.MoveFailures != 0 {
		t.Fatalf("stats %+v, want one session moved", st)
	}

	// The system's roots do not know the test CA.
	untrusting, err := TLSConfig("verify-full", "")
	if err != nil {
		t.Fatal(err)
	}
	_, through = pgEndpoint(t, first.URL("postgres"), Options{TLS: untrusting})
	if _, err := pgx.Connect(ctx, through); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("an untrusted certificate: %v, want a certificate error", err)
	}
}
