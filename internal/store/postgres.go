package store

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"

	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

// openPostgres opens a store in a Postgres database, for several handoff
// nodes that share one state. The SQL is SQLite's but for placeholders.
func openPostgres(ctx context.Context, dsn string) (Store, error) {
	db, err := sql.Open("pgx", dsn)
	if err != nil {
		return nil, fmt.Errorf("open state: %w", err)
	}
	s := &sqlStore{db: db, ph: func(n int) string { return "$" + strconv.Itoa(n) }}
	schema := []string{
		// IF NOT EXISTS alone races with another node creating the same
		// table; the advisory lock (the one dialect.EnsureTables takes)
		// makes concurrent creators wait for each other.
		`SELECT pg_advisory_xact_lock(hashtext('handoff: bookkeeping tables'))`,
		`CREATE TABLE IF NOT EXISTS handoff_docs (kind text NOT NULL, key text NOT NULL, body text NOT NULL, updated text NOT NULL, PRIMARY KEY (kind, key))`,
		`CREATE TABLE IF NOT EXISTS handoff_events (id bigserial PRIMARY KEY, time text NOT NULL, app text NOT NULL, kind text NOT NULL, actor text NOT NULL, message text NOT NULL)`,
	}
	if err := s.migrate(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open state: %w", err)
	}
	return s, nil
}
