-- want: reindex
-- phase: expand
-- ref: Postgres: REINDEX TABLE blocks writes

REINDEX TABLE items;
