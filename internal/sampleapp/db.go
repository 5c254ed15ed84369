package sampleapp

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // "pgx"
	_ "modernc.org/sqlite"             // "sqlite"
)

// The sample app's table, as its releases see it. Schema 1 (release v1)
// keeps each title twice, in title and legacy_title. Schema 2 (release v2)
// searches by title_lower, which a migration adds (expand), fills
// (backfill) and, once no v1 runs, makes legacy_title unneeded (contract):
//
//	CREATE TABLE items (id INTEGER PRIMARY KEY, title TEXT NOT NULL, legacy_title TEXT)
//	-- handoff:expand   ALTER TABLE items ADD COLUMN title_lower TEXT
//	-- handoff:backfill UPDATE items SET title_lower = lower(title) WHERE id >= :lo AND id < :hi AND title_lower IS NULL
//	-- handoff:contract ALTER TABLE items DROP COLUMN legacy_title
type store struct {
	db     *sql.DB
	schema int
}

// openStore opens the app's database: a postgres:// URL, or a SQLite file.
func openStore(url string, schema int) (*store, error) {
	driver, dsn := "sqlite", "file:"+strings.TrimPrefix(url, "sqlite://")+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)"
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		driver, dsn = "pgx", url
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if driver == "sqlite" {
		db.SetMaxOpenConns(4)
	}
	return &store{db: db, schema: schema}, nil
}

func (s *store) add(ctx context.Context, name string) (Item, error) {
	q := `INSERT INTO items (title, legacy_title) VALUES ($1, $1) RETURNING id`
	if s.schema >= 2 {
		q = `INSERT INTO items (title, title_lower) VALUES ($1, lower($1)) RETURNING id`
	}
	it := Item{Name: name}
	if err := s.db.QueryRowContext(ctx, q, name).Scan(&it.ID); err != nil {
		return it, fmt.Errorf("add item: %w", err)
	}
	return it, nil
}

// recent lists the newest items; schema 2 reads the new column, so a
// missing backfill would show.
func (s *store) recent(ctx context.Context, limit int) ([]Item, error) {
	q := `SELECT id, title FROM items ORDER BY id DESC LIMIT $1`
	if s.schema >= 2 {
		q = `SELECT id, title_lower FROM items ORDER BY id DESC LIMIT $1`
	}
	rows, err := s.db.QueryContext(ctx, q, limit)
	if err != nil {
		return nil, fmt.Errorf("list items: %w", err)
	}
	defer rows.Close()
	out := []Item{}
	for rows.Next() {
		var it Item
		var name sql.NullString
		if err := rows.Scan(&it.ID, &name); err != nil {
			return nil, fmt.Errorf("list items: %w", err)
		}
		it.Name = name.String
		out = append(out, it)
	}
	return out, rows.Err()
}

func (s *store) close() error { return s.db.Close() }
