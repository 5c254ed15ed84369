package switchover

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// pollInterval is how often a catch-up is polled where the server offers
// no wait (Postgres): short against a 5 s deadline, cheap for the server.
const pollInterval = 5 * time.Millisecond

// How the old Postgres primary is fenced (decided; docs/databases.md):
//
//	ALTER SYSTEM SET default_transaction_read_only = on; SELECT pg_reload_conf();
//
// then every client session with a transaction open is terminated. Holding
// the endpoint alone is not enough: cron jobs, consoles and apps that
// connect to the server directly bypass it, and their writes after the
// fence's position would be lost on the new primary. A session that was
// idle reads the new default before its next statement; one inside a
// transaction (none of the endpoint's: it is paused) is ended, its
// transaction never acknowledged. ALTER SYSTEM persists across a restart
// of the old server, so a fenced primary that restarts stays read-only;
// Unfence resets it. Not covered: a client that says BEGIN READ WRITE or
// SET default_transaction_read_only = off itself.
const pgFenceSetting = "default_transaction_read_only"

// pgPair is a Postgres primary and its replica: a physical standby, or a
// logical subscriber (for a major-version move).
type pgPair struct {
	old, new *pgx.Conn
	oldAddr  string
	newAddr  string
	logical  bool
	sub      string // the subscription's name (logical)
	slot     string // its slot on the old primary (logical)
	newURL   string // the replica's URL: the old primary's conninfo for --reverse
}

// OpenPostgres connects to the primary at from and the replica at to and
// finds out how to is fed: a physical standby of from (same system
// identifier, streaming from it), or a subscriber of from whose slot is
// active there. Anything else is refused, naming what was found.
func OpenPostgres(ctx context.Context, from, to string) (Pair, error) {
	oldc, err := pgConnect(ctx, from)
	if err != nil {
		return nil, fmt.Errorf("connect to the primary: %w", err)
	}
	newc, err := pgConnect(ctx, to)
	if err != nil {
		oldc.Close(ctx)
		return nil, fmt.Errorf("connect to the replica: %w", err)
	}
	p := &pgPair{old: oldc, new: newc, oldAddr: pgAddr(oldc), newAddr: pgAddr(newc), newURL: to}
	if err := p.identify(ctx); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func pgConnect(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 5 * time.Second
	}
	// handoff's own sessions must be able to write on a fenced primary
	// (to unfence it) and must never be the ones held up by it.
	cfg.RuntimeParams["default_transaction_read_only"] = "off"
	cfg.RuntimeParams["application_name"] = "handoff switchover"
	return pgx.ConnectConfig(ctx, cfg)
}

func pgAddr(c *pgx.Conn) string {
	cfg := c.Config()
	return net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
}

func (p *pgPair) identify(ctx context.Context) error {
	var inRecovery bool
	if err := p.new.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return fmt.Errorf("ask the replica: %w", err)
	}
	if inRecovery {
		var oldID, newID uint64
		if err := p.old.QueryRow(ctx, "SELECT system_identifier FROM pg_control_system()").Scan(&oldID); err != nil {
			return fmt.Errorf("ask the primary: %w", err)
		}
		if err := p.new.QueryRow(ctx, "SELECT system_identifier FROM pg_control_system()").Scan(&newID); err != nil {
			return fmt.Errorf("ask the replica: %w", err)
		}
		if oldID != newID {
			return fmt.Errorf("%s is a standby of another cluster (system identifier %d, the primary's is %d)", p.newAddr, newID, oldID)
		}
		var primaryRecovering bool
		if err := p.old.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&primaryRecovering); err != nil {
			return fmt.Errorf("ask the primary: %w", err)
		}
		if primaryRecovering {
			return fmt.Errorf("%s is itself a standby, not a primary", p.oldAddr)
		}
		return nil
	}
	// Not a standby: a subscriber, whose slot on the primary is active.
	p.logical = true
	rows, err := p.new.Query(ctx, `SELECT subname, coalesce(subslotname, '') FROM pg_subscription
		WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND subenabled`)
	if err != nil {
		return fmt.Errorf("ask the replica for its subscriptions: %w", err)
	}
	subs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var s [2]string
		err := r.Scan(&s[0], &s[1])
		return s, err
	})
	if err != nil {
		return fmt.Errorf("ask the replica for its subscriptions: %w", err)
	}
	for _, s := range subs {
		var active bool
		err := p.old.QueryRow(ctx, "SELECT active FROM pg_replication_slots WHERE slot_name = $1 AND database = current_database()", s[1]).Scan(&active)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return fmt.Errorf("ask the primary for its replication slots: %w", err)
		}
		if !active {
			return fmt.Errorf("the subscription %s of %s has its slot on the primary, but it is not streaming", s[0], p.newAddr)
		}
		p.sub, p.slot = s[0], s[1]
		return nil
	}
	return fmt.Errorf("%s is neither a standby of %s nor subscribed to it (enabled subscriptions: %d, none with a slot there)", p.newAddr, p.oldAddr, len(subs))
}

