package server

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/gateway"
	"github.com/handoff-dev/handoff/internal/testdb"
)

// The --for timer sees a read-only run out, and before it switches it off
// an operator switches read-only on again, without --for. The timer asks
// again with the lock held, and leaves the new read-only on (it switched
// it off, and writes got through with nobody asking).
func TestForTimerLeavesANewerReadOnly(t *testing.T) {
	dir := t.TempDir()
	cfg, err := config.Parse(filepath.Join(dir, "handoff.yaml"), []byte(fmt.Sprintf(
		"socket: %[1]s/handoff.sock\nstate: %[1]s/handoff.db\nlogs: %[1]s/logs\napps:\n  web: { targets: [127.0.0.1:1] }\n", dir)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := New(ctx, cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cancel(); s.gw.Close(); s.store.Close(); s.ls.closeAll() })
	if err := s.SetMode(ctx, "readonly", control.ModeRequest{On: true, For: config.Duration(time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if m, _ := s.gw.Modes(""); !readOnlyRanOut(m) {
		t.Fatalf("the first read-only has run out: %+v", m.ReadOnly)
	}
	// Here the timer has seen it run out; the operator comes first.
	if err := s.SetMode(ctx, "readonly", control.ModeRequest{On: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.setMode(ctx, "readonly", control.ModeRequest{Actor: "handoff (--for ran out)"}, readOnlyRanOut); err != nil {
		t.Fatal(err)
	}
	if m, _ := s.gw.Modes(""); m.ReadOnly == nil {
		t.Fatal("the operator's read-only, without --for, was switched off by the timer")
	}
}

// A node of a fleet (re)starting: another node switches read-only on
// after this one read the modes and before it joined, so the command is
// behind the mark it joins with and is never applied here. The modes are
// read again once it has joined: it is read-only with the rest (it served
// writes until the next mode change).
func TestFleetNodeReadsModesAgainOnceJoined(t *testing.T) {
	dsn := testdb.Postgres(t)
	dir := t.TempDir()
	cfg, err := config.Parse(filepath.Join(dir, "handoff.yaml"), []byte(fmt.Sprintf(
		"socket: %[1]s/handoff.sock\nstate: %[2]q\nnode: web-1\nlogs: %[1]s/logs\napps:\n  web: { targets: [127.0.0.1:1] }\n", dir, dsn)))
	if err != nil {
		t.Fatal(err)
	}
	afterRestore = func(s *Server) {
		m := gateway.Modes{ReadOnly: &gateway.ReadOnly{Since: time.Now().UTC()}}
		if err := s.store.Put(context.Background(), kindModes, modesKey(""), m); err != nil {
			t.Error(err)
		}
	}
	defer func() { afterRestore = nil }()
	s, err := New(context.Background(), cfg, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.cancel(); s.closeFleet(); s.gw.Close(); s.store.Close(); s.ls.closeAll() })
	if m, _ := s.gw.Modes(""); m.ReadOnly == nil {
		t.Fatal("the read-only another node switched on before this one joined is not applied here")
	}
}
