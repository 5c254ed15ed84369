package switchover

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/handoff-dev/handoff/internal/dbproxy"
)

// MySQL/MariaDB (GTID replication), behind the same Pair seam as Postgres.
// It lives here rather than in internal/dialect because what it does —
// replica status, GTID waits, read_only, promotion — is the switchover's
// alone; migrate and evolve need none of it.
//
// Fencing: SET GLOBAL read_only = 1, and every connection with a
// transaction open is killed (before and after, so that one begun in
// between is caught too). read_only does not stop users with the SUPER or
// READ_ONLY ADMIN privilege: the app must not connect as such a user
// (docs/databases.md).

// mysqlPair is a MySQL/MariaDB primary and its GTID replica.
type mysqlPair struct {
	old, new         *sql.DB
	oldAddr, newAddr string
}

// OpenMySQL connects to the primary at from and the replica at to, URLs
// mysql://user[:password]@host:port[/db], and checks that to replicates
// from from with GTIDs, both threads running.
func OpenMySQL(ctx context.Context, from, to string) (Pair, error) {
	oldDB, oldAddr, err := mysqlOpen(from)
	if err != nil {
		return nil, fmt.Errorf("primary: %w", err)
	}
	newDB, newAddr, err := mysqlOpen(to)
	if err != nil {
		oldDB.Close()
		return nil, fmt.Errorf("replica: %w", err)
	}
	p := &mysqlPair{old: oldDB, new: newDB, oldAddr: oldAddr, newAddr: newAddr}
	if err := p.identify(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// mysqlConfig turns a mysql:// URL into the driver's config and the
// server's host:port (port 3306 when none is given). TLS is asked for
// with the endpoint config's words: ?tls=disable|require|verify-full and
// &tls_ca_file=FILE (verify-full against that CA); plaintext without.
// The old primary's URL is the replica's with its host, so both get the
// same TLS.
func mysqlConfig(raw string) (*mysql.Config, string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "mysql" && u.Scheme != "mariadb") || u.Host == "" {
		return nil, "", fmt.Errorf("%q: want mysql://user[:password]@host[:port][/db][?tls=verify-full]", RedactURL(raw))
	}
	q := u.Query()
	for k := range q {
		if k != "tls" && k != "tls_ca_file" {
			return nil, "", fmt.Errorf("%q: unknown parameter %s (want tls, tls_ca_file)", RedactURL(raw), k)
		}
	}
	cfg := mysql.NewConfig()
	cfg.User = u.User.Username()
	cfg.Passwd, _ = u.User.Password()
	cfg.Net = "tcp"
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "3306")
	}
	cfg.Addr = addr
	cfg.DBName = strings.TrimPrefix(u.Path, "/")
	cfg.Timeout = 5 * time.Second
	if q.Has("tls_ca_file") && q.Get("tls") != "verify-full" {
		return nil, "", fmt.Errorf("%q: tls_ca_file is used with tls=verify-full only", RedactURL(raw))
	}
	if cfg.TLS, err = dbproxy.TLSConfig(q.Get("tls"), q.Get("tls_ca_file")); err != nil {
		return nil, "", fmt.Errorf("%q: %w", RedactURL(raw), err)
	}
	cfg.TLS = dbproxy.TLSFor(cfg.TLS, addr)
	return cfg, addr, nil
}

func mysqlOpen(raw string) (*sql.DB, string, error) {
	cfg, addr, err := mysqlConfig(raw)
	if err != nil {
		return nil, "", err
	}
	conn, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, "", err
	}
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(4)
	return db, addr, nil
}

// slaveStatus is SHOW SLAVE STATUS as column → value; nil without
// replication configured.
func slaveStatus(ctx context.Context, db *sql.DB) (map[string]string, error) {
	rows, err := db.QueryContext(ctx, "SHOW SLAVE STATUS")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		return nil, rows.Err()
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	st := make(map[string]string, len(cols))
	for i, c := range cols {
		st[c] = vals[i].String
	}
	return st, rows.Err()
}

func (p *mysqlPair) identify(ctx context.Context) error {
	st, err := slaveStatus(ctx, p.new)
	if err != nil {
		return fmt.Errorf("ask the replica for its replication status: %w", err)
	}
	if st == nil {
		return fmt.Errorf("%s replicates from no server", p.newAddr)
	}
	var oldID string
	if err := p.old.QueryRowContext(ctx, "SELECT @@server_id").Scan(&oldID); err != nil {
		return fmt.Errorf("ask the primary: %w", err)
	}
	if st["Master_Server_Id"] != oldID {
		return fmt.Errorf("%s replicates from %s:%s (server_id %s), not from %s (server_id %s)", p.newAddr, st["Master_Host"], st["Master_Port"], st["Master_Server_Id"], p.oldAddr, oldID)
	}
	if st["Using_Gtid"] == "" || st["Using_Gtid"] == "No" {
		return fmt.Errorf("%s replicates by binary log position, not by GTID (CHANGE MASTER TO MASTER_USE_GTID=slave_pos)", p.newAddr)
	}
	if st["Slave_IO_Running"] != "Yes" || st["Slave_SQL_Running"] != "Yes" {
		return fmt.Errorf("replication on %s is not running (IO %s, SQL %s): %s%s", p.newAddr, st["Slave_IO_Running"], st["Slave_SQL_Running"], st["Last_IO_Error"], st["Last_SQL_Error"])
	}
	return nil
}

