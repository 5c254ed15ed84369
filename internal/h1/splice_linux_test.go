//go:build linux && (amd64 || arm64)

package h1

import "testing"

// TestPipesCapped checks that the splice pipes open at once are capped
// (each is two descriptors out of handoff serve's reserve): past the cap a
// splice is refused, to be copied instead, and a pipe closed for holding
// a failed splice's bytes frees its place.
func TestPipesCapped(t *testing.T) {
	var taken []*pipe
	defer func() {
		for _, p := range taken {
			p.release()
		}
	}()
	for len(taken) < maxPipes {
		p, err := takePipe()
		if err != nil {
			t.Fatalf("pipe %d of %d: %v", len(taken)+1, maxPipes, err)
		}
		taken = append(taken, p)
	}
	if _, err := takePipe(); err != ErrNoSplice {
		t.Fatalf("a pipe past the cap: %v, want ErrNoSplice", err)
	}
	// A pipe that still holds bytes is closed, not kept: its place frees.
	last := taken[len(taken)-1]
	taken = taken[:len(taken)-1]
	last.held = 1
	last.release()
	p, err := takePipe()
	if err != nil {
		t.Fatalf("after a pipe was closed: %v", err)
	}
	taken = append(taken, p)
	if pipes.open != maxPipes {
		t.Fatalf("%d pipes counted open, want %d", pipes.open, maxPipes)
	}
}
