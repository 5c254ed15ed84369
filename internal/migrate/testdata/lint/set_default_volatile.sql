-- want: none
-- phase: expand
-- ref: Postgres: SET DEFAULT changes the catalog only; no rewrite, no scan (old rows keep their values)

ALTER TABLE items ALTER COLUMN token SET DEFAULT gen_random_uuid();
