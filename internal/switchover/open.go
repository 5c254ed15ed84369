package switchover

import (
	"context"
	"fmt"
	"net/url"
)

// Open connects to the primary at from and the replica at to, by the URLs'
// scheme (postgres://, postgresql://, mysql://, mariadb://), and checks that
// to replicates from from.
func Open(ctx context.Context, from, to string) (Pair, error) {
	switch scheme(from) {
	case "postgres", "postgresql":
		if s := scheme(to); s != "postgres" && s != "postgresql" {
			return nil, fmt.Errorf("--to %s: the primary is Postgres, the replica must be too", RedactURL(to))
		}
		return OpenPostgres(ctx, from, to)
	case "mysql", "mariadb":
		if s := scheme(to); s != "mysql" && s != "mariadb" {
			return nil, fmt.Errorf("--to %s: the primary is MySQL/MariaDB, the replica must be too", RedactURL(to))
		}
		return OpenMySQL(ctx, from, to)
	}
	return nil, fmt.Errorf("%s: want a postgres:// or mysql:// URL", RedactURL(from))
}

// Reopen connects to the servers of an unfinished switchover's record, as
// they were identified when it began: after a crash the replica may be
// promoted already, and must not be checked for being one.
func Reopen(ctx context.Context, rec Record) (Pair, error) {
	switch rec.Kind {
	case "postgres-physical", "postgres-logical":
		oldc, err := pgConnect(ctx, rec.From)
		if err != nil {
			return nil, fmt.Errorf("connect to the old primary: %w", err)
		}
		newc, err := pgConnect(ctx, rec.To)
		if err != nil {
			oldc.Close(ctx)
			return nil, fmt.Errorf("connect to the replica: %w", err)
		}
		return &pgPair{old: oldc, new: newc, oldAddr: pgAddr(oldc), newAddr: pgAddr(newc),
			logical: rec.Kind == "postgres-logical", sub: rec.Subscription, slot: rec.Slot, newURL: rec.To}, nil
	case "mysql-gtid":
		oldDB, oldAddr, err := mysqlOpen(rec.From)
		if err != nil {
			return nil, err
		}
		newDB, newAddr, err := mysqlOpen(rec.To)
		if err != nil {
			oldDB.Close()
			return nil, err
		}
		return &mysqlPair{old: oldDB, new: newDB, oldAddr: oldAddr, newAddr: newAddr}, nil
	}
	return nil, fmt.Errorf("switchover of %s: unknown kind %q in its record", rec.Name, rec.Kind)
}

func scheme(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return ""
	}
	return u.Scheme
}
