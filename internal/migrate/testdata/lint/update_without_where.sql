-- want: whole-table-update
-- phase: expand
-- ref: strong_migrations backfilling data

UPDATE items SET title_lower = lower(title);
