package config

// Fleet says how the nodes sharing a Postgres state roll a deploy host by
// host and how the load balancer in front is told (docs/fleet.md).
type Fleet struct{}

// validateFleet checks node: and the fleet: section.
func (c *Config) validateFleet(bad func(key, format string, args ...any)) {}
