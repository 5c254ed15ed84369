package deploy

import (
	"bufio"
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
// with the app's environment, its output streamed to the deploy's
// progress and to a log `handoff logs` shows. A non-zero exit or a time-out
// fails the step (and so the deploy: nothing of the release runs yet).
func (d *Deployer) runReleaseCommand(ctx context.Context, app *config.App, dep *Deploy, s *Step, report func(Progress)) error {
	rel := dep.release(s.Release)
	ctx, cancel := context.WithTimeout(ctx, app.ReleaseTimeout.D())
	defer cancel()
	logPath := d.sup.LogFile(app.Name, rel.Label+"-release")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o750); err != nil {
		return fmt.Errorf("release command: open its log: %w", err)
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("release command: open its log: %w", err)
	}
	defer logf.Close()
	prog := app.ReleaseCommand[0]
	if strings.Contains(prog, "/") && !filepath.IsAbs(prog) {
		prog = filepath.Join(rel.Dir, prog)
	}
	cmd := exec.CommandContext(ctx, prog, app.ReleaseCommand[1:]...)
	cmd.Dir = rel.Dir
	cmd.Env = append(os.Environ(), "HANDOFF_APP="+app.Name, "HANDOFF_RELEASE="+rel.Label)
	for k, v := range app.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a time-out kills what it started too
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.StdoutPipe()
	if err != nil {
		return fmt.Errorf("release command: %w", err)
	}
	cmd.Stderr = cmd.Stdout
	start := time.Now()
	fmt.Fprintf(logf, "--- %s release command %s for %s\n", start.UTC().Format(time.RFC3339), strings.Join(app.ReleaseCommand, " "), rel.Label)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("release command %s: %w", strings.Join(app.ReleaseCommand, " "), err)
	}
	defer d.setLive(dep.ID, "")
	tail := streamLines(out, logf, func(line string) {
		d.setLive(dep.ID, line) // status and the dashboard show its latest line as the step's detail
		if report != nil {
			report(Progress{Time: now(), Deploy: dep.ID, Step: s.String(), State: Running, Message: line})
		}
	})
	err = cmd.Wait()
	took := time.Since(start).Round(time.Millisecond)
	fmt.Fprintf(logf, "--- ended after %s: %v\n", took, exitText(err))
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("release command %s did not end within release_timeout %s (killed); its last lines: %s", strings.Join(app.ReleaseCommand, " "), app.ReleaseTimeout, tail)
	case err != nil:
		return fmt.Errorf("release command %s failed (%s); its last lines: %s", strings.Join(app.ReleaseCommand, " "), exitText(err), tail)
	}
	if err := d.markReleaseCommandRan(ctx, app, rel); err != nil {
		return err
	}
	s.Detail = fmt.Sprintf("%s ran in %s (its output: handoff logs %s)", strings.Join(app.ReleaseCommand, " "), took, app.Name)
	d.event(app.Name, "release", "", "release command of %s ran in %s; its last lines: %s", rel.Label, took, tail)
	return nil
}

// markReleaseCommandRan records that the release command succeeded.
func (d *Deployer) markReleaseCommandRan(ctx context.Context, app *config.App, rel Release) error {
	var rr ReleaseRecord
	key := app.Name + "/" + rel.Label
	if _, err := d.store.Get(ctx, kindRelease, key, &rr); err != nil {
		return err
	}
	rr.ReleaseCommandRan = now()
	return d.store.Put(ctx, kindRelease, key, rr)
}

// streamLines copies r to log line by line, calling each with every line,
// and returns the last few lines joined, for an error message.
func streamLines(r io.Reader, log io.Writer, each func(string)) string {
	const keep = 5
	var last []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fmt.Fprintln(log, line)
		each(line)
		if last = append(last, line); len(last) > keep {
			last = last[1:]
		}
	}
	if len(last) == 0 {
		return "(none)"
	}
	return strings.Join(last, " | ")
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
