-- want: column-type
-- phase: expand
-- ref: strong_migrations changing the type of a column

ALTER TABLE items ALTER COLUMN props TYPE jsonb USING props::jsonb;
