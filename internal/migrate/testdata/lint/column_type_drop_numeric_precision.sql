-- want: none
-- phase: expand
-- ref: strong_migrations: numeric(p,s) to unconstrained numeric is safe

ALTER TABLE items ALTER COLUMN price TYPE numeric;
