-- want: whole-table-update
-- phase: contract
-- ref: strong_migrations backfilling data

DELETE FROM sessions;
