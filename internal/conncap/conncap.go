// Package conncap is one cap on the client connections a process holds,
// shared by everything that accepts them: each of the gateway's listen
// addresses and each tcp app's. The cap handoff derives from the
// descriptor limit is a budget for the whole process (each client
// connection may need one to an instance too); a cap per listener would
// multiply it by the number of listeners, past the limit it was derived
// from.
package conncap

import "sync/atomic"

// Cap counts connections against a maximum. A nil *Cap takes every
// connection and counts none.
type Cap struct {
	max  int64
	held atomic.Int64
}

// New returns a cap of n connections (at least one).
func New(n int) *Cap { return &Cap{max: int64(max(n, 1))} }

// Take counts one more connection, or reports false, counting nothing,
// when the cap is reached.
func (c *Cap) Take() bool {
	if c == nil {
		return true
	}
	if c.held.Add(1) > c.max {
		c.held.Add(-1)
		return false
	}
	return true
}

// Give uncounts a connection that Take counted.
func (c *Cap) Give() {
	if c != nil {
		c.held.Add(-1)
	}
}

// Held is the number of connections counted now.
func (c *Cap) Held() int64 {
	if c == nil {
		return 0
	}
	return c.held.Load()
}
