package config

import (
	"fmt"
	"net"
	"path/filepath"
	"reflect"
	"regexp"
	"time"

	"gopkg.in/yaml.v3"
)

// Databases are the database endpoints handoff fronts, in file order
// (docs/databases.md).
type Databases []*DatabaseEndpoint

// DatabaseEndpoint is one database endpoint: a local port the app
// connects to instead of its database server; handoff connects to the
// current primary, and can hold and move the app's connections between
// transactions (a switchover).
type DatabaseEndpoint struct {
	Name string `yaml:"-"`
	// Kind is the wire protocol: postgres or mysql (MariaDB too).
	Kind string `yaml:"kind"`
	// Listen is where the app connects; loopback only (clients talk
	// plaintext to the endpoint).
	Listen string `yaml:"listen"`
	// Primary is the server (host:port) the endpoint starts on.
	Primary string `yaml:"primary"`
	// CredentialsFile holds "user:password" lines (mode 0600): the
	// password the endpoint logs in with when it moves a user's session
	// to a new server. None: no password (trust). A client's own login
	// at connect is relayed to the server untouched either way.
	CredentialsFile string `yaml:"credentials_file"`
	// User is the user handoff's own checks (db status: the server's
	// role) log in as, with its password from CredentialsFile. Default:
	// postgres, or root for mysql.
	User string `yaml:"user"`
	// TLS to the server (Postgres, MySQL, MariaDB): disable, require (encrypted, not
	// verified) or verify-full. Default: disable for a loopback primary,
	// verify-full otherwise.
	TLS string `yaml:"tls"`
	// TLSCAFile verifies the server with this CA instead of the system's.
	TLSCAFile string `yaml:"tls_ca_file"`
	// MaxConnections caps the app's connections to the endpoint.
	MaxConnections int `yaml:"max_connections"`
	// ConnectTimeout bounds connecting and logging in to a server.
	ConnectTimeout Duration `yaml:"connect_timeout"`
	// StartupTimeout bounds a client's connect and login.
	StartupTimeout Duration `yaml:"startup_timeout"`
	// HoldMax is the longest the endpoint holds transactions for a
	// switchover: past it, it resumes by itself.
	HoldMax Duration `yaml:"hold_max"`
	// IdleTimeout closes a connection idle between transactions.
	IdleTimeout Duration `yaml:"idle_timeout"`
}

// The kinds of database endpoint.
const (
	DatabasePostgres = "postgres"
	DatabaseMySQL    = "mysql"
)

// Get returns the named database endpoint, or nil.
func (d Databases) Get(name string) *DatabaseEndpoint {
	for _, db := range d {
		if db.Name == name {
			return db
		}
	}
	return nil
}

// DatabaseListenerName names a database endpoint's listener in a
// hand-over (LISTEN_FDNAMES).
func DatabaseListenerName(name string) string { return "db." + name }

func defaultDatabaseEndpoint(name string) *DatabaseEndpoint {
	return &DatabaseEndpoint{
		Name:           name,
		MaxConnections: 1000,
		ConnectTimeout: Duration(5 * time.Second),
		StartupTimeout: Duration(30 * time.Second),
		HoldMax:        Duration(30 * time.Second),
		IdleTimeout:    Duration(time.Hour),
	}
}

// databases decodes the databases: section, keeping its order.
func (d *decoder) databases(n *yaml.Node, dbs *Databases, path string) {
	d.pairs(n, path, func(k, val *yaml.Node) {
		db := defaultDatabaseEndpoint(k.Value)
		d.lines[join(path, k.Value)] = k.Line
		d.value(val, reflect.ValueOf(db).Elem(), join(path, k.Value))
		*dbs = append(*dbs, db)
	})
}

var databaseName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// validateDatabases checks the databases: section.
func (c *Config) validateDatabases(bad func(key, format string, args ...any)) {
	for _, db := range c.Databases {
		key := "databases." + db.Name
		if !databaseName.MatchString(db.Name) {
			bad(key, "a database endpoint's name is lower-case letters, digits, - and _")
		}
		switch db.Kind {
		case DatabasePostgres, DatabaseMySQL:
		case "":
			bad(key+".kind", "say which server this is: postgres or mysql (MariaDB too)")
		default:
			bad(key+".kind", "want postgres or mysql, got %q", db.Kind)
		}
		if db.User == "" {
			db.User = "postgres"
			if db.Kind == DatabaseMySQL {
				db.User = "root"
			}
		}
		if db.Listen == "" {
			bad(key+".listen", "give the address the app connects to, such as 127.0.0.1:6432")
		} else if host, _, err := net.SplitHostPort(db.Listen); err != nil {
			bad(key+".listen", "want host:port, got %q", db.Listen)
		} else if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			bad(key+".listen", "must be a loopback address (127.0.0.1, ::1): clients talk plaintext to the endpoint, got %q", db.Listen)
		}
		if db.Primary == "" {
			bad(key+".primary", "give the database server's host:port")
		} else {
			checkAddr(bad, key+".primary", db.Primary)
		}
		switch db.TLS {
		case "", "disable", "require", "verify-full":
		default:
			bad(key+".tls", "want disable, require or verify-full, got %q", db.TLS)
		}
		if db.TLS == "" {
			db.TLS = "verify-full"
			if host, _, err := net.SplitHostPort(db.Primary); err == nil && isLoopback(host) {
				db.TLS = "disable"
			}
		}
		if db.TLSCAFile != "" && db.TLS != "verify-full" {
			bad(key+".tls_ca_file", "is used with tls: verify-full only")
		}
		if db.MaxConnections < 1 {
			bad(key+".max_connections", "must be at least 1")
		}
		for _, d := range []struct {
			key string
			v   Duration
		}{{"connect_timeout", db.ConnectTimeout}, {"startup_timeout", db.StartupTimeout}, {"hold_max", db.HoldMax}, {"idle_timeout", db.IdleTimeout}} {
			if d.v <= 0 {
				bad(key+"."+d.key, "must be more than 0")
			}
		}
		db.resolvePaths(c.Path)
		for _, other := range c.Databases {
			if other == db {
				break
			}
			if other.Listen == db.Listen {
				bad(key+".listen", "%s is also the listen address of databases.%s", db.Listen, other.Name)
			}
		}
	}
}

// resolvePaths makes the endpoint's files relative to the config file's
// directory, as Load does for the others.
func (db *DatabaseEndpoint) resolvePaths(configPath string) {
	if configPath == "" {
		return
	}
	dir, err := filepath.Abs(filepath.Dir(configPath))
	if err != nil {
		return
	}
	for _, p := range []*string{&db.CredentialsFile, &db.TLSCAFile} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(dir, *p)
		}
	}
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// String names the endpoint in logs.
func (db *DatabaseEndpoint) String() string {
	return fmt.Sprintf("%s (%s on %s, primary %s)", db.Name, db.Kind, db.Listen, db.Primary)
}