func (p *pgPair) Kind() string {
	if p.logical {
		return "postgres-logical"
	}
	return "postgres-physical"
}

func (p *pgPair) Addrs() (string, string) { return p.oldAddr, p.newAddr }

func (p *pgPair) Check(ctx context.Context, longTx time.Duration) error {
	var pid int
	var age time.Duration
	var query string
	err := p.old.QueryRow(ctx, `SELECT pid, now() - xact_start, left(query, 200) FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND xact_start < now() - $1::interval
		ORDER BY xact_start LIMIT 1`, longTx).Scan(&pid, &age, &query)
	if err == nil {
		return fmt.Errorf("a transaction has been open on the primary for %v (pid %d: %s); the switchover would wait for it", age.Round(time.Millisecond), pid, query)
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("look for long transactions: %w", err)
	}
	var fenced string
	if err := p.old.QueryRow(ctx, "SELECT setting FROM pg_settings WHERE name = $1", pgFenceSetting).Scan(&fenced); err != nil {
		return fmt.Errorf("ask the primary: %w", err)
	}
	if fenced == "on" {
		return fmt.Errorf("the primary %s is read-only already (%s = on)", p.oldAddr, pgFenceSetting)
	}
	if p.logical {
		return p.checkSubscribed(ctx)
	}
	return nil
}

// checkSubscribed refuses a subscriber that does not hold every table of
// the primary yet: one still in its initial copy (catching up watches the
// subscription's slot, which moves on while a table copies through a slot
// of its own, and dropping the subscription at promotion ends that copy
// for good), or one the subscription does not take at all (a publication
// of some tables only, a table created since and not refreshed). Either
// would leave rows behind on the old primary.
func (p *pgPair) checkSubscribed(ctx context.Context) error {
	// Each subscribed table (a partition tree by its root), and whether
	// all of it is ready.
	rows, err := p.new.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname), bool_and(sr.srsubstate = 'r')
		FROM pg_subscription_rel sr
		JOIN pg_subscription s ON s.oid = sr.srsubid
		JOIN pg_class c ON c.oid = coalesce(pg_partition_root(sr.srrelid), sr.srrelid)
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE s.subname = $1 AND s.subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())
		GROUP BY 1 ORDER BY 1`, p.sub)
	if err != nil {
		return fmt.Errorf("ask the replica for its subscribed tables: %w", err)
	}
	subscribed, copying := []string{}, []string(nil) // not nil: ANY(NULL) would match no table
	var name string
	var ready bool
	if _, err := pgx.ForEachRow(rows, []any{&name, &ready}, func() error {
		subscribed = append(subscribed, name)
		if !ready {
			copying = append(copying, name)
		}
		return nil
	}); err != nil {
		return fmt.Errorf("ask the replica for its subscribed tables: %w", err)
	}
	if len(copying) > 0 {
		return fmt.Errorf("the subscription %s of %s is still copying %s; wait until every table of pg_subscription_rel is ready (srsubstate 'r')", p.sub, p.newAddr, names(copying))
	}
	// The primary's durable tables, a partition tree as its root.
	rows, err = p.old.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c
		JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND c.relpersistence = 'p' AND NOT c.relispartition
		AND n.nspname <> 'information_schema' AND n.nspname !~ '^pg_'
		AND NOT format('%I.%I', n.nspname, c.relname) = ANY($1) ORDER BY 1`, subscribed)
	if err != nil {
		return fmt.Errorf("ask the primary for its tables: %w", err)
	}
	missing, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("ask the primary for its tables: %w", err)
	}
	if len(missing) > 0 {
		return fmt.Errorf("the subscription %s of %s does not replicate %s of the primary; publish every table (FOR ALL TABLES) and run ALTER SUBSCRIPTION %s REFRESH PUBLICATION", p.sub, p.newAddr, names(missing), pgx.Identifier{p.sub}.Sanitize())
	}
	return nil
}

