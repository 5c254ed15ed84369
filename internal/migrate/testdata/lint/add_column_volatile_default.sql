-- want: volatile-default
-- phase: expand
-- ref: squawk adding-field-with-default; strong_migrations adding a column with a volatile default

ALTER TABLE items ADD COLUMN token uuid DEFAULT gen_random_uuid();
