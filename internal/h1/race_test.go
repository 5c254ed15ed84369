//go:build race

package h1

// raceEnabled: the race detector is on, which makes sync.Pool drop items
// (so allocation counts run higher).
const raceEnabled = true
