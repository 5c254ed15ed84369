package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/deploy"
	"github.com/handoff-dev/handoff/internal/fleet"
	"github.com/handoff-dev/handoff/internal/switchover"
)

// switchovers serialises switchovers: one at a time per server, since
// each holds every app's HTTP traffic.
var switchovers sync.Mutex

// kindError gives an error the control API's status (deploy's error kinds)
// while keeping its own message.
type kindError struct {
	kind error
	err  error
}

func (e kindError) Error() string        { return e.err.Error() }
func (e kindError) Unwrap() error        { return e.err }
func (e kindError) Is(target error) bool { return target == e.kind }

// runSwitchover moves the endpoint ep (*dbproxy.Endpoint), configured as
// db and pointing at primary now, to the replica at req.To. The old
// primary's URL is req.To with primary's host and port: handoff logs in to
// both with the same user.
func (s *Server) runSwitchover(ctx context.Context, req control.SwitchoverRequest, db *config.DatabaseEndpoint, ep switchover.Endpoint, primary string) (*switchover.Record, error) {
	if !switchovers.TryLock() {
		return nil, kindError{deploy.ErrConflict, errors.New("another switchover is running")}
	}
	defer switchovers.Unlock()
	from, err := withHost(req.To, primary)
	if err != nil {
		return nil, kindError{deploy.ErrBadRequest, fmt.Errorf("--to: %w", err)}
	}
	deadline := time.Duration(req.Deadline)
	octx, cancel := context.WithTimeout(ctx, 10*time.Second)
	pair, err := switchover.Open(octx, from, req.To)
	cancel()
	if err != nil {
		return nil, kindError{deploy.ErrConflict, fmt.Errorf("switchover of %s: %w", db.Name, err)}
	}
	defer pair.Close()
	if req.Migrate != "" {
		return s.runCopy(ctx, req, db, ep, pair, from)
	}
	s.event("", "switchover", req.Actor, "switchover of %s to %s begins (deadline %v)", db.Name, switchover.RedactURL(req.To), deadline)
	// The switchover runs to its end even if the client goes away: a
	// rollback or the steps after the promotion must not be cut short.
	rec, err := switchover.Run(context.WithoutCancel(ctx), pair, switchover.Options{
		Name: db.Name, Node: s.switchoverNode(), From: from, To: req.To, Deadline: deadline,
		Endpoint: ep, Gate: gatewayGate{s, deadline, db.Name}, Journal: s.stepJournal(req.Actor), Log: s.log,
		Reverse: req.Reverse,
	})
	var serr *switchover.Error
	switch {
	case err == nil:
		s.event("", "switchover", req.Actor, "switchover of %s done: the endpoint points at %s (%v)", db.Name, rec.ToAddr, time.Since(rec.Started).Round(time.Millisecond))
		if rec.Warning != "" {
			s.event("", "switchover", req.Actor, "switchover of %s: %s", db.Name, rec.Warning)
		}
		return &rec, nil
	case errors.As(err, &serr) && serr.RolledBack:
		rec.Error = err.Error()
		s.event("", "switchover", req.Actor, "switchover of %s rolled back: %v", db.Name, err)
		return &rec, nil
	case errors.As(err, &serr):
		return nil, kindError{deploy.ErrConflict, err}
	}
	s.event("", "switchover", req.Actor, "switchover of %s failed: %v", db.Name, err)
	return &rec, err
}

// withHost is raw with its host and port replaced by addr.
func withHost(raw, addr string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", errors.New("want a URL: postgres://user@host:port/db or mysql://user@host:port/db")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return "", fmt.Errorf("the endpoint's primary %q: %w", addr, err)
	}
	u.Host = addr
	return u.String(), nil
}

// switchoverPrimary is the server a database endpoint must start on: where
// the last switchover left it when the config names one of its two servers
// (the old primary, or the new one once the config is brought up to date;
// a switch back has them the other way round). An unfinished one is
// recovered just after, by recoverSwitchover.
func (s *Server) switchoverPrimary(ctx context.Context, db *config.DatabaseEndpoint) (string, error) {
	var rec switchover.Record
	ok, err := s.store.Get(ctx, switchover.JournalKind, db.Name, &rec)
	if err != nil || !ok {
		return db.Primary, err
	}
	if !rec.Names(db.Primary) {
		return db.Primary, nil // the config has moved on to another server since
	}
	return rec.Primary(), nil
}

// switchoverNode is the node name a switchover records (empty without a
// fleet).
func (s *Server) switchoverNode() string {
	if s.fleet == nil {
		return ""
	}
	return s.fleet.f.Name()
}

// othersSwitchover refuses to recover an unfinished switchover that
// another node of the fleet runs and that node is live: it is not
// interrupted, only still running (a node restarting meanwhile must not
// roll back what the other is about to promote). Once that node is lost,
// any node recovers it.
func (s *Server) othersSwitchover(ctx context.Context, rec switchover.Record) error {
	if rec.Node == "" || s.fleet == nil || rec.Node == s.fleet.f.Name() {
		return nil
	}
	err := s.fleet.f.CheckLive(ctx, rec.Node)
	var lost *fleet.LostError
	switch {
	case errors.As(err, &lost):
		s.log.Warn("switchover: the node that ran it is lost; this node recovers it", "database", rec.Name, "node", rec.Node)
		return nil
	case err != nil:
		return fmt.Errorf("is node %s, which runs the switchover of %s, live? %w", rec.Node, rec.Name, err)
	}
	return fmt.Errorf("the switchover of %s is running on node %s (step %s): this node waits for it to end", rec.Name, rec.Node, rec.Step)
}

// recoverSwitchover finishes or rolls back a switchover that a killed
// handoff left unfinished (its record not final), with ep started on
// switchoverPrimary's answer. An error (a server down) leaves the record
// unfinished: the caller keeps the endpoint from serving and tries again
// (databases.go), and no new switchover of this database starts meanwhile.
func (s *Server) recoverSwitchover(ctx context.Context, name string, ep switchover.Endpoint) error {
	var rec switchover.Record
	ok, err := s.store.Get(ctx, switchover.JournalKind, name, &rec)
	if err != nil || !ok || rec.Step.Final() {
		return err
	}
	if err := s.othersSwitchover(ctx, rec); err != nil {
		return err
	}
	pair, err := switchover.Reopen(ctx, rec)
	if err == nil {
		defer pair.Close()
		j := s.stepJournal("handoff")
		if rec.Migrate != "" {
			rec, err = switchover.RecoverCopy(ctx, rec, pair, ep, serverReadOnly{s, "handoff (recovery of " + name + ")"}, j)
		} else {
			rec, err = switchover.Recover(ctx, rec, pair, ep, j)
		}
	}
	if err != nil {
		return fmt.Errorf("recover the switchover of %s (interrupted at step %s): %w", name, rec.Step, err)
	}
	s.event("", "switchover", "handoff", "switchover of %s, interrupted at a restart, is %s: the endpoint points at %s", name, rec.Step, rec.Primary())
	return nil
}
