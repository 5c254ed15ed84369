package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/config"
	"github.com/handoff-dev/handoff/internal/supervisor"
)

// StepRelease runs the app's release command (its own migrator) once for a
// release, before any instance of it starts — and before handoff's own
// expand phase: the app's migrator owns the app's schema history, and
// handoff's migrations of a release are written against the schema that
// release's code expects, which its own migrator sets up first (Heroku's
// release phase and Kamal's pre-deploy hook run at the same point).
const StepRelease StepName = "release"

// releaseCommandDue reports whether the release command must run for rel:
// the app has one and it has not yet succeeded for this release.
func (d *Deployer) releaseCommandDue(ctx context.Context, app *config.App, rel Release) bool {
	if len(app.ReleaseCommand) == 0 || rel.Dir == "" {
		return false
	}
	var rr ReleaseRecord
	ok, err := d.store.Get(ctx, kindRelease, app.Name+"/"+rel.Label, &rr)
	return err != nil || !ok || rr.ReleaseCommandRan.IsZero()
}

// runReleaseCommand runs the release command in the release's directory
// with the app's environment, its output written to a log `handoff logs`
// shows and streamed from there to the deploy's progress. A non-zero exit
// or a time-out fails the step (and so the deploy: nothing of the release
// runs yet).
//
// The command is recorded (its PID and start time) while it runs, and it
// writes to its log file, not to a pipe of this process: a handoff process
// that stops or dies (kill -9, an upgrade) leaves it to finish, and the
// next one, resuming the deploy, waits for it to end before it runs the
// command again — never two side by side. Run again, because its outcome
// was its dead parent's to read: a release command must be safe to run
// again after one that was cut short, as migrators are.
func (d *Deployer) runReleaseCommand(ctx context.Context, app *config.App, dep *Deploy, s *Step, report func(Progress)) error {
	rel := dep.release(s.Release)
	key := app.Name + "/" + rel.Label
	var rr ReleaseRecord
	if _, err := d.store.Get(ctx, kindRelease, key, &rr); err != nil {
		return err
	}
	if !rr.ReleaseCommandRan.IsZero() {
		// It succeeded, and the step's own save did not follow (a stall,
		// a kill): it does not run twice.
		s.Detail = "ran at " + rr.ReleaseCommandRan.UTC().Format(time.RFC3339)
		return nil
	}
	name := strings.Join(app.ReleaseCommand, " ")
	logPath := d.sup.LogFile(app.Name, rel.Label+"-release")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o750); err != nil {
		return fmt.Errorf("release command: open its log: %w", err)
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("release command: open its log: %w", err)
	}
	defer logf.Close()
	defer d.setLive(dep.ID, "")
	each := func(line string) {
		d.setLive(dep.ID, line) // status and the dashboard show its latest line as the step's detail
		if report != nil {
			report(Progress{Time: now(), Deploy: dep.ID, Step: s.String(), State: Running, Message: line})
		}
	}
	if rc := rr.ReleaseCommand; rc != nil {
		if err := d.awaitEarlierCommand(ctx, app, rc, logPath, each); err != nil {
			return err
		}
	}

	prog := app.ReleaseCommand[0]
	if strings.Contains(prog, "/") && !filepath.IsAbs(prog) {
		prog = filepath.Join(rel.Dir, prog)
	}
	cmd := exec.Command(prog, app.ReleaseCommand[1:]...)
	cmd.Dir = rel.Dir
	cmd.Env = append(os.Environ(), "HANDOFF_APP="+app.Name, "HANDOFF_RELEASE="+rel.Label)
	for k, v := range app.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a time-out kills what it started too
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	fmt.Fprintf(logf, "--- %s release command %s for %s\n", start.UTC().Format(time.RFC3339), name, rel.Label)
	from, _ := logf.Seek(0, io.SeekEnd)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("release command %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	ticks, _ := supervisor.ProcessStart(pid)
	rr.ReleaseCommand = &RunningCommand{PID: pid, StartTime: ticks, Started: start}
	if err := d.store.Put(ctx, kindRelease, key, rr); err != nil {
		syscall.Kill(-pid, syscall.SIGKILL)
		cmd.Wait()
		return fmt.Errorf("release command: record it as running: %w", err)
	}
	tail := tailLog(logPath, from, each)
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	timeout := time.NewTimer(app.ReleaseTimeout.D())
	defer timeout.Stop()
	timedOut := false
	select {
	case err = <-exited:
	case <-timeout.C:
		syscall.Kill(-pid, syscall.SIGKILL)
		err, timedOut = <-exited, true
	case <-ctx.Done():
		// This process stops or hands over: the command goes on, and the
		// next process waits for it (see above).
		tail.end()
		return ctx.Err()
	}
	lines := tail.end()
	took := time.Since(start).Round(time.Millisecond)
	fmt.Fprintf(logf, "--- ended after %s: %v\n", took, exitText(err))
	rr.ReleaseCommand = nil
	if err == nil && !timedOut {
		rr.ReleaseCommandRan = now()
	}
	if perr := d.store.Put(ctx, kindRelease, key, rr); perr != nil {
		return fmt.Errorf("release command: record its end: %w", perr)
	}
	switch {
	case timedOut:
		return fmt.Errorf("release command %s did not end within release_timeout %s (killed); its last lines: %s", name, app.ReleaseTimeout, lines)
	case err != nil:
		return fmt.Errorf("release command %s failed (%s); its last lines: %s", name, exitText(err), lines)
	}
	s.Detail = fmt.Sprintf("%s ran in %s (its output: handoff logs %s)", name, took, app.Name)
	d.event(app.Name, "release", "", "release command of %s ran in %s; its last lines: %s", rel.Label, took, lines)
	return nil
}

