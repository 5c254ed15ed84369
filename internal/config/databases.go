package config

// Databases are the database endpoints handoff fronts (docs/databases.md).
type Databases struct{}

// validateDatabases checks the databases: section.
func (c *Config) validateDatabases(bad func(key, format string, args ...any)) {}
