package h1

import "sync/atomic"

// SocketCalls counts the system calls of Sockets (and RawSend, RawQuiet),
// for a test that checks how many a request costs: the kernel's own
// per-process counts (/proc/PID/io) leave out the socket calls.
type SocketCalls struct {
	Reads, Writes int64 // Peeks (RawQuiet) are not in Reads
	Peeks         int64
	Splices       int64 // each splice(2), in or out
}

var (
	counting    atomic.Bool
	socketCalls struct{ Reads, Writes, Peeks, Splices atomic.Int64 }
)

// CountSocketCalls starts counting, process-wide. Off by default: on a busy
// gateway with several CPUs, shared counters would cost each call a
// contended cache line.
func CountSocketCalls() { counting.Store(true) }

// SocketCallCounts returns the counts since CountSocketCalls.
func SocketCallCounts() SocketCalls {
	return SocketCalls{Reads: socketCalls.Reads.Load(), Writes: socketCalls.Writes.Load(), Peeks: socketCalls.Peeks.Load(), Splices: socketCalls.Splices.Load()}
}

func countCall(n *atomic.Int64) {
	if counting.Load() {
		n.Add(1)
	}
}
