package sampleapp

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// jobLine is one parsed line of the job log.
type jobLine struct {
	event, release string
	job            int
	ms             int64
}

func readJobLog(t *testing.T, path string) []jobLine {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var lines []jobLine
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(l)
		if len(f) != 4 {
			continue
		}
		job, _ := strconv.Atoi(f[2])
		ms, _ := strconv.ParseInt(f[3], 10, 64)
		lines = append(lines, jobLine{f[0], f[1], job, ms})
	}
	return lines
}

func TestWorkerFinishesItsJobAndStartsNoOther(t *testing.T) {
	const jobDuration = 300 * time.Millisecond
	log := filepath.Join(t.TempDir(), "jobs.log")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- RunWorker(ctx, WorkerOptions{Release: "v1", JobDuration: jobDuration, JobLog: log}) }()

	deadline := time.Now().Add(20 * time.Second)
	for len(readJobLog(t, log)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no job started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel() // plays SIGTERM
	cancelMs := time.Now().UnixMilli()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("RunWorker = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("RunWorker did not return after the signal")
	}

	lines := readJobLog(t, log)
	for i, l := range lines {
		// Lines alternate start n, done n: every job started was finished.
		wantEvent, wantJob := "start", i/2+1
		if i%2 == 1 {
			wantEvent = "done"
		}
		if l.event != wantEvent || l.job != wantJob || l.release != "v1" {
			t.Fatalf("line %d = %+v, want %s v1 %d; log: %+v", i, l, wantEvent, wantJob, lines)
		}
	}
	if len(lines)%2 != 0 {
		t.Fatalf("log ends with a job not done: %+v", lines)
	}
	// A job may begin in the instant between the worker's look at the signal
	// and the signal itself; "after" means later than that instant.
	last := lines[len(lines)-2]
	if last.ms > cancelMs+100 {
		t.Fatalf("job %d started at %d, after the signal at %d", last.job, last.ms, cancelMs)
	}
	// When the signal came well inside the first job (the usual case), that
	// job must be the only one; a machine slow enough to miss that window
	// still had to satisfy the checks above.
	if first := lines[0]; cancelMs-first.ms < int64(jobDuration/time.Millisecond)/2 && len(lines) != 2 {
		t.Fatalf("signal inside job 1, yet %d jobs ran: %+v", len(lines)/2, lines)
	}
}
