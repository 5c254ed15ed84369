package sampleapp

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"
)

// WorkerOptions describe the sample app's job worker.
type WorkerOptions struct {
	// Release is written on every line, to see which release ran a job.
	Release string
	// JobDuration is how long each job takes.
	JobDuration time.Duration
	// JobLog is the file that lines are appended to; "" writes them to stdout.
	JobLog string
}

// RunWorker runs jobs back to back until ctx ends. Each job appends
// "start <release> <job#> <unix-ms>" when it begins and "done <release>
// <job#> <unix-ms>" when it ends. When ctx ends (SIGTERM) the job under way
// is finished, not cut short, and no new one starts; RunWorker then returns
// nil. This is the contract a worker app gives handoff's drain.
func RunWorker(ctx context.Context, opts WorkerOptions) error {
	for job := 1; ctx.Err() == nil; job++ {
		if err := runJob(opts, job); err != nil {
			return err
		}
	}
	return nil
}

// runJob runs one job. It deliberately ignores ctx: finishing the job is
// the point of a drain.
func runJob(opts WorkerOptions, job int) error {
	if err := logJob(opts, "start", job); err != nil {
		return err
	}
	time.Sleep(opts.JobDuration)
	return logJob(opts, "done", job)
}

// logJob writes one line to the job log, or to stdout without one.
func logJob(opts WorkerOptions, event string, job int) error {
	line := fmt.Sprintf("%s %s %d %d\n", event, opts.Release, job, time.Now().UnixMilli())
	if opts.JobLog == "" {
		if _, err := io.WriteString(os.Stdout, line); err != nil {
			return fmt.Errorf("write job line: %w", err)
		}
		return nil
	}
	return appendLine(opts.JobLog, line)
}

// appendLine appends line with a single write to a file opened O_APPEND, so
// that the old and the new release's workers can share one log during a
// drain without tearing each other's lines.
func appendLine(path, line string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("open job log: %w", err)
	}
	if _, err := f.WriteString(line); err != nil {
		_ = f.Close()
		return fmt.Errorf("write job log: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close job log: %w", err)
	}
	return nil
}
