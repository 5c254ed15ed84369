package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/switchover"
)

// A database switchover run on one node of a fleet moves every node's
// endpoint of that database, not only its own: otherwise the other nodes'
// apps would go on writing to the old primary, fenced and read-only. The
// switchover's record in the shared state is the one fact of where an
// endpoint must point; each node follows it:
//
//   - during the fleet's hold, a node pauses its endpoint of the database
//     too (after its HTTP is quiet), so that none of its transactions runs
//     against the old primary once it is fenced; at the hold's release, or
//     its bound, the node points the endpoint where the record says, then
//     resumes it, then lets its HTTP go — the order the switching node
//     keeps (fleet_hold.go);
//   - before it applies a change of the modes (a migrate-on-copy's
//     read-only off comes after its endpoint moved);
//   - and at every heartbeat, a net for a node that missed a release, or a
//     switchover finished by a restarted node's recovery.
//
// A record is followed only once it is settled (switchover.Record.Settled):
// a promotion that fails still rolls back, and an endpoint moved ahead of
// it would send transactions to a replica.

// followSwitchover points d's endpoint where the last settled switchover
// of its database left it, if it points elsewhere. A failed read of the
// record is tried again for a few seconds: a node that resumes its
// endpoint on the fenced old primary fails every write until it follows.
func (s *Server) followSwitchover(ctx context.Context, d *dbEndpoint) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var rec switchover.Record
	ok, err := s.store.Get(ctx, switchover.JournalKind, d.cfg.Name, &rec)
	for err != nil && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
			ok, err = s.store.Get(ctx, switchover.JournalKind, d.cfg.Name, &rec)
		}
	}
	if err != nil {
		s.log.Warn("fleet: read the database's last switchover; its endpoint stays where it is until the next heartbeat", "database", d.cfg.Name, "error", err)
		return
	}
	if !ok || !rec.Names(d.cfg.Primary) {
		return // none, or the config has moved on to another server
	}
	addr, settled := rec.Settled()
	now := d.ep.Stats().Primary
	if !settled || addr == now {
		return
	}
	if err := d.ep.Repoint(addr); err != nil {
		s.log.Warn("fleet: follow the database's switchover", "database", d.cfg.Name, "to", addr, "error", err)
		return
	}
	s.event("", "switchover", "handoff", "database endpoint %s on node %s follows the switchover recorded in the shared state: %s → %s",
		d.cfg.Name, s.fleet.f.Name(), now, addr)
}

// followSwitchovers follows every endpoint's database.
func (s *Server) followSwitchovers(ctx context.Context) {
	for _, d := range s.dbs {
		s.followSwitchover(ctx, d)
	}
}

// watchSwitchovers follows the endpoints' databases at every heartbeat.
func (s *Server) watchSwitchovers(ctx context.Context) {
	if len(s.dbs) == 0 {
		return
	}
	t := time.NewTicker(s.fleet.cfg.Heartbeat.D())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.followSwitchovers(ctx)
		}
	}
}

// holdDatabase pauses this node's endpoint of a switchover's database for
// the fleet's hold, by until, over httpRelease (the node's HTTP hold).
// The release it returns — called at the hold's release, or by itself at
// max — follows the switchover, resumes the endpoint, then lets HTTP go.
// A node without that endpoint has only its HTTP to hold.
func (s *Server) holdDatabase(name string, until time.Time, max time.Duration, httpRelease func()) (func(), error) {
	d := s.database(name)
	if d == nil {
		return httpRelease, nil
	}
	pctx, cancel := context.WithDeadline(s.ctx, until)
	defer cancel()
	h := d.ep.Holder() // this hold's own: its release lifts no other pause
	if err := h.Pause(pctx); err != nil {
		h.Resume()
		httpRelease()
		return nil, fmt.Errorf("pause the database endpoint %s: %w", name, err)
	}
	var once sync.Once
	release := func() {
		once.Do(func() {
			s.followSwitchover(s.ctx, d)
			h.Resume()
			httpRelease()
		})
	}
	bound := time.AfterFunc(max, release)
	return func() {
		bound.Stop()
		release()
	}, nil
}
