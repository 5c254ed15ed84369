// Package dialect hides the differences between the SQL databases that
// handoff migrates: how to open them, how to begin a write transaction with
// a bounded lock wait, which errors are conflicts worth retrying, and the few
// catalogue questions that migrate and evolve ask. Postgres and SQLite
// implement it; MySQL/MariaDB is meant to slot in behind the same interface.
package dialect

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Dialect is one database engine, opened on one database.
type Dialect interface {
	// Name is "postgres" or "sqlite".
	Name() string
	// DB is the connection pool. Callers may run portable SQL on it, writing
	// bind parameters with Param.
	DB() *sql.DB
	// Close closes the pool.
	Close() error
	// Param renders the n-th (1-based) bind parameter: $1 or ?1.
	Param(n int) string
	// Quote quotes a possibly schema-qualified identifier (items, app.items).
	Quote(ident string) string

	// Classify says what kind of failure err is, so that callers can retry
	// conflicts and stop on everything else.
	Classify(err error) Class
	// BeginWrite opens a write transaction whose lock waits give up after
	// lockTimeout (Postgres: SET LOCAL lock_timeout; SQLite: BEGIN IMMEDIATE
	// under the busy timeout). isolation "" is the engine's default.
	BeginWrite(ctx context.Context, isolation sql.IsolationLevel, lockTimeout time.Duration) (*sql.Tx, error)
	// ExecNoTx runs one statement outside any transaction (CREATE INDEX
	// CONCURRENTLY, VACUUM) with lock waits bounded by lockTimeout.
	ExecNoTx(ctx context.Context, stmt string, lockTimeout time.Duration) error
	// EnsureTables runs CREATE TABLE IF NOT EXISTS statements for handoff's
	// own bookkeeping tables, safe against another process doing the same at
	// the same moment.
	EnsureTables(ctx context.Context, stmts ...string) error
	// NoTransaction reports whether stmt cannot run inside a transaction.
	NoTransaction(stmt string) bool
	// CheckSyntax parses stmt without running it or taking any lock. A
	// *SyntaxError says where it is wrong; other problems (a table that does
	// not exist yet) are not its business and return nil.
	CheckSyntax(ctx context.Context, stmt string) error

	// KeyKind tells how the key column of table can be ranged over, and
	// refuses (ErrUnsupportedKey, naming table and column) a column of any
	// other type. The keys themselves are read and ordered by the
	// functions of keys.go, in the column's own order.
	KeyKind(ctx context.Context, table, column string) (KeyKind, error)
	// EstimateRows returns the table's row count, estimated when counting
	// exactly would be slow.
	EstimateRows(ctx context.Context, table string) (int64, error)
	// ReplicationLag is the largest lag of any replica, 0 without replicas.
	ReplicationLag(ctx context.Context) (time.Duration, error)
	// IndexValid finds the index name (exactly as stored: an unquoted name
	// lower-cased) of table (as SQL writes it: maybe schema-qualified,
	// maybe quoted) and reports its name as SQL writes it, schema and all
	// ("" when there is none), and whether it is valid (a failed CREATE
	// INDEX CONCURRENTLY leaves an invalid one).
	IndexValid(ctx context.Context, table, name string) (qualified string, valid bool, err error)
}

// Class is a kind of database failure.
type Class int

// The classes of failure. The retryable ones are conflicts with concurrent
// work that go away if the same work is tried again a little later.
const (
	Permanent Class = iota
	Serialization
	Deadlock
	LockTimeout
	Busy
	// AlreadyDone is a statement whose effect holds already: what it
	// creates exists, what it drops is gone. Not retryable; a caller that
	// knows the statement may have run before can count it applied.
	AlreadyDone
)

var classNames = map[Class]string{
	Permanent: "permanent", Serialization: "serialization failure", Deadlock: "deadlock",
	LockTimeout: "lock timeout", Busy: "database busy", AlreadyDone: "already done",
}

func (c Class) String() string { return classNames[c] }

// Retryable reports whether trying the same work again may succeed.
func (c Class) Retryable() bool { return c != Permanent && c != AlreadyDone }

// KeyKind is how a key column is walked: integers by arithmetic ranges,
// text and uuid by keyset, in the order the database gives them.
type KeyKind string

// The kinds of key.
const (
	KeyInt  KeyKind = "int"
	KeyText KeyKind = "text" // text, varchar, char under any collation
	KeyUUID KeyKind = "uuid"
)

// SyntaxError is a statement the database's parser rejects.
type SyntaxError struct {
	// Line is the 1-based line within the statement, 0 when unknown.
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return e.Msg }

// ErrUnsupportedKey is returned for a key column that is not an integer,
// text or uuid.
var ErrUnsupportedKey = errors.New("key column must be an integer, text or uuid")

// Open opens the database named by url: postgres:// or postgresql:// for
// Postgres; sqlite://path, file:path or a plain path for SQLite.
// lockTimeout becomes SQLite's busy timeout.
func Open(ctx context.Context, url string, lockTimeout time.Duration) (Dialect, error) {
	if err := CheckURL(url); err != nil {
		return nil, err
	}
	if IsPostgres(url) {
		return openPostgres(ctx, url)
	}
	return openSQLite(ctx, SQLitePath(url), lockTimeout)
}

var urlScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]{0,15}$`)

// CheckURL refuses a URL of a database handoff's migrations do not run on
// (mysql://, a mistyped pgsql://), naming only its scheme: a URL's
// password must not reach an error, a log or an API answer, as it did
// when such a URL was taken for a SQLite file's path.
func CheckURL(url string) error {
	scheme, _, ok := strings.Cut(url, "://")
	if !ok || IsPostgres(url) || scheme == "sqlite" {
		return nil
	}
	what := "a database URL that is neither postgres:// nor SQLite"
	if urlScheme.MatchString(scheme) {
		what = fmt.Sprintf("a database URL of scheme %q", scheme)
	}
	return fmt.Errorf("%s: handoff's migrations run on postgres:// (or postgresql://) and SQLite (sqlite://PATH, file:PATH or a path)", what)
}

// IsPostgres reports whether url names a Postgres database.
func IsPostgres(url string) bool {
	return strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://")
}

// SQLitePath strips the sqlite:// or file: prefix from a SQLite URL.
func SQLitePath(url string) string {
	return strings.TrimPrefix(strings.TrimPrefix(url, "sqlite://"), "file:")
}

var identRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$`)

// ValidIdent reports whether s is a plain, possibly schema-qualified
// identifier; only those are accepted for tables and keys, so that quoting
// them is always right.
func ValidIdent(s string) bool { return identRE.MatchString(s) }

func quoteIdent(ident string) string {
	parts := strings.Split(ident, ".")
	for i, p := range parts {
		parts[i] = `"` + strings.ReplaceAll(p, `"`, `""`) + `"`
	}
	return strings.Join(parts, ".")
}

// Rebind rewrites the ? placeholders of a portable statement into the
// dialect's numbered ones ($1 or ?1). A ? inside a string literal would be
// rewritten too: handoff's own statements have none.
func Rebind(d Dialect, query string) string {
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteString(d.Param(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

func countRows(ctx context.Context, d Dialect, table string) (int64, error) {
	var n int64
	if err := d.DB().QueryRowContext(ctx, `SELECT count(*) FROM `+d.Quote(table)).Scan(&n); err != nil {
		return 0, fmt.Errorf("count rows of %s: %w", table, err)
	}
	return n, nil
}
