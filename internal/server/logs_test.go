package server

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The logs of stopped releases come before the running ones', so that the
// newest lines are at the bottom.
func TestLogsByLastWrite(t *testing.T) {
	dir := t.TempDir()
	names := []string{"web-v2-0.log", "web-v1-0.log", "web-v3-0.log"}
	ages := []time.Duration{time.Minute, time.Hour, 0}
	var files []string
	for i, n := range names {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, []byte("x\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		at := time.Now().Add(-ages[i])
		os.Chtimes(p, at, at)
		files = append(files, p)
	}
	byLastWrite(files)
	for i, want := range []string{"web-v1-0.log", "web-v2-0.log", "web-v3-0.log"} {
		if filepath.Base(files[i]) != want {
			t.Fatalf("order %v", files)
		}
	}
}
