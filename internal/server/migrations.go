package server

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/migrate"
)

// migrationsCacheFor is how long a read of the migrations' state serves:
// the dashboard asks twice a second, the database need not answer as often.
const migrationsCacheFor = time.Second

// migrationsCache holds the last read of the migrations' state.
type migrationsCache struct {
	mu   sync.Mutex
	at   time.Time
	list []control.Migration
	dirs []string
}

// migrations reads the application database's migrations — those of the
// config's directory and of each app's current release — with their phases,
// backfill progress, and what a pending contract waits for; and the
// directories they are in.
func (s *Server) migrations(ctx context.Context) ([]control.Migration, []string) {
	if s.cfg.Database.URL == "" {
		return nil, nil
	}
	c := &s.migCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) < migrationsCacheFor {
		return c.list, c.dirs
	}
	dirs := s.migrationDirs(ctx)
	list, err := s.readMigrations(ctx, dirs)
	if err != nil {
		s.log.Warn("read migrations for status", "error", err)
		return c.list, dirs
	}
	c.at, c.list, c.dirs = time.Now(), list, dirs
	return list, dirs
}

func (s *Server) readMigrations(ctx context.Context, dirs []string) ([]control.Migration, error) {
	o := migrate.ConfigOptions(s.cfg.Database)
	o.Dirs = dirs
	m, err := migrate.Open(ctx, s.cfg.Database.URL, o)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	return s.describeMigrations(ctx, m)
}

// migrationDirs are the migration directories that matter now: the
// config's, each app's current release's, and those of deploys under way.
func (s *Server) migrationDirs(ctx context.Context) []string {
	var dirs []string
	add := func(dir string) {
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() && !slices.Contains(dirs, dir) {
			dirs = append(dirs, dir)
		}
	}
	add(s.cfg.Database.Migrations)
	for _, app := range s.cfg.Apps {
		rec, err := s.deployer.Record(ctx, app.Name)
		if err != nil {
			continue
		}
		if rec.Current != nil && rec.Current.Dir != "" {
			add(filepath.Join(rec.Current.Dir, "migrations"))
		}
		for _, id := range []string{rec.Deploy, rec.Waiting} { // the migrations of deploys under way
			if dep, err := s.deployer.Get(ctx, id); id != "" && err == nil {
				for _, dir := range dep.MigrationDirs {
					add(dir)
				}
			}
		}
	}
	return dirs
}

func (s *Server) describeMigrations(ctx context.Context, m *migrate.Migrator) ([]control.Migration, error) {
	st, err := m.Status(ctx)
	if err != nil {
		return nil, err
	}
	out := []control.Migration{}
	for _, ms := range st {
		mig := control.Migration{ID: ms.Name, Phases: []control.Phase{}}
		for _, p := range ms.Phases {
			mig.Phases = append(mig.Phases, control.Phase{Name: string(p.Phase), State: p.State, Started: p.StartedAt, Finished: p.FinishedAt})
		}
		if b := ms.Backfill; b != nil {
			mig.Backfill = &control.Backfill{State: string(b.State), Rows: b.Rows, Total: b.Total, RowsPerSec: b.Rate, ETASeconds: b.ETASeconds}
		}
		if slices.Contains(ms.Pending, migrate.Contract) {
			if mig.WaitingFor, err = s.deployer.ContractBlockers(ctx, []string{ms.Name}); err != nil {
				return nil, err
			}
		}
		out = append(out, mig)
	}
	return out, nil
}
