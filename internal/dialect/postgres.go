package dialect

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver
)

type postgres struct{ db *sql.DB }

var _ Dialect = (*postgres)(nil)

func openPostgres(ctx context.Context, url string) (Dialect, error) {
	db, err := sql.Open("pgx", url)
	if err != nil {
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("open postgres: %w", err)
	}
	return &postgres{db: db}, nil
}

func (p *postgres) Name() string              { return "postgres" }
func (p *postgres) DB() *sql.DB               { return p.db }
func (p *postgres) Close() error              { return p.db.Close() }
func (p *postgres) Param(n int) string        { return "$" + strconv.Itoa(n) }
func (p *postgres) Quote(ident string) string { return quoteIdent(ident) }

// Postgres SQLSTATEs that mean "a concurrent transaction got in the way",
// and those that mean the statement's effect is there already.
var pgClasses = map[string]Class{
	"40001": Serialization, // serialization_failure
	"40P01": Deadlock,      // deadlock_detected
	"55P03": LockTimeout,   // lock_not_available
	"42710": AlreadyDone,   // duplicate_object (an enum label, a constraint)
	"42P07": AlreadyDone,   // duplicate_table (a relation, an index)
	"42701": AlreadyDone,   // duplicate_column
	"42704": AlreadyDone,   // undefined_object (an index dropped already)
}

func (p *postgres) Classify(err error) Class {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pgClasses[pe.Code]
	}
	return Permanent
}

func (p *postgres) BeginWrite(ctx context.Context, iso sql.IsolationLevel, lockTimeout time.Duration) (*sql.Tx, error) {
	tx, err := p.db.BeginTx(ctx, &sql.TxOptions{Isolation: iso})
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	if _, err := tx.ExecContext(ctx, "SET LOCAL lock_timeout = "+msLiteral(lockTimeout)); err != nil {
		tx.Rollback()
		return nil, fmt.Errorf("set lock_timeout: %w", err)
	}
	return tx, nil
}

func (p *postgres) ExecNoTx(ctx context.Context, stmt string, lockTimeout time.Duration) error {
	conn, err := p.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("get connection: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "SET lock_timeout = "+msLiteral(lockTimeout)); err != nil {
		return fmt.Errorf("set lock_timeout: %w", err)
	}
	_, execErr := conn.ExecContext(ctx, stmt)
	// The connection goes back to the pool: leave it as we found it.
	if _, err := conn.ExecContext(context.WithoutCancel(ctx), "RESET lock_timeout"); err != nil {
		conn.Raw(func(any) error { return driver.ErrBadConn }) // discard it instead
	}
	return execErr
}

// EnsureTables serialises creators on an advisory lock: Postgres's IF NOT
// EXISTS only checks the catalogue, so two sessions creating the same table
// at once can both pass the check and one fails on pg_type's unique index.
func (p *postgres) EnsureTables(ctx context.Context, stmts ...string) error {
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock(hashtext('handoff: bookkeeping tables'))"); err != nil {
		return fmt.Errorf("take schema lock: %w", err)
	}
	for _, stmt := range stmts {
		if _, err := tx.ExecContext(ctx, stmt); err != nil {
			return err
		}
	}
	return tx.Commit()
}

func msLiteral(d time.Duration) string {
	return "'" + strconv.FormatInt(max(d.Milliseconds(), 1), 10) + "ms'"
}

// pgNoTx matches the statements Postgres refuses inside a transaction block.
var pgNoTx = regexp.MustCompile(`(?is)^\s*(` +
	`create\s+(unique\s+)?index\s+concurrently|` +
	`drop\s+index\s+concurrently|` +
	`reindex\b.*\bconcurrently|` +
	`alter\s+table\b.*\bdetach\s+partition\b.*\bconcurrently|` +
	`vacuum\b|create\s+database\b|drop\s+database\b|alter\s+system\b|` +
	`alter\s+type\b.*\badd\s+value\b|` + // refused in a transaction before PG 12; harmless outside one
	`create\s+tablespace\b|drop\s+tablespace\b)`)

