package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/handoff-dev/handoff/internal/control"
	"github.com/handoff-dev/handoff/internal/deploy"
)

// followLimit bounds how long the CLI follows a deploy that a new server
// process took over; a release pipeline's backfill can take long.
const followLimit = 6 * time.Hour

// followHandedOver follows a deploy that the server answering us could not
// finish because it stopped or handed over (an upgrade mid-deploy): it asks
// the server at the same socket — the new process — until that deploy has
// ended, and returns it as it ended there. Without a server for a while
// (a stop, not an upgrade), it says so and gives up: the next handoff serve
// finishes the deploy.
func followHandedOver(ctx context.Context, g *globals, w io.Writer, ie *control.InterruptedError) (*deploy.Deploy, error) {
	dep := ie.Deploy
	fmt.Fprintf(w, "handoff handed over in the middle of deploy %s; following it on the new process…\n", dep.ID)
	cl, err := g.client()
	if err != nil {
		return dep, err
	}
	deadline, lastSeen, lastStep := time.Now().Add(followLimit), time.Now(), ""
	for time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return dep, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		st, err := cl.Status(ctx, dep.App)
		if err != nil {
			if time.Since(lastSeen) > 30*time.Second {
				return dep, fmt.Errorf("%s; no handoff server has answered since: the next 'handoff serve' finishes the deploy ('handoff status %s' shows it)", ie.Msg, dep.App)
			}
			continue
		}
		lastSeen = time.Now()
		for _, a := range st.Apps {
			if a.App != dep.App || a.Deploy == nil || a.Deploy.ID != dep.ID {
				continue
			}
			cur := a.Deploy
			if s := running(cur); s != "" && s != lastStep {
				fmt.Fprintf(w, "  %s\n", s)
				lastStep = s
			}
			switch cur.State {
			case deploy.Running, deploy.Pending:
			case deploy.Failed, deploy.Stalled:
				return cur, fmt.Errorf("deploy %s %s on the new process: %s", cur.ID, cur.State, cur.Error)
			default:
				return cur, nil
			}
		}
	}
	return dep, errors.New(ie.Msg + "; still running after " + followLimit.String() + ": see 'handoff status'")
}

// running names the step a deploy is at, or "".
func running(dep *deploy.Deploy) string {
	for _, s := range dep.Steps {
		if s.State == deploy.Running {
			return s.String()
		}
	}
	return ""
}
