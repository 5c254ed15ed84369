package supervisor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
)

// Stop stops an instance: it writes StateStopping, sends the spec's stop
// signal to the instance's process group, sends SIGKILL if the process is
// still there after the stop timeout, and returns when the process has
// exited and the record is deleted, with the instance's last state
// (StateExited, LastExit saying how it ended). An instance waiting to be
// restarted is simply dropped. For an http instance the caller drains it at
// the gateway first. If ctx ends first, Stop returns ctx's error and the
// stop goes on.
func (s *Supervisor) Stop(ctx context.Context, id string) (Instance, error) {
	sl, err := s.send(ctx, id, opStop)
	if err != nil {
		return Instance{}, fmt.Errorf("stop %s: %w", id, err)
	}
	return s.wait(ctx, id, sl, "stop")
}

// Drain asks an instance (a worker) to finish what it is doing and exit: it
// writes StateDraining with DrainingSince, sends the spec's drain signal,
// and returns at once with the instance as it now is. The process then has
// the drain timeout (hours are normal) before SIGKILL; while it runs, the
// instance is listed as draining and its release directory is in use. Wait
// tells when it has exited. Drain of an instance already draining or
// stopping changes nothing; Stop or Kill of a draining one hurries it.
func (s *Supervisor) Drain(ctx context.Context, id string) (Instance, error) {
	sl, err := s.send(ctx, id, opDrain)
	if err != nil {
		return Instance{}, fmt.Errorf("drain %s: %w", id, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return sl.view.clone(), nil
}

// Kill sends SIGKILL to an instance's process group at once and returns
// when it has exited, like Stop.
func (s *Supervisor) Kill(ctx context.Context, id string) (Instance, error) {
	sl, err := s.send(ctx, id, opKill)
	if err != nil {
		return Instance{}, fmt.Errorf("kill %s: %w", id, err)
	}
	return s.wait(ctx, id, sl, "kill")
}

// Wait returns when the instance is gone — exited after a stop or drain —
// with its last state, or when ctx is done. It returns ErrNotFound for an
// instance that is not supervised, which after Drain means it has already
// exited.
func (s *Supervisor) Wait(ctx context.Context, id string) (Instance, error) {
	s.mu.Lock()
	sl := s.slots[id]
	s.mu.Unlock()
	if sl == nil {
		return Instance{}, fmt.Errorf("wait for %s: %w", id, ErrNotFound)
	}
	return s.wait(ctx, id, sl, "wait for")
}

func (s *Supervisor) wait(ctx context.Context, id string, sl *slot, verb string) (Instance, error) {
	select {
	case <-sl.gone:
		return sl.final.clone(), nil
	case <-s.ctx.Done():
		return Instance{}, fmt.Errorf("%s %s: %w", verb, id, ErrDetached)
	case <-ctx.Done():
		return Instance{}, fmt.Errorf("%s %s: %w", verb, id, ctx.Err())
	}
}

// send gives a command to an instance's monitor and waits for its answer:
// the new state is written and the signal sent.
func (s *Supervisor) send(ctx context.Context, id string, o op) (*slot, error) {
	s.mu.Lock()
	sl, detached := s.slots[id], s.detached
	s.mu.Unlock()
	switch {
	case detached:
		return nil, ErrDetached
	case sl == nil:
		return nil, ErrNotFound
	}
	c := command{op: o, reply: make(chan error, 1)}
	select {
	case sl.cmds <- c:
	case <-sl.gone:
		return sl, nil
	case <-s.ctx.Done():
		return nil, ErrDetached
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	// A monitor that took the command always answers, and soon.
	return sl, <-c.reply
}

// StopAll ends every instance, as `handoff serve` should on a stop that
// takes the app down with it: workers are drained and http instances
// stopped, all at once, each with its own timeout; whatever still runs when
// ctx is done is killed. It returns when all have exited. Nothing can be
// started meanwhile by anyone but the caller; Detach afterwards.
func (s *Supervisor) StopAll(ctx context.Context) error {
	return s.forAll(ctx, "stop all", s.end)
}

// Suspend stops every instance the way StopAll does (a worker is drained
// and waited for), but keeps its record, so that the next handoff serve
// starts it again on the same port: a stop of handoff (systemctl restart,
// a reboot) then brings the app back as it was. A process still running
// when ctx ends is killed.
func (s *Supervisor) Suspend(ctx context.Context) error {
	return s.forAll(ctx, "suspend all", s.suspend)
}

// forAll runs f on every instance at once and joins their errors.
func (s *Supervisor) forAll(ctx context.Context, what string, f func(context.Context, Instance) error) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for _, inst := range s.List("") {
		wg.Go(func() {
			if err := f(ctx, inst); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// killWait bounds how long StopAll waits for a process to die after SIGKILL.
const killWait = 10 * time.Second

func (s *Supervisor) end(ctx context.Context, inst Instance) error {
	var err error
	if inst.Kind == config.KindWorker {
		if _, err = s.Drain(ctx, inst.ID); err == nil {
			_, err = s.Wait(ctx, inst.ID)
		}
	} else {
		_, err = s.Stop(ctx, inst.ID)
	}
	return s.killLate(ctx, inst.ID, err)
}

func (s *Supervisor) suspend(ctx context.Context, inst Instance) error {
	sl, err := s.send(ctx, inst.ID, opSuspend)
	if err == nil {
		_, err = s.wait(ctx, inst.ID, sl, "suspend")
	}
	return s.killLate(ctx, inst.ID, err)
}

// killLate kills an instance whose stop or drain did not end before ctx;
// err is how that ended.
func (s *Supervisor) killLate(ctx context.Context, id string, err error) error {
	if errors.Is(err, ErrNotFound) || err == nil {
		return nil
	}
	if ctx.Err() == nil {
		return err
	}
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killWait)
	defer cancel()
	if _, kerr := s.Kill(kctx, id); kerr != nil && !errors.Is(kerr, ErrNotFound) {
		return errors.Join(err, kerr)
	}
	return nil
}