func (p *postgres) NoTransaction(stmt string) bool { return pgNoTx.MatchString(stmt) }

// CheckSyntax has PL/pgSQL's validator parse the statement as the body of a
// throwaway temporary function in a transaction that is rolled back: the
// server's own parser checks it, and no table is touched or locked.
func (p *postgres) CheckSyntax(ctx context.Context, stmt string) error {
	tx, err := p.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin syntax check: %w", err)
	}
	defer tx.Rollback()
	tag := "$handoff_check$"
	for strings.Contains(stmt, tag) {
		tag = strings.TrimSuffix(tag, "$") + "x$"
	}
	prefix := "CREATE FUNCTION pg_temp.handoff_syntax_check() RETURNS void LANGUAGE plpgsql AS " + tag + " BEGIN\n"
	q := prefix + stmt + "\n;\nEND " + tag
	_, err = tx.ExecContext(ctx, q)
	var pe *pgconn.PgError
	if err == nil || !errors.As(err, &pe) || pe.Code != "42601" { // syntax_error
		return nil
	}
	line := 0
	if pe.Position > int32(len(prefix)) && int(pe.Position) <= len(q) {
		// Position counts characters from 1; the statement is ASCII around
		// its errors often enough that bytes are a fair proxy for lines.
		line = 1 + strings.Count(q[len(prefix):pe.Position-1], "\n")
	}
	return &SyntaxError{Line: line, Msg: pe.Message}
}

func (p *postgres) KeyKind(ctx context.Context, table, column string) (KeyKind, error) {
	var typ string
	err := p.db.QueryRowContext(ctx,
		`SELECT format_type(a.atttypid, NULL) FROM pg_attribute a
		 WHERE a.attrelid = $1::regclass AND a.attname = $2 AND NOT a.attisdropped`,
		table, column).Scan(&typ)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("key %s.%s: no such column", table, column)
	}
	if err != nil {
		return "", fmt.Errorf("read type of %s.%s: %w", table, column, err)
	}
	switch typ {
	case "smallint", "integer", "bigint":
		return KeyInt, nil
	case "text", "character varying", "character":
		return KeyText, nil
	case "uuid":
		return KeyUUID, nil
	}
	return "", fmt.Errorf("key %s.%s is %s: %w", table, column, typ, ErrUnsupportedKey)
}

// EstimateRows trusts the planner's statistics for big tables: counting
// five million rows to draw a progress bar would cost more than a batch.
func (p *postgres) EstimateRows(ctx context.Context, table string) (int64, error) {
	var est float64
	err := p.db.QueryRowContext(ctx, `SELECT reltuples FROM pg_class WHERE oid = $1::regclass`, table).Scan(&est)
	if err != nil {
		return 0, fmt.Errorf("estimate rows of %s: %w", table, err)
	}
	if est > 1e6 {
		return int64(est), nil
	}
	return countRows(ctx, p, table)
}

func (p *postgres) ReplicationLag(ctx context.Context) (time.Duration, error) {
	var secs float64
	err := p.db.QueryRowContext(ctx, `SELECT COALESCE(EXTRACT(EPOCH FROM max(GREATEST(write_lag, flush_lag, replay_lag))), 0)::float8 FROM pg_stat_replication`).Scan(&secs)
	if err != nil {
		return 0, fmt.Errorf("read replication lag: %w", err)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// IndexValid looks the index up by its exact name in its table's schema,
// which need not be on the search path.
func (p *postgres) IndexValid(ctx context.Context, table, name string) (string, bool, error) {
	var qualified string
	var valid bool
	err := p.db.QueryRowContext(ctx,
		`SELECT format('%I.%I', n.nspname, c.relname), i.indisvalid FROM pg_index i
		 JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		 WHERE c.relname = $2 AND c.relnamespace = (SELECT relnamespace FROM pg_class WHERE oid = to_regclass($1))`,
		table, name).Scan(&qualified, &valid)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("look up index %s: %w", name, err)
	}
	return qualified, valid, nil
}
