-- want: none
-- phase: expand
-- ref: SQLite has no CONCURRENTLY: the Postgres-only rules stay quiet
-- dialect: sqlite

CREATE INDEX items_title ON items (title);
