package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"time"

	_ "modernc.org/sqlite" // the pure-Go SQLite driver keeps the binary static
)

type sqlStore struct {
	db *sql.DB
	// ph renders the n-th (1-based) query placeholder of the dialect.
	ph func(n int) string
}

var _ Store = (*sqlStore)(nil)

// opTimeout bounds a store operation whose caller set no deadline: a state
// database that stops answering (a dropped link, a hung server) must make
// `handoff status` or a deploy step fail saying so, not hang. It is longer
// than SQLite's busy timeout (10 s), so that a second process holding the
// file's lock during an upgrade is waited for, not failed.
var opTimeout = 15 * time.Second

// bound gives ctx opTimeout when it has no deadline of its own.
func bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, opTimeout)
}

func openSQLite(ctx context.Context, path string) (Store, error) {
	// A zero-length file is what a crash or a full disk can leave of a
	// store: taken for a new one, it would know none of the instances that
	// run, and a deploy would start a second set beside them. It is refused.
	if fi, err := os.Stat(path); err == nil && fi.Size() == 0 {
		return nil, fmt.Errorf("open state %s: the file is empty (0 bytes), not a store: restore it from a backup, or remove it to start afresh (instances it knew of keep running, unknown to handoff)", path)
	}
	q := url.Values{}
	for _, p := range []string{"busy_timeout(10000)", "journal_mode(WAL)", "synchronous(FULL)", "foreign_keys(ON)"} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	// One connection serializes writers inside this process; WAL and the busy
	// timeout let a second handoff process (during an upgrade) share the file.
	db.SetMaxOpenConns(1)
	s := &sqlStore{db: db, ph: func(int) string { return "?" }}
	schema := []string{
		`CREATE TABLE IF NOT EXISTS handoff_docs (kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, updated TEXT NOT NULL, PRIMARY KEY (kind, key))`,
		`CREATE TABLE IF NOT EXISTS handoff_events (id INTEGER PRIMARY KEY AUTOINCREMENT, time TEXT NOT NULL, app TEXT NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL, message TEXT NOT NULL)`,
	}
	if err := s.migrate(ctx, schema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open state %s: %w", path, err)
	}
	return s, nil
}

// migrate runs the schema statements in one transaction.
func (s *sqlStore) migrate(ctx context.Context, schema []string) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("create schema: %w", err)
	}
	defer tx.Rollback()
	for _, stmt := range schema {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
	}
	return tx.Commit()
}

func (s *sqlStore) q(query string) string {
	out, n := make([]byte, 0, len(query)+8), 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			out = append(out, s.ph(n)...)
			continue
		}
		out = append(out, query[i])
	}
	return string(out)
}

func (s *sqlStore) Get(ctx context.Context, kind, key string, v any) (bool, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	var body string
	err := s.db.QueryRowContext(ctx, s.q(`SELECT body FROM handoff_docs WHERE kind = ? AND key = ?`), kind, key).Scan(&body)
	if err == sql.ErrNoRows {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("get %s/%s: %w", kind, key, err)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		return false, fmt.Errorf("decode %s/%s: %w", kind, key, err)
	}
	return true, nil
}

func (s *sqlStore) Put(ctx context.Context, kind, key string, v any) error {
	return s.PutAll(ctx, Put{Kind: kind, Key: key, Value: v})
}

func (s *sqlStore) PutAll(ctx context.Context, docs ...Put) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("put: %w", err)
	}
	defer tx.Rollback()
	now := time.Now().UTC().Format(time.RFC3339Nano)
	for _, d := range docs {
		body, err := json.Marshal(d.Value)
		if err != nil {
			return fmt.Errorf("encode %s/%s: %w", d.Kind, d.Key, err)
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO handoff_docs (kind, key, body, updated) VALUES (?, ?, ?, ?)
			ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body, updated = excluded.updated`),
			d.Kind, d.Key, string(body), now)
		if err != nil {
			return fmt.Errorf("put %s/%s: %w", d.Kind, d.Key, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("put: %w", err)
	}
	return nil
}

func (s *sqlStore) Delete(ctx context.Context, kind, key string) error {
	ctx, cancel := bound(ctx)
	defer cancel()
	if _, err := s.db.ExecContext(ctx, s.q(`DELETE FROM handoff_docs WHERE kind = ? AND key = ?`), kind, key); err != nil {
		return fmt.Errorf("delete %s/%s: %w", kind, key, err)
	}
	return nil
}

func (s *sqlStore) List(ctx context.Context, kind string) ([]Doc, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT key, body FROM handoff_docs WHERE kind = ? ORDER BY key`), kind)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	defer rows.Close()
	var docs []Doc
	for rows.Next() {
		var key, body string
		if err := rows.Scan(&key, &body); err != nil {
			return nil, fmt.Errorf("list %s: %w", kind, err)
		}
		docs = append(docs, Doc{Key: key, Body: json.RawMessage(body)})
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", kind, err)
	}
	return docs, nil
}

func (s *sqlStore) Append(ctx context.Context, e Event) (Event, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e.Time = e.Time.UTC()
	err := s.db.QueryRowContext(ctx, s.q(`INSERT INTO handoff_events (time, app, kind, actor, message) VALUES (?, ?, ?, ?, ?) RETURNING id`),
		e.Time.Format(time.RFC3339Nano), e.App, e.Kind, e.Actor, e.Message).Scan(&e.ID)
	if err != nil {
		return e, fmt.Errorf("append event: %w", err)
	}
	return e, nil
}

func (s *sqlStore) Events(ctx context.Context, after int64, limit int) ([]Event, error) {
	ctx, cancel := bound(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, time, app, kind, actor, message FROM handoff_events WHERE id > ? ORDER BY id LIMIT ?`), after, limit)
	if err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	defer rows.Close()
	var events []Event
	for rows.Next() {
		var e Event
		var ts string
		if err := rows.Scan(&e.ID, &ts, &e.App, &e.Kind, &e.Actor, &e.Message); err != nil {
			return nil, fmt.Errorf("read events: %w", err)
		}
		e.Time, _ = time.Parse(time.RFC3339Nano, ts)
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read events: %w", err)
	}
	return events, nil
}

func (s *sqlStore) Close() error { return s.db.Close() }
