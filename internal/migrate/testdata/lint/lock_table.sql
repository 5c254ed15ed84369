-- want: lock-table
-- phase: expand
-- ref: Postgres: LOCK TABLE defaults to ACCESS EXCLUSIVE

LOCK TABLE items;
