-- want: truncate
-- phase: contract
-- ref: Postgres: ACCESS EXCLUSIVE

TRUNCATE sessions;
