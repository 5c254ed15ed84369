package switchover

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// RecoverCopy's rule on a fake pair: before the endpoint moved, revert
// (unfence, endpoint on the old server, read-only off) and never promote;
// from the move on, finish (endpoint on the copy, read-only off). The
// record's Primary follows the same rule, so that a restarted serve starts
// its endpoint on the right server.
func TestRecoverCopyRule(t *testing.T) {
	for _, tc := range []struct {
		at       Step
		finishes bool
	}{
		{ReadOnlyOn, false}, {Fencing, false}, {CatchingUp, false}, {Promoting, false},
		{Migrating, false}, {RollingBack, false}, {Repointing, true}, {Resuming, true},
	} {
		t.Run(string(tc.at), func(t *testing.T) {
			rec := Record{Name: "main", Kind: "fake", FromAddr: "old:1", ToAddr: "new:1", Migrate: "/m", Step: tc.at, Started: time.Now()}
			want := "old:1"
			if tc.finishes {
				want = "new:1"
			}
			if rec.Primary() != want {
				t.Fatalf("Primary() at %s = %s, want %s", tc.at, rec.Primary(), want)
			}
			pair, ep, ro, j := &fakePair{fenced: true}, &fakeEndpoint{}, newROGateway(), &memJournal{}
			ro.on = true
			got, err := RecoverCopy(context.Background(), rec, pair, ep, ro, j)
			if err != nil {
				t.Fatal(err)
			}
			if ro.isOn() {
				t.Fatal("read-only left on")
			}
			if slices.Contains(pair.calls, "promote") {
				t.Fatal("a migrate-on-copy's recovery promoted")
			}
			if tc.finishes {
				if got.Step != Done || !slices.Equal(ep.calls, []string{"repoint new:1"}) || slices.Contains(pair.calls, "unfence") {
					t.Fatalf("step %s, endpoint %v, pair %v; want done on new:1, old left fenced", got.Step, ep.calls, pair.calls)
				}
				return
			}
			if got.Step != RolledBack || !slices.Equal(ep.calls, []string{"repoint old:1"}) || pair.fenced || !strings.Contains(got.Error, "rebuild it") {
				t.Fatalf("step %s, endpoint %v, pair %v, error %q; want reverted to old:1, unfenced, the copy to rebuild", got.Step, ep.calls, pair.calls, got.Error)
			}
			var saved Record
			if ok, _ := j.Get(context.Background(), JournalKind, "main", &saved); !ok || saved.Step != got.Step || !saved.Recovered {
				t.Fatalf("journal: %+v", saved)
			}
		})
	}
	// Recover refuses a migrate-on-copy's record: it would promote.
	if _, err := Recover(context.Background(), Record{Name: "main", Migrate: "/m", Step: Migrating}, &fakePair{}, nil, nil); err == nil {
		t.Fatal("Recover took a migrate-on-copy's record")
	}
}

// The window's deadline reverts like a failure, naming the window.
func TestCopyWindowPassesReverts(t *testing.T) {
	dir := copyMigrations(t, map[string]string{"0001_x.sql": "-- handoff:expand\nALTER TABLE acks ADD COLUMN x int;\n"})
	pair := &stallAfterFence{&fakePair{}} // the copy stops catching up at the fence
	ro, ep := newROGateway(), &fakeEndpoint{}
	rec, err := RunCopy(context.Background(), pair, CopyOptions{Options: Options{Name: "main", Endpoint: ep, Gate: ro},
		Dir: dir, Window: 300 * time.Millisecond, ReadOnly: ro})
	var serr *Error
	if err == nil || !strings.Contains(err.Error(), "window 300ms passed") || !errors.As(err, &serr) || !serr.RolledBack || serr.Step != CatchingUp {
		t.Fatalf("RunCopy: %v; want reverted at catching-up, the window named", err)
	}
	if rec.Step != RolledBack || ro.isOn() || pair.fenced || slices.Contains(pair.calls, "promote") {
		t.Fatalf("step %s, read-only %v, fenced %v, pair %v", rec.Step, ro.isOn(), pair.fenced, pair.calls)
	}
}

// stallAfterFence is a replica that applies nothing once the primary is
// fenced.
type stallAfterFence struct{ *fakePair }

func (s *stallAfterFence) CaughtUp(ctx context.Context, pos string) error {
	if s.fenced {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}
