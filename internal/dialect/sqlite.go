package dialect

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"modernc.org/sqlite"
	_ "modernc.org/sqlite" // the pure-Go SQLite driver keeps the binary static
)

type sqliteDB struct{ db *sql.DB }

var _ Dialect = (*sqliteDB)(nil)

// openSQLite opens the file with WAL (readers never wait for a writer),
// every transaction BEGIN IMMEDIATE (a writer takes the write lock up front
// instead of failing half-way on upgrade) and a busy timeout of lockTimeout.
func openSQLite(ctx context.Context, path string, lockTimeout time.Duration) (Dialect, error) {
	q := url.Values{}
	q.Set("_txlock", "immediate")
	for _, p := range []string{
		"busy_timeout(" + strconv.FormatInt(max(lockTimeout.Milliseconds(), 1), 10) + ")",
		"journal_mode(WAL)", "synchronous(NORMAL)", "foreign_keys(ON)",
	} {
		q.Add("_pragma", p)
	}
	db, err := sql.Open("sqlite", "file:"+path+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	return &sqliteDB{db: db}, nil
}

func (s *sqliteDB) Name() string              { return "sqlite" }
func (s *sqliteDB) DB() *sql.DB               { return s.db }
func (s *sqliteDB) Close() error              { return s.db.Close() }
func (s *sqliteDB) Param(n int) string        { return "?" + strconv.Itoa(n) }
func (s *sqliteDB) Quote(ident string) string { return quoteIdent(ident) }

// SQLite primary result codes that mean "another connection holds the lock".
const (
	sqliteBusy   = 5
	sqliteLocked = 6
)

func (s *sqliteDB) Classify(err error) Class {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqliteBusy, sqliteLocked:
			return Busy
		}
	}
	return Permanent
}

// BeginWrite relies on the DSN's _txlock=immediate: the write lock is taken
// at BEGIN, waiting at most the busy timeout; SQLite transactions are
// serializable, so isolation is ignored.
func (s *sqliteDB) BeginWrite(ctx context.Context, _ sql.IsolationLevel, _ time.Duration) (*sql.Tx, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin immediate: %w", err)
	}
	return tx, nil
}

func (s *sqliteDB) ExecNoTx(ctx context.Context, stmt string, _ time.Duration) error {
	_, err := s.db.ExecContext(ctx, stmt)
	return err
}

// EnsureTables creates the tables in one write transaction; SQLite's write
// lock already serialises concurrent creators.
func (s *sqliteDB) EnsureTables(ctx context.Context, stmts ...string) error {
	tx, err := s.BeginWrite(ctx, 0, 0)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, stmt := range stmts {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	return tx.Commit()
}

var sqliteNoTx = regexp.MustCompile(`(?is)^\s*(vacuum\b|pragma\s+journal_mode\b)`)

func (s *sqliteDB) NoTransaction(stmt string) bool { return sqliteNoTx.MatchString(stmt) }

// CheckSyntax prepares the statement. Preparing also resolves names, so
// only the parser's own complaints count: a table that an earlier statement
// of the same migration creates is not an error yet.
func (s *sqliteDB) CheckSyntax(ctx context.Context, stmt string) error {
	st, err := s.db.PrepareContext(ctx, stmt)
	if err == nil {
		return st.Close()
	}
	msg := err.Error()
	for _, m := range []string{"syntax error", "incomplete input", "unrecognized token"} {
		if strings.Contains(msg, m) {
			return &SyntaxError{Msg: msg}
		}
	}
	return nil
}

func (s *sqliteDB) KeyKind(ctx context.Context, table, column string) (KeyKind, error) {
	var typ string
	err := s.db.QueryRowContext(ctx, `SELECT type FROM pragma_table_info(?1) WHERE name = ?2`, table, column).Scan(&typ)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("key %s.%s: no such column", table, column)
	}
	if err != nil {
		return "", fmt.Errorf("read type of %s.%s: %w", table, column, err)
	}
	// SQLite's type affinity rules, section 3.1 of its datatype page.
	t := strings.ToUpper(typ)
	switch {
	case strings.Contains(t, "INT"):
		return KeyInt, nil
	case strings.Contains(t, "CHAR"), strings.Contains(t, "CLOB"), strings.Contains(t, "TEXT"):
		return KeyText, nil
	}
	return "", fmt.Errorf("key %s.%s is %q: %w", table, column, typ, ErrUnsupportedKey)
}

func (s *sqliteDB) EstimateRows(ctx context.Context, table string) (int64, error) {
	return countRows(ctx, s, table)
}

func (s *sqliteDB) ReplicationLag(context.Context) (time.Duration, error) { return 0, nil }

// IndexValid: SQLite builds an index inside its transaction, so an index
// that exists is always valid.
func (s *sqliteDB) IndexValid(ctx context.Context, _, name string) (string, bool, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ?1`, name).Scan(&n)
	if err != nil {
		return "", false, fmt.Errorf("look up index %s: %w", name, err)
	}
	if n == 0 {
		return "", false, nil
	}
	return s.Quote(name), true, nil
}
