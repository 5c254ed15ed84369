// Package e2e proves handoff's promises with the real binary: real backend
// processes, real load that never retries, and the CLI as an operator runs
// it. Every test counts failed requests and expects zero.
package e2e

import (
	"fmt"
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
