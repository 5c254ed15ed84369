package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/migrate"
	"github.com/handoff-dev/handoff/internal/switchover"
)

// serverReadOnly is the read-only mode of every app as a migrate-on-copy
// switches it: through SetMode, the way `handoff readonly on --for`
// does, so that it is stored (a restarted serve restores it, and the
// recovery then switches it off), shown, logged and applied fleet-wide.
type serverReadOnly struct {
	s     *Server
	actor string
}

func (r serverReadOnly) On(ctx context.Context, d time.Duration) error {
	return r.s.SetMode(ctx, "readonly", control.ModeRequest{On: true, For: config.Duration(d.Round(time.Second)), Actor: r.actor,
		Banner: "This site is read-only while its database is upgraded."})
}

func (r serverReadOnly) Off(ctx context.Context) error {
	return r.s.SetMode(ctx, "readonly", control.ModeRequest{Actor: r.actor})
}

// runCopy is runSwitchover's migrate-on-copy (switchover/copy.go).
func (s *Server) runCopy(ctx context.Context, req control.SwitchoverRequest, db *config.DatabaseEndpoint, ep switchover.Endpoint, pair switchover.Pair, from string) (*switchover.Record, error) {
	if !filepath.IsAbs(req.Migrate) {
		return nil, kindError{deploy.ErrBadRequest, fmt.Errorf("--migrate %s: want an absolute directory (the CLI makes it one)", req.Migrate)}
	}
	if m, err := s.gw.Modes(""); err != nil {
		return nil, err
	} else if m.ReadOnly != nil {
		return nil, kindError{deploy.ErrConflict, errors.New("read-only is on already: a migrate-on-copy switches it on and off itself; switch it off first ('handoff readonly off')")}
	}
	window := cmp.Or(time.Duration(req.Window), switchover.DefaultWindow)
	deadline := time.Duration(req.Deadline)
	s.event("", "switchover", req.Actor, "migrate-on-copy of %s to %s begins: migrations %s, window %v", db.Name, switchover.RedactURL(req.To), req.Migrate, window)
	mopts := migrate.ConfigOptions(s.cfg.Database)
	rec, err := switchover.RunCopy(context.WithoutCancel(ctx), pair, switchover.CopyOptions{
		Options: switchover.Options{Name: db.Name, Node: s.switchoverNode(), From: from, To: req.To, Deadline: deadline,
			Endpoint: ep, Gate: gatewayGate{s, deadline, db.Name}, Journal: s.stepJournal(req.Actor), Log: s.log},
		Dir: req.Migrate, Window: window, ReadOnly: serverReadOnly{s, "handoff (migrate-on-copy of " + db.Name + ")"},
		Migrate: mopts,
	})
	var serr *switchover.Error
	switch {
	case err == nil:
		s.event("", "switchover", req.Actor, "migrate-on-copy of %s done: the endpoint points at the migrated copy %s (%v)", db.Name, rec.ToAddr, time.Since(rec.Started).Round(time.Millisecond))
		return &rec, nil
	case errors.As(err, &serr) && serr.RolledBack:
		rec.Error = err.Error()
		s.event("", "switchover", req.Actor, "migrate-on-copy of %s reverted: %v", db.Name, err)
		return &rec, nil
	case errors.As(err, &serr):
		return nil, kindError{deploy.ErrConflict, err}
	}
	s.event("", "switchover", req.Actor, "migrate-on-copy of %s failed: %v", db.Name, err)
	return &rec, err
}

// stepJournal is the store as the switchover's journal, with each step
// also written to the event log as it is recorded, with its time since
// the start (the dashboard and `db status` read them there).
func (s *Server) stepJournal(actor string) switchover.Journal {
	return stepJournal{s, actor}
}

type stepJournal struct {
	s     *Server
	actor string
}

func (j stepJournal) Get(ctx context.Context, kind, key string, v any) (bool, error) {
	return j.s.store.Get(ctx, kind, key, v)
}

func (j stepJournal) Put(ctx context.Context, kind, key string, v any) error {
	if err := j.s.store.Put(ctx, kind, key, v); err != nil {
		return err
	}
	if rec, ok := v.(switchover.Record); ok && len(rec.Steps) > 0 {
		last := rec.Steps[len(rec.Steps)-1]
		what := "switchover"
		if rec.Migrate != "" {
			what = "migrate-on-copy"
		}
		if rec.Recovered {
			what += " (recovery)"
		}
		j.s.event("", "switchover-step", j.actor, "%s of %s: %s at %.3fs", what, rec.Name, last.Step, last.At.Seconds())
	}
	return nil
}