func (p *mysqlPair) Kind() string            { return "mysql-gtid" }
func (p *mysqlPair) Addrs() (string, string) { return p.oldAddr, p.newAddr }

func (p *mysqlPair) Check(ctx context.Context, longTx time.Duration) error {
	var id int64
	var secs float64
	// trx_started has whole seconds: a second more, or every short
	// transaction begun late in its second would count as long.
	limit := int64(longTx/time.Second) + 1
	err := p.old.QueryRowContext(ctx, `SELECT trx_mysql_thread_id, TIMESTAMPDIFF(SECOND, trx_started, NOW())
		FROM information_schema.innodb_trx WHERE trx_started < NOW() - INTERVAL ? SECOND ORDER BY trx_started LIMIT 1`,
		limit).Scan(&id, &secs)
	if err == nil {
		return fmt.Errorf("a transaction has been open on the primary for %.0fs (connection %d); the switchover would wait for it", secs, id)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("look for long transactions: %w", err)
	}
	var ro int
	if err := p.old.QueryRowContext(ctx, "SELECT @@global.read_only").Scan(&ro); err != nil {
		return fmt.Errorf("ask the primary: %w", err)
	}
	if ro != 0 {
		return fmt.Errorf("the primary %s is read_only already", p.oldAddr)
	}
	return nil
}

func (p *mysqlPair) Position(ctx context.Context) (string, error) {
	var pos string
	if err := p.old.QueryRowContext(ctx, "SELECT @@global.gtid_binlog_pos").Scan(&pos); err != nil {
		return "", fmt.Errorf("read the primary's GTID position: %w", err)
	}
	return pos, nil
}

// CaughtUp waits on the replica with MASTER_GTID_WAIT, in slices of at
// most a second so that ctx is honoured between them.
func (p *mysqlPair) CaughtUp(ctx context.Context, pos string) error {
	for {
		wait := time.Second
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			wait = time.Until(dl)
		}
		if wait <= 0 {
			// The deadline is here; its timer fires a moment later. Wait
			// for it, so that the caller sees ctx done and its cause.
			<-ctx.Done()
			return ctx.Err()
		}
		var res int
		if err := p.new.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, ?)", pos, wait.Seconds()).Scan(&res); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("wait for GTID %s on the replica: %w", pos, err)
		}
		if res == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

func (p *mysqlPair) Fence(ctx context.Context) error {
	if err := p.killOpenTransactions(ctx); err != nil {
		return err
	}
	if _, err := p.old.ExecContext(ctx, "SET GLOBAL read_only = 1"); err != nil {
		return err
	}
	return p.killOpenTransactions(ctx)
}

func (p *mysqlPair) killOpenTransactions(ctx context.Context) error {
	conn, err := p.old.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	rows, err := conn.QueryContext(ctx, "SELECT trx_mysql_thread_id FROM information_schema.innodb_trx WHERE trx_mysql_thread_id <> CONNECTION_ID() AND trx_mysql_thread_id <> 0")
	if err != nil {
		return fmt.Errorf("list open transactions: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return err
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, id := range ids {
		// A connection that has gone in the meantime is fine (1094:
		// unknown thread id).
		if _, err := conn.ExecContext(ctx, fmt.Sprintf("KILL CONNECTION %d", id)); err != nil && !mysqlCode(err, 1094) {
			return fmt.Errorf("end connection %d: %w", id, err)
		}
	}
	return nil
}

func mysqlCode(err error, code uint16) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == code
}

func (p *mysqlPair) Unfence(ctx context.Context) error {
	_, err := p.old.ExecContext(ctx, "SET GLOBAL read_only = 0")
	return err
}

// Prepare: AUTO_INCREMENT counters travel with the replicated rows, and
// InnoDB keeps them at least max(column)+1; nothing to copy.
func (p *mysqlPair) Prepare(context.Context) error { return nil }

// Promote stops replication, forgets the old primary and makes the replica
// writable.
func (p *mysqlPair) Promote(ctx context.Context) error {
	st, err := slaveStatus(ctx, p.new)
	if err != nil {
		return err
	}
	if st != nil {
		for _, stmt := range []string{"STOP SLAVE", "RESET SLAVE ALL"} {
			if _, err := p.new.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("%s: %w", stmt, err)
			}
		}
	}
	if _, err := p.new.ExecContext(ctx, "SET GLOBAL read_only = 0"); err != nil {
		return fmt.Errorf("make the replica writable: %w", err)
	}
	return nil
}

// Promoted: the replica is writable and replicates from nobody. Writable
// alone is not enough: a replica may run with read_only off (MariaDB's
// default), and a Promote that failed before STOP SLAVE left it replicating
// from the old primary — the endpoint must not move there. A replica
// detached but still read-only (SET GLOBAL read_only failed) is not
// promoted either: the switchover rolls back, and its error says why.
func (p *mysqlPair) Promoted(ctx context.Context) (bool, error) {
	var ro int
	if err := p.new.QueryRowContext(ctx, "SELECT @@global.read_only").Scan(&ro); err != nil {
		return false, err
	}
	st, err := slaveStatus(ctx, p.new)
	if err != nil {
		return false, err
	}
	return ro == 0 && st == nil, nil
}

func (p *mysqlPair) Close() error { return errors.Join(p.old.Close(), p.new.Close()) }

var _ Pair = (*mysqlPair)(nil)
