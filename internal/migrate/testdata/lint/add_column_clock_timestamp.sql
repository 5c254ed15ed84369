-- want: volatile-default
-- phase: expand
-- ref: strong_migrations adding a column with a volatile default

ALTER TABLE items ADD COLUMN seen_at timestamptz DEFAULT clock_timestamp();
