// Package testdb gives tests a fresh, real database: a new Postgres database
// per test (dropped afterwards) or a SQLite file in the test's temp dir.
package testdb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultPostgres is used when HANDOFF_TEST_POSTGRES is not set.
const DefaultPostgres = "postgres://postgres@127.0.0.1:5432/test"

// Postgres creates a fresh database and returns its URL. Without
// HANDOFF_TEST_POSTGRES and without a server at the default address the test
// is skipped; with the variable set (as CI sets it), a missing server fails it.
func Postgres(t testing.TB) string {
	t.Helper()
	base, set := os.LookupEnv("HANDOFF_TEST_POSTGRES")
	if !set {
		base = DefaultPostgres
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		if set {
			t.Fatalf("HANDOFF_TEST_POSTGRES=%s: cannot connect: %v", base, err)
		}
		t.Skipf("no Postgres at %s (%v); set HANDOFF_TEST_POSTGRES=postgres://user@host:port/db to run this test", base, err)
	}
	name := "handoff_test_" + randomHex(6)
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		admin.Close(ctx)
		t.Fatalf("create test database: %v", err)
	}
	admin.Close(ctx)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Logf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop test database %s: %v", name, err)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("HANDOFF_TEST_POSTGRES: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// SQLite returns the path of a new SQLite database file in the test's temp dir.
func SQLite(t testing.TB) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "test.db")
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
