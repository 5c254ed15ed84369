package server

import (
	"fmt"
	"syscall"
	"time"
)

// descriptorWarnFor is how long status warns after the gateway last ran
// out of file descriptors.
const descriptorWarnFor = 10 * time.Minute

// descriptorWarnings says, in status, that the gateway ran out of file
// descriptors lately: its own fault, which it no longer blames on the
// instances (none was marked down for it), and what to do about it.
func (s *Server) descriptorWarnings() []string {
	ex := s.gw.DescriptorExhaustion()
	if ex.Count == 0 || time.Since(ex.Last) > descriptorWarnFor {
		return nil
	}
	limit := "unknown"
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		limit = fmt.Sprint(lim.Cur)
	}
	return []string{fmt.Sprintf("the gateway ran out of file descriptors %d times, last at %s (%s); the instances were not marked down for it. "+
		"Raise the open-file limit (now %s: LimitNOFILE= in the systemd unit, or ulimit -n) or lower gateway.max_connections",
		ex.Count, ex.Last.Local().Format(time.TimeOnly), ex.Error, limit)}
}