// awaitEarlierCommand waits for the release command an earlier handoff
// process started to end, its output still streamed, bounded by what is
// left of its release_timeout (then its process group is killed, as that
// process would have).
func (d *Deployer) awaitEarlierCommand(ctx context.Context, app *config.App, rc *RunningCommand, logPath string, each func(string)) error {
	if !supervisor.ProcessRuns(rc.PID, rc.StartTime) {
		return nil
	}
	each(fmt.Sprintf("the release command an earlier handoff process started (pid %d, %s ago) still runs: waiting for it to end before running it again", rc.PID, time.Since(rc.Started).Round(time.Second)))
	from := int64(0)
	if fi, err := os.Stat(logPath); err == nil {
		from = fi.Size()
	}
	tail := tailLog(logPath, from, each)
	defer tail.end()
	deadline := rc.Started.Add(app.ReleaseTimeout.D())
	for supervisor.ProcessRuns(rc.PID, rc.StartTime) {
		if time.Now().After(deadline) {
			syscall.Kill(-rc.PID, syscall.SIGKILL)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// logTail follows a log file from an offset, calling each with every
// line written to it, and keeps the last few for an error message.
type logTail struct {
	stop, done chan struct{}
	last       []string
}

// tailLog starts following path from byte from.
func tailLog(path string, from int64, each func(string)) *logTail {
	t := &logTail{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(t.done)
		f, err := os.Open(path)
		if err != nil {
			return
		}
		defer f.Close()
		var partial []byte
		buf := make([]byte, 32<<10)
		read := func() {
			for {
				n, _ := f.ReadAt(buf, from)
				if n == 0 {
					return
				}
				from += int64(n)
				partial = append(partial, buf[:n]...)
				for {
					i := bytes.IndexByte(partial, '\n')
					if i < 0 {
						break
					}
					t.line(string(partial[:i]), each)
					partial = partial[i+1:]
				}
				if len(partial) > 1<<20 { // a line without end: shown in pieces
					t.line(string(partial), each)
					partial = partial[:0]
				}
			}
		}
		for {
			read()
			select {
			case <-t.stop:
				read()
				if len(partial) > 0 {
					t.line(string(partial), each)
				}
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return t
}

func (t *logTail) line(line string, each func(string)) {
	const keep = 5
	each(line)
	if t.last = append(t.last, line); len(t.last) > keep {
		t.last = t.last[1:]
	}
}

// end reads what is left and returns the last lines joined.
func (t *logTail) end() string {
	select {
	case <-t.stop:
	default:
		close(t.stop)
	}
	<-t.done
	if len(t.last) == 0 {
		return "(none)"
	}
	return strings.Join(t.last, " | ")
}

func exitText(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exit status 0"
	case errors.As(err, &ee):
		return ee.ProcessState.String()
	}
	return err.Error()
}

// releaseCommandRan is when the app's release command succeeded for rel,
// or zero (none ran, or the app has none).
func (d *Deployer) releaseCommandRan(ctx context.Context, app *config.App, rel *Release) time.Time {
	if rel == nil || len(app.ReleaseCommand) == 0 {
		return time.Time{}
	}
	var rr ReleaseRecord
	if ok, err := d.store.Get(ctx, kindRelease, app.Name+"/"+rel.Label, &rr); err != nil || !ok {
		return time.Time{}
	}
	return rr.ReleaseCommandRan
}
