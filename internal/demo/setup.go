package demo

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/server"

	_ "modernc.org/sqlite" // the sample app's database
)

// migration is what release v2 needs: it reads title_lower, which the
// expand adds and the backfill fills; the contract drops legacy_title,
// which only v1 writes — so it may only run once no v1 is left, the old
// worker included.
const migration = `-- handoff:expand
ALTER TABLE items ADD COLUMN title_lower TEXT;

-- handoff:backfill table=items key=id batch=2000
UPDATE items SET title_lower = lower(title) WHERE id >= :lo AND id < :hi AND title_lower IS NULL;

-- handoff:contract
ALTER TABLE items DROP COLUMN legacy_title;
`

// setup lays out the releases and the database.
func (d *demo) setup() error {
	db := filepath.Join(d.dir, "app.db")
	for v, schema := range map[string]int{"v1": 1, "v2": 2, "v3": 2} {
		rel := filepath.Join(d.dir, "releases", v)
		if err := os.MkdirAll(filepath.Join(rel, "bin"), 0o755); err != nil {
			return err
		}
		app := fmt.Sprintf("#!/bin/sh\nexec %q sampleapp --db %q --schema %d\n", d.exe, db, schema)
		worker := fmt.Sprintf("#!/bin/sh\nexec %q sampleapp --worker --job 4s --job-log %q\n", d.exe, filepath.Join(d.dir, "jobs.log"))
		for name, text := range map[string]string{"app": app, "worker": worker} {
			if err := os.WriteFile(filepath.Join(rel, "bin", name), []byte(text), 0o755); err != nil {
				return err
			}
		}
	}
	for _, v := range []string{"v2", "v3"} { // v3 is v2 and a little more: it keeps the migration
		mig := filepath.Join(d.dir, "releases", v, "migrations")
		if err := os.MkdirAll(mig, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(mig, "0001_title_lower.sql"), []byte(migration), 0o644); err != nil {
			return err
		}
	}
	return seed(db, d.opts.Rows)
}

// seed creates the items table with rows rows, as release v1 wrote them.
func seed(path string, rows int) error {
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=journal_mode(WAL)")
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = db.Exec(`CREATE TABLE items (id INTEGER PRIMARY KEY, title TEXT NOT NULL, legacy_title TEXT);
		WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
		INSERT INTO items (title, legacy_title) SELECT 'Catalogue Entry ' || i, 'Catalogue Entry ' || i FROM n`, rows)
	if err != nil {
		return fmt.Errorf("demo: seed the database: %w", err)
	}
	return nil
}

// startServer runs handoff serve in this process, with the admin listener
// (the dashboard) on a free local port.
func (d *demo) startServer(ctx context.Context) (<-chan struct{}, error) {
	text := fmt.Sprintf(`listen: ["127.0.0.1:0"]
socket: %[1]s/handoff.sock
state: %[1]s/handoff.db
logs: %[1]s/logs
admin: { listen: "127.0.0.1:0", token_file: %[1]s/admin.token }
access_log: false
database: { url: %[1]s/app.db }
readonly:
  banner: "handoff demo: read-only for a moment while the database changes"
apps:
  web:
    command: [bin/app]
    releases: %[1]s/releases
    instances: 3
    health: { path: /healthz, interval: 500ms }
    drain_timeout: 2s
  jobs:
    kind: worker
    command: [bin/worker]
    releases: %[1]s/releases
`, d.dir)
	cfg, err := config.Parse("demo.yaml", []byte(text))
	if err != nil {
		return nil, err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := server.New(ctx, cfg, server.Options{Logger: log})
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	runErr := make(chan error, 1)
	go func() { defer close(done); runErr <- srv.Run(ctx) }()
	select {
	case <-srv.Ready():
	case err := <-runErr:
		return nil, fmt.Errorf("demo server: %w", err)
	}
	d.gateway, d.admin = srv.Addrs().Gateway[0], srv.Addrs().Admin
	token, err := os.ReadFile(filepath.Join(d.dir, "admin.token"))
	if err != nil {
		return nil, err
	}
	d.token = strings.TrimSpace(string(token))
	d.client = control.Dial(cfg.Socket)
	return done, nil
}
