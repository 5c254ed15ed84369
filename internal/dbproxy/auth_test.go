package dbproxy

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/handoff-dev/handoff/internal/testdb"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

func credentials(t *testing.T, lines string) func(string) (string, error) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "credentials")
	if err := os.WriteFile(path, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	pw, err := CredentialsFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return pw
}

// TestPGPasswordLogin: a server that wants SCRAM passwords. The client's
// own login is relayed through the endpoint untouched (a wrong password
// gets the server's own refusal); a moved session logs in with the
// endpoint's credentials file.
func TestPGPasswordLogin(t *testing.T) {
	pg := testdb.NewPG(t)
	pg.Exec(t, "postgres", `CREATE ROLE app LOGIN PASSWORD 'app-pw'`)
	pg.Exec(t, "postgres", `CREATE DATABASE appdb OWNER app`)
	hba := filepath.Join(pg.Dir, "pg_hba.conf")
	old, err := os.ReadFile(hba)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hba, append([]byte("host all app 127.0.0.1/32 scram-sha-256\n"), old...), 0o600); err != nil {
		t.Fatal(err)
	}
	pg.Exec(t, "postgres", "SELECT pg_reload_conf()")
	second := newRelay(t, pg.Addr())
	e, through := pgEndpoint(t, fmt.Sprintf("postgres://app:app-pw@%s/appdb", pg.Addr()), Options{
		Password: credentials(t, "app:app-pw\n")})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	bad, _ := pgx.ParseConfig(through)
	bad.Password = "wrong"
	_, err = pgx.ConnectConfig(ctx, bad)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" {
		t.Fatalf("wrong password: %v, want the server's 28P01", err)
	}
	conn, err := pgx.Connect(ctx, through)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if err := e.Repoint(second.addr); err != nil {
		t.Fatal(err)
	}
	var user string
	if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil || user != "app" {
		t.Fatalf("after the move: %q, %v", user, err)
	}
	if second.conns.Load() != 1 || e.Stats().Moved != 1 {
		t.Fatalf("session did not move: relay %d, %+v", second.conns.Load(), e.Stats())
	}
}

// TestMySQLPasswordLogin: the same for MariaDB's mysql_native_password.
func TestMySQLPasswordLogin(t *testing.T) {
	addr, db := mariaDB(t)
	user := "h_" + db[len(db)-8:]
	admin := openMy(t, addr, "")
	for _, q := range []string{
		fmt.Sprintf("CREATE USER '%s'@'127.0.0.1' IDENTIFIED BY 'my-pw'", user),
		fmt.Sprintf("GRANT ALL ON %s.* TO '%s'@'127.0.0.1'", db, user),
	} {
		if _, err := admin.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { admin.Exec(fmt.Sprintf("DROP USER '%s'@'127.0.0.1'", user)) })
	second := newRelay(t, addr)
	e, through := myEndpoint(t, addr, Options{Password: credentials(t, user+":my-pw\n")})
	bad, _ := sql.Open("mysql", fmt.Sprintf("%s:wrong@tcp(%s)/%s", user, through, db))
	defer bad.Close()
	err := bad.Ping()
	var myErr *mysql.MySQLError
	if !errors.As(err, &myErr) || myErr.Number != 1045 {
		t.Fatalf("wrong password: %v, want the server's 1045", err)
	}
	pool, err := sql.Open("mysql", fmt.Sprintf("%s:my-pw@tcp(%s)/%s", user, through, db))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	pool.SetMaxOpenConns(1)
	if _, err := pool.Exec("CREATE TABLE t (x INT)"); err != nil {
		t.Fatal(err)
	}
	if err := e.Repoint(second.addr); err != nil {
		t.Fatal(err)
	}
	var got string
	if err := pool.QueryRow("SELECT CONCAT(CURRENT_USER(), ' ', DATABASE())").Scan(&got); err != nil {
		t.Fatalf("after the move: %v", err)
	}
	if want := user + "@127.0.0.1 " + db; got != want {
		t.Fatalf("after the move: %q, want %q", got, want)
	}
	if second.conns.Load() != 1 || e.Stats().Moved != 1 {
		t.Fatalf("session did not move: relay %d, %+v", second.conns.Load(), e.Stats())
	}
}
