// Package e2e proves handoff's promises with the real binary: real backend
// processes, real load that never retries, and the CLI as an operator runs
// it. Every test counts failed requests and expects zero.
package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// bin is the handoff binary under test, built once for the package.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "handoff-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: make temp dir:", err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "handoff")
	// The binary is built without the race detector: under it the server
	// runs many times slower, so the load tests would measure the detector.
	// The packages' own tests run under -race; HANDOFF_E2E_RACE=1 builds
	// the binary with it too.
	args := []string{"build", "-o", bin}
	if raceEnabled && os.Getenv("HANDOFF_E2E_RACE") == "1" {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/handoff")...)
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: build handoff: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// TestSourcesWatched stats every source file the binary is built from. go
// test reuses a cached pass unless a file that a test opened or stat'ed has
// changed; the build runs in another process (and before m.Run, where
// nothing is recorded), so without this a change to the server would be
// "tested" by a cached pass.
func TestSourcesWatched(t *testing.T) {
	for _, root := range []string{"../cmd", "../internal", "../go.mod", "../go.sum"} {
		filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				os.Stat(path)
			}
			return nil
		})
	}
}
