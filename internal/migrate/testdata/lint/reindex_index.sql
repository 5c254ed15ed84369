-- want: reindex
-- phase: expand
-- ref: Postgres: REINDEX locks out writes (and reads using the index)

REINDEX INDEX items_title;
