package server

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/handoff-dev/handoff/internal/gateway"
)

// Holds across `handoff upgrade`. The requests a pause holds live in the
// process they reached; after a hand-over the old process, retiring, still
// holds its own, and a resume reaches the new process only. So:
//
//   - the retiring process follows the modes in the store (which the new
//     process writes before it applies them), every followEvery: a resume
//     there releases its held requests, in arrival order;
//   - while it holds requests it says so in the store (kind "holding",
//     key host/pid), and the new process — its child, so it knows the PID —
//     starts its own released line only once the old one's is dispatched
//     (for at most gateway's lineAheadMax): the old process's requests
//     arrived first, and go on first.
//
// Within each process the order is arrival order; across the two, every
// request the old process held is dispatched before any the new one held,
// unless the old one takes longer than a second to do it.

// kindHolding is the store kind of a retiring process's note that it holds
// requests: key host/pid, the apps it holds them for.
const kindHolding = "holding"

// followEvery is how often a retiring process reads the modes in the store.
const followEvery = 50 * time.Millisecond

// aheadPoll is how often a new process looks whether its predecessor's
// line has gone on.
const aheadPoll = 20 * time.Millisecond

// holding is a retiring process's note in the store.
type holding struct {
	PID  int      `json:"pid"`
	Apps []string `json:"apps"`
}

func holdingKey(pid int) string {
	host, _ := os.Hostname()
	return host + "/" + strconv.Itoa(pid)
}

// followModes makes a retiring process apply the modes in the store to its
// gateway, and keep its holding note, until the returned stop is called.
func (s *Server) followModes() (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		var noted []string
		defer func() {
			if noted != nil {
				s.noteHolding(nil)
			}
		}()
		tick := time.NewTicker(followEvery)
		defer tick.Stop()
		for {
			// The note first: a resume read in this round releases what
			// the note says is held, and the next round clears it.
			var apps []string
			for _, app := range s.cfg.Apps.Names() {
				if s.gw.Holding(app) {
					apps = append(apps, app)
				}
			}
			if !slices.Equal(apps, noted) {
				s.noteHolding(apps)
				noted = apps
			}
			s.applyStoredModes(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() { cancel(); <-done }
}

// noteHolding writes (or, for no apps, deletes) this process's note.
func (s *Server) noteHolding(apps []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	key := holdingKey(os.Getpid())
	var err error
	if len(apps) == 0 {
		err = s.store.Delete(ctx, kindHolding, key)
	} else {
		err = s.store.Put(ctx, kindHolding, key, holding{PID: os.Getpid(), Apps: apps})
	}
	if err != nil {
		s.log.Warn("note held requests in the store", "apps", apps, "error", err)
	}
}

// applyStoredModes applies the stored modes that differ from the gateway's.
func (s *Server) applyStoredModes(ctx context.Context) {
	for _, app := range append([]string{""}, s.cfg.Apps.Names()...) {
		var m gateway.Modes
		if _, err := s.store.Get(ctx, kindModes, modesKey(app), &m); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("read modes from the store", "app", app, "error", err)
			}
			continue
		}
		cur, err := s.gw.Modes(app)
		if err != nil || sameModes(cur, m) {
			continue
		}
		if err := s.gw.SetModes(app, m); err != nil {
			s.log.Warn("apply the successor's modes", "app", app, "error", err)
			continue
		}
		s.log.Info("retiring: applied the modes the new process stored", "app", app, "paused", m.Pause != nil,
			"readonly", m.ReadOnly != nil, "maintenance", m.Maintenance != nil)
	}
}

// sameModes compares modes as stored: times lose their monotonic reading
// and location on the way through the store.
func sameModes(a, b gateway.Modes) bool {
	ja, erra := json.Marshal(a)
	jb, errb := json.Marshal(b)
	return erra == nil && errb == nil && string(ja) == string(jb)
}

// lineAhead returns a channel closed once the process this one took over
// from (its parent) no longer holds requests for app — at once when it
// holds none or is gone. See Gateway.SetLineAhead.
func (s *Server) lineAhead(app string) <-chan struct{} {
	done := make(chan struct{})
	ppid := os.Getppid()
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second) // the gateway waits a second at most
		defer cancel()
		for {
			var h holding
			found, err := s.store.Get(ctx, kindHolding, holdingKey(ppid), &h)
			if err != nil || !found || h.PID != ppid || !slices.Contains(h.Apps, app) || !alive(ppid) {
				if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
					s.log.Warn("read the predecessor's held requests", "error", err)
				}
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(aheadPoll):
			}
		}
	}()
	return done
}
