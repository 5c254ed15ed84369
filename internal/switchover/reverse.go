package switchover

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// Reverse logical replication (--reverse, Postgres logical only): after
// the promotion and before the endpoint moves, the new primary publishes
// every table and the old primary subscribes to it, from a slot created
// at that moment with copy_data = false. Nothing has written to the new
// primary yet (the old one is fenced, the endpoint paused), so the slot's
// start is the switch position: every write the app makes on the new
// primary reaches the old one, and a later `handoff db switchover --to
// OLD` finds a caught-up subscriber and loses nothing.
//
// The old primary stays fenced (default_transaction_read_only = on) while
// it subscribes: the apply worker writes all the same (Postgres applies
// replicated changes whatever that default says; the reverse test checks
// it), and nothing else can. A switch back unfences it when it promotes
// it (unfenceNew).
//
// The slot on the new primary keeps WAL for the old one: when the old
// server is retired, DROP SUBSCRIPTION handoff_reverse on it (which drops
// the slot), or pg_drop_replication_slot('handoff_reverse') on the new one
// if the old is gone (docs/switchover.md).

// reverseName names the publication on the new primary, its slot, and the
// subscription on the old one.
const reverseName = "handoff_reverse"

// reverser is a Pair that can start reverse replication; Reverse is
// idempotent (recovery calls it again).
type reverser interface {
	Reverse(ctx context.Context) error
}

// checkReverse refuses --reverse before anything changes: only a logical
// pair can, and the new primary must be able to publish.
func checkReverse(ctx context.Context, pair Pair) error {
	p, ok := pair.(*pgPair)
	if !ok || !p.logical {
		return fmt.Errorf("--reverse needs a logical switchover (a Postgres subscriber); this one is %s", pair.Kind())
	}
	var level string
	if err := p.new.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
		return fmt.Errorf("ask the replica: %w", err)
	}
	if level != "logical" {
		return fmt.Errorf("--reverse: the replica %s has wal_level = %s; it must be logical to publish to the old primary (set it and restart the replica first)", p.newAddr, level)
	}
	var n int
	if err := p.old.QueryRow(ctx, "SELECT count(*) FROM pg_subscription WHERE subname = $1", reverseName).Scan(&n); err != nil {
		return fmt.Errorf("ask the primary for its subscriptions: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("--reverse: the primary %s has a subscription %s already (from an earlier switchover?); drop it first", p.oldAddr, reverseName)
	}
	return nil
}

// Reverse creates the publication and the slot on the new primary, then
// the subscription on the old primary, each only if it is not there yet.
func (p *pgPair) Reverse(ctx context.Context) error {
	name := pgx.Identifier{reverseName}.Sanitize()
	var n int
	if err := p.new.QueryRow(ctx, "SELECT count(*) FROM pg_publication WHERE pubname = $1", reverseName).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		if _, err := p.new.Exec(ctx, "CREATE PUBLICATION "+name+" FOR ALL TABLES"); err != nil {
			return fmt.Errorf("create the publication on the new primary: %w", err)
		}
	}
	if err := p.new.QueryRow(ctx, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1", reverseName).Scan(&n); err != nil {
		return err
	}
	if n == 0 {
		if _, err := p.new.Exec(ctx, "SELECT pg_create_logical_replication_slot($1, 'pgoutput')", reverseName); err != nil {
			return fmt.Errorf("create the slot on the new primary: %w", err)
		}
	}
	if err := p.old.QueryRow(ctx, "SELECT count(*) FROM pg_subscription WHERE subname = $1", reverseName).Scan(&n); err != nil {
		return err
	}
	if n > 0 {
		return nil
	}
	if p.newURL == "" {
		return errors.New("the new primary's URL is not known")
	}
	// CREATE SUBSCRIPTION takes no parameters: the conninfo is a literal.
	_, err := p.old.Exec(ctx, fmt.Sprintf("CREATE SUBSCRIPTION %s CONNECTION %s PUBLICATION %s WITH (copy_data = false, create_slot = false, slot_name = %s)",
		name, quoteLiteral(p.newURL), name, quoteLiteral(reverseName)))
	if err != nil {
		// Nothing will read the slot: left, it would keep the new
		// primary's WAL until its disk fills. Best effort; said if not.
		_, derr := p.new.Exec(ctx, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1", reverseName)
		if derr == nil {
			_, derr = p.new.Exec(ctx, "DROP PUBLICATION IF EXISTS "+name)
		}
		if derr != nil {
			derr = fmt.Errorf("drop the slot and publication %s on the new primary (do it by hand): %w", reverseName, derr)
		}
		return errors.Join(fmt.Errorf("subscribe the old primary to the new one: %w", err), derr)
	}
	return nil
}

// unfenceNew makes a promoted subscriber writable if it was fenced: the
// old primary of an earlier switchover, now switched back to, carries
// handoff's fence in its configuration (ALTER SYSTEM), and a primary the
// endpoint points at must take writes.
func (p *pgPair) unfenceNew(ctx context.Context) error {
	var fenced bool
	if err := p.new.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_file_settings
		WHERE name = $1 AND setting = 'on' AND sourcefile LIKE '%postgresql.auto.conf')`, pgFenceSetting).Scan(&fenced); err != nil {
		return fmt.Errorf("ask the new primary whether it is fenced: %w", err)
	}
	if !fenced {
		return nil
	}
	if _, err := p.new.Exec(ctx, "ALTER SYSTEM RESET "+pgFenceSetting); err != nil {
		return fmt.Errorf("unfence the new primary: %w", err)
	}
	return pgReload(ctx, p.new, "off")
}

func quoteLiteral(s string) string {
	out := []byte{'\''}
	for i := 0; i < len(s); i++ {
		if s[i] == '\'' {
			out = append(out, '\'')
		}
		out = append(out, s[i])
	}
	return string(append(out, '\''))
}
