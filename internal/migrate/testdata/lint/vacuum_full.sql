-- want: vacuum-full
-- phase: expand
-- ref: Postgres: VACUUM FULL rewrites under ACCESS EXCLUSIVE

VACUUM FULL items;