// names lists a few table names for a message.
func names(list []string) string {
	const most = 5
	if len(list) > most {
		return fmt.Sprintf("%s and %d more", strings.Join(list[:most], ", "), len(list)-most)
	}
	return strings.Join(list, ", ")
}

func (p *pgPair) Position(ctx context.Context) (string, error) {
	var lsn string
	if err := p.old.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		return "", fmt.Errorf("read the primary's WAL position: %w", err)
	}
	return lsn, nil
}

// CaughtUp polls the standby's replay position, or for a subscriber the
// position its slot on the primary has confirmed (the subscriber confirms
// only what it has applied and committed).
func (p *pgPair) CaughtUp(ctx context.Context, pos string) error {
	for {
		var done bool
		var err error
		if p.logical {
			err = p.old.QueryRow(ctx, "SELECT coalesce(confirmed_flush_lsn >= $1::pg_lsn, false) FROM pg_replication_slots WHERE slot_name = $2", pos, p.slot).Scan(&done)
		} else {
			err = p.new.QueryRow(ctx, "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)", pos).Scan(&done)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("read the replica's position: %w", err)
		}
		if done {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

func (p *pgPair) Fence(ctx context.Context) error {
	if _, err := p.old.Exec(ctx, "ALTER SYSTEM SET "+pgFenceSetting+" = on"); err != nil {
		return err
	}
	if err := pgReload(ctx, p.old, "on"); err != nil {
		return err
	}
	// Every transaction open now began before the fence and may write:
	// end it. Through the endpoint there is none (it is paused).
	if _, err := p.old.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND xact_start IS NOT NULL
		AND application_name <> 'handoff switchover'`); err != nil {
		return fmt.Errorf("end the open transactions: %w", err)
	}
	return nil
}

func (p *pgPair) Unfence(ctx context.Context) error {
	if _, err := p.old.Exec(ctx, "ALTER SYSTEM RESET "+pgFenceSetting); err != nil {
		return err
	}
	return pgReload(ctx, p.old, "off")
}

// pgReload makes the server read its configuration again and returns once
// every session has been told: pg_reload_conf() only signals the
// postmaster, which re-reads the file and then signals every backend; a
// new session sees what the postmaster has read, so once one sees want,
// every existing session has had its signal and applies it before its
// next statement. Without this wait a session could write just after the
// fence, or fail to write just after a rollback.
func pgReload(ctx context.Context, c *pgx.Conn, want string) error {
	if _, err := c.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
		return err
	}
	cfg := c.Config().Copy()
	delete(cfg.RuntimeParams, pgFenceSetting) // see the server's value, not ours
	for {
		c, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return fmt.Errorf("check the reload: %w", err)
		}
		var got string
		err = c.QueryRow(ctx, "SHOW "+pgFenceSetting).Scan(&got)
		c.Close(ctx)
		if err != nil {
			return fmt.Errorf("check the reload: %w", err)
		}
		if got == want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("a new session still sees %s = %s (a role or database setting?): %w", pgFenceSetting, got, ctx.Err())
		case <-time.After(pollInterval):
		}
	}
}

// Prepare readies a subscriber to take over: every sequence past what the
// old primary issued (logical replication does not carry sequences), then
// every serial and identity column checked against its table's largest
// value. A standby needs nothing.
func (p *pgPair) Prepare(ctx context.Context) error {
	if !p.logical {
		return nil
	}
	rows, err := p.old.Query(ctx, `SELECT format('%I.%I', schemaname, sequencename), last_value FROM pg_sequences WHERE last_value IS NOT NULL`)
	if err != nil {
		return fmt.Errorf("read the primary's sequences: %w", err)
	}
	type seq struct {
		name string
		last int64
	}
	seqs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (seq, error) {
		var s seq
		err := r.Scan(&s.name, &s.last)
		return s, err
	})
	if err != nil {
		return fmt.Errorf("read the primary's sequences: %w", err)
	}
	for _, s := range seqs {
		// Never move one back (a second run, or a sequence used on the
		// subscriber itself).
		if _, err := p.new.Exec(ctx, `SELECT setval(s.oid, $2::bigint, true) FROM pg_class s
			WHERE s.oid = $1::text::regclass
			AND coalesce((SELECT last_value FROM pg_sequences q WHERE format('%I.%I', q.schemaname, q.sequencename) = $1::text), $2::bigint - 1) < $2::bigint`, s.name, s.last); err != nil {
			return fmt.Errorf("set sequence %s past %d on the new primary: %w", s.name, s.last, err)
		}
	}
	return p.checkSerials(ctx)
}

// Promote ends recovery on a standby (pg_promote), or drops a subscriber's
// subscription (and with it its slot on the old primary).
func (p *pgPair) Promote(ctx context.Context) error {
	if p.logical {
		var n int
		if err := p.new.QueryRow(ctx, "SELECT count(*) FROM pg_subscription WHERE subname = $1", p.sub).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			if _, err := p.new.Exec(ctx, "DROP SUBSCRIPTION "+pgx.Identifier{p.sub}.Sanitize()); err != nil {
				return fmt.Errorf("drop the subscription %s: %w", p.sub, err)
			}
		}
		return p.unfenceNew(ctx)
	}
	var recovering bool
	if err := p.new.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&recovering); err != nil {
		return err
	}
	if !recovering {
		return nil // promoted already (a recovery after a crash)
	}
	var ok bool
	if err := p.new.QueryRow(ctx, "SELECT pg_promote(true, 60)").Scan(&ok); err != nil {
		return err
	}
	if !ok {
		return errors.New("pg_promote() did not finish within 60 s")
	}
	return nil
}

// Promoted: a standby out of recovery, a subscriber without its
// subscription.
func (p *pgPair) Promoted(ctx context.Context) (bool, error) {
	var done bool
	var err error
	if p.logical {
		err = p.new.QueryRow(ctx, "SELECT count(*) = 0 FROM pg_subscription WHERE subname = $1", p.sub).Scan(&done)
	} else {
		err = p.new.QueryRow(ctx, "SELECT NOT pg_is_in_recovery()").Scan(&done)
	}
	return done, err
}

// checkSerials refuses a new primary on which the next value of a serial
// or identity column's sequence would not exceed the column's largest
// value: the first insert would collide.
func (p *pgPair) checkSerials(ctx context.Context) error {
	rows, err := p.new.Query(ctx, `SELECT d.refobjid::regclass::text, a.attname, d.objid::regclass::text,
			coalesce(s.last_value + s.increment_by, s.start_value), s.increment_by
		FROM pg_depend d
		JOIN pg_class c ON c.oid = d.objid AND c.relkind = 'S'
		JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
		JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN pg_sequences s ON s.schemaname = n.nspname AND s.sequencename = c.relname
		WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')`)
	if err != nil {
		return fmt.Errorf("list serial and identity columns: %w", err)
	}
	type col struct {
		table, column, seq string
		next, inc          int64
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (col, error) {
		var c col
		err := r.Scan(&c.table, &c.column, &c.seq, &c.next, &c.inc)
		return c, err
	})
	if err != nil {
		return fmt.Errorf("list serial and identity columns: %w", err)
	}
	var bad []string
	for _, c := range cols {
		if c.inc < 0 {
			continue // a descending sequence: min, not max, would be the check
		}
		var max *int64
		q := fmt.Sprintf("SELECT max(%s)::bigint FROM %s", pgx.Identifier{c.column}.Sanitize(), c.table)
		if err := p.new.QueryRow(ctx, q).Scan(&max); err != nil {
			return fmt.Errorf("read max(%s.%s): %w", c.table, c.column, err)
		}
		if max != nil && c.next <= *max {
			bad = append(bad, fmt.Sprintf("%s.%s: next value %d, largest %d", c.table, c.column, c.next, *max))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("sequences behind their columns on the new primary (the first inserts would collide): %s", strings.Join(bad, "; "))
	}
	return nil
}

func (p *pgPair) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return errors.Join(p.old.Close(ctx), p.new.Close(ctx))
}

var _ Pair = (*pgPair)(nil)
