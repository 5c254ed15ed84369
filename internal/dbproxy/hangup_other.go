//go:build !linux

package dbproxy

import "net"

// hungUp is known only on Linux (see hangup_linux.go); elsewhere a held
// message runs when the pause lifts, whether or not its client waits.
func hungUp(net.Conn) bool { return false }
